{#-
  Generic test `relationship: c -> other.k`: the rows of the model whose
  column (when set) names no row of the other model, one per row, with the
  model's key (its first `unique` test) so a sample says which rows they are.
  When the other model has unknown members (is_unknown), they stand in for
  rows Xero did not return and do not count as parents: every row pointing
  at one is reported. Relationships warn unless the header says otherwise.
-#}
SELECT {% for k in keys %}child.{{ k }}, {% endfor %}child.{{ column }}
FROM {{ ref(name=model) }} AS child
LEFT JOIN (
    SELECT DISTINCT {{ to_column }} AS k
    FROM {{ ref(name=to_model) }}{% if to_unknown %}
    WHERE NOT {{ unknown_column }}{% endif %}
) AS parent
       ON parent.k = child.{{ column }}
WHERE child.{{ column }} IS NOT NULL
  AND parent.k IS NULL
