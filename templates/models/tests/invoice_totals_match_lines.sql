{#-
  Invoices whose totals disagree with their lines: total must be sub_total +
  total_tax, total_tax the sum of the lines' tax, and sub_total the sum of the
  lines' amounts excluding tax (fct_invoice_lines.net_amount: the line amount,
  less its tax when the document's amounts are tax-inclusive; with NoTax the
  tax is zero). This is how Xero computes the totals for each LineAmountTypes.
-#}
SELECT i.invoice_id, i.invoice_number, i.line_amount_types,
       i.sub_total, i.total_tax, i.total,
       l.net_amount AS lines_net_amount, l.tax_amount AS lines_tax_amount
FROM {{ ref(name="fct_invoices") }} AS i
LEFT JOIN (
    SELECT invoice_id, SUM(net_amount) AS net_amount, SUM(tax_amount) AS tax_amount
    FROM {{ ref(name="fct_invoice_lines") }}
    GROUP BY invoice_id
) AS l ON l.invoice_id = i.invoice_id
WHERE i.total <> i.sub_total + i.total_tax
   OR i.total_tax <> COALESCE(l.tax_amount, 0)
   OR i.sub_total <> COALESCE(l.net_amount, 0)
