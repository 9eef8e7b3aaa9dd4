{#-
  Invoices whose amount due is not what remains of the total after payments
  and credits (0 for voided and deleted ones), or is negative.
-#}
SELECT invoice_id, invoice_number, status, total, amount_paid, amount_credited, amount_due
FROM {{ ref(name="fct_invoices") }}
WHERE amount_due < 0
   OR (status IN ('VOIDED', 'DELETED') AND amount_due <> 0)
   OR (status NOT IN ('VOIDED', 'DELETED') AND amount_due <> total - amount_paid - amount_credited)
   OR (status = 'PAID' AND amount_due <> 0)
