{#- Generic test `not_null: a, b…` (one test per column): rows whose column is NULL. -#}
SELECT *
FROM {{ ref(name=model) }}
WHERE {{ column }} IS NULL
