{#- Generic test `unique: a[, b…]`: rows of the model sharing a value of the column(s) (NULLs aside). -#}
SELECT {{ columns | join(sep=", ") }}, COUNT(*) AS copies
FROM {{ ref(name=model) }}
WHERE {% for c in columns %}{{ c }} IS NOT NULL{% if not loop.last %} AND {% endif %}{% endfor %}
GROUP BY {{ columns | join(sep=", ") }}
HAVING COUNT(*) > 1
