{#- Journals whose lines do not add up to zero (debits must equal credits). -#}
SELECT journal_id, MIN(journal_number) AS journal_number, SUM(net_amount) AS imbalance
FROM {{ ref(name="fct_journal_lines") }}
GROUP BY journal_id
HAVING SUM(net_amount) <> 0
