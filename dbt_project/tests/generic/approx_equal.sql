{# The rows where two numeric expressions differ by more than `tolerance` (default one cent). #}
{% test approx_equal(model, column_name, other, tolerance=0.01) %}
select *
from {{ model }}
where abs(coalesce({{ column_name }}, 0) - coalesce({{ other }}, 0)) > {{ tolerance }}
{% endtest %}
