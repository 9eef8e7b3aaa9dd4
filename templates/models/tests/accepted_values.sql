{#- Generic test `accepted_values: c in (A, B…)`: rows whose column holds another value (NULLs aside). -#}
SELECT {{ column }}, COUNT(*) AS occurrences
FROM {{ ref(name=model) }}
WHERE {{ column }} IS NOT NULL
  AND {{ column }} NOT IN ({% for v in values %}{{ m::string_literal(value=v) }}{% if not loop.last %}, {% endif %}{% endfor %})
GROUP BY {{ column }}
