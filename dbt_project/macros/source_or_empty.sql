{#
  A source's columns, or no rows of the same columns and types when its table does not exist yet: the
  trading book's tables (`execution.*`) are written only once something traded, and the marts must build on a
  deployment that only backtests. `columns` maps each column to its SQL type. At parse time (`execute` false)
  the source is used as is, so dbt and Dagster still see the dependency.
#}
{% macro source_or_empty(source_name, table_name, columns) -%}
    {%- set rel = source(source_name, table_name) -%}
    {%- set found = adapter.get_relation(database=rel.database, schema=rel.schema, identifier=rel.identifier) if execute else rel -%}
    {%- if found is not none -%}
        (select {% for name, type in columns.items() %}cast({{ name }} as {{ type }}) as {{ name }}{{ ", " if not loop.last }}{% endfor %} from {{ rel }})
    {%- else -%}
        (select {% for name, type in columns.items() %}cast(null as {{ type }}) as {{ name }}{{ ", " if not loop.last }}{% endfor %} where false)
    {%- endif -%}
{%- endmacro %}

{# A number as a person writes it: 6, 153.12, 0.5 (at most six decimals, no trailing zeros). #}
{% macro readable_number(expr) -%}
    regexp_replace(regexp_replace(printf('%.6f', {{ expr }}), '0+$', ''), '\.$', '')
{%- endmacro %}
