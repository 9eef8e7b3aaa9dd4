-- fct_invoice_lines: one row per line item of a sales invoice or bill, with the document's
-- date, type, status, contact and currency repeated so lines can be reported on their own (a
-- breakdown by account or item needs no join to fct_invoices). Amounts are in the document's
-- currency; the *_base columns in the organisation's base currency, each line converted at the
-- document's rate and rounded to the cent. An item or account code Xero did not return stays as
-- the line has it: dim_items and dim_accounts have an unknown member for it.
--
-- sources: invoices
-- depends_on: fct_invoices
--
-- columns:
--   invoice_id         text       The document (fct_invoices.invoice_id).
--   line_item_id       text       Xero LineItemID (a UUID); unique.
--   invoice_date       date       The document's date.
--   type               text       ACCREC (sales) or ACCPAY (bills), from the document.
--   status             text       The document's status.
--   item_code          text       The item sold or bought (dim_items.code), if the line is for one.
--   description        text       The line's description.
--   quantity           amount     Quantity.
--   unit_amount        amount     Price per unit, as entered (tax-inclusive when the document's amounts are).
--   account_code       text       The account the line posts to (dim_accounts.code).
--   tax_type           text       The tax rate applied (e.g. OUTPUT2, INPUT2, NONE).
--   tax_amount         money      Tax on the line.
--   line_amount        money      The line's amount as entered: quantity × unit amount (tax-inclusive when the document's amounts are).
--   net_amount         money      The line's amount excluding tax: line_amount, less tax_amount for tax-inclusive documents.
--   contact_id         text       The document's customer or supplier (dim_contacts.contact_id).
--   currency_code      text       The document's currency (ISO 4217).
--   net_amount_base    money      net_amount in the base currency.
--   tax_amount_base    money      tax_amount in the base currency.
--
-- tests:
--   unique: line_item_id
--   not_null: invoice_id, line_item_id, account_code, line_amount, tax_amount, net_amount
--   relationship(severity=error): invoice_id -> fct_invoices.invoice_id
--   relationship: item_code -> dim_items.code
--   relationship: account_code -> dim_accounts.code
WITH lines AS (
    SELECT
        l.id AS invoice_id,
        {{ m::text(row="l", path="LineItemID") }} AS line_item_id,
        {{ m::text(row="l", path="ItemCode") }} AS item_code,
        {{ m::text(row="l", path="Description") }} AS description,
        {{ m::amount(row="l", path="Quantity") }} AS quantity,
        {{ m::amount(row="l", path="UnitAmount") }} AS unit_amount,
        {{ m::text(row="l", path="AccountCode") }} AS account_code,
        {{ m::text(row="l", path="TaxType") }} AS tax_type,
        {{ m::money(row="l", path="TaxAmount", or_zero=true) }} AS tax_amount,
        {{ m::money(row="l", path="LineAmount", or_zero=true) }} AS line_amount
    FROM {{ m::explode(relation=source(name="invoices"), doc="record", path="LineItems",
                       paths=["LineItemID", "ItemCode", "Description", "Quantity", "UnitAmount",
                              "AccountCode", "TaxType", "TaxAmount", "LineAmount"]) }} AS l
)
SELECT
    l.invoice_id,
    l.line_item_id,
    i.invoice_date,
    i.type,
    i.status,
    l.item_code,
    l.description,
    l.quantity,
    l.unit_amount,
    l.account_code,
    l.tax_type,
    l.tax_amount,
    l.line_amount,
    {{ m::as_money(value="CASE WHEN i.line_amount_types = 'Inclusive' THEN l.line_amount - l.tax_amount ELSE l.line_amount END") }} AS net_amount,
    i.contact_id,
    i.currency_code,
    {{ m::to_base(amount="CASE WHEN i.line_amount_types = 'Inclusive' THEN l.line_amount - l.tax_amount ELSE l.line_amount END", rate="i.currency_rate") }} AS net_amount_base,
    {{ m::to_base(amount="l.tax_amount", rate="i.currency_rate") }} AS tax_amount_base
FROM lines AS l
-- Lines come from their invoice's own record, so every line finds it; LEFT keeps a line anyway.
LEFT JOIN {{ ref(name="fct_invoices") }} AS i ON i.invoice_id = l.invoice_id
