{# `where` condition on a session column for the run's window (vars min_date / max_date; either may be null). #}
{% macro in_session_window(column) -%}
    {%- set lo = var('min_date', none) -%}
    {%- set hi = var('max_date', none) -%}
    true
    {%- if lo %} and {{ column }} >= date '{{ lo }}'{% endif -%}
    {%- if hi %} and {{ column }} <= date '{{ hi }}'{% endif -%}
{%- endmacro %}
