{#- Generic test `relationship: c -> other.k`: rows whose column (when set) names no row of the other model. -#}
SELECT child.{{ column }}, COUNT(*) AS orphans
FROM {{ ref(name=model) }} AS child
LEFT JOIN (SELECT DISTINCT {{ to_column }} AS k FROM {{ ref(name=to_model) }}) AS parent
       ON parent.k = child.{{ column }}
WHERE child.{{ column }} IS NOT NULL
  AND parent.k IS NULL
GROUP BY child.{{ column }}
