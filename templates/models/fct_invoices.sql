-- fct_invoices: one row per sales invoice (type ACCREC) or bill (type ACCPAY), at its latest version.
-- Drafts, voided and deleted documents stay, with their status: filter on status for reporting
-- (AUTHORISED and PAID are the posted ones). Amounts are in the document's currency; the *_base
-- columns are in the organisation's base currency, converted at the document's own rate and
-- rounded to the cent per document.
--
-- sources: invoices
-- depends_on:
--
-- columns:
--   invoice_id            text       Xero InvoiceID (a UUID); unique.
--   invoice_number        text       INV-00001 style for sales; the supplier's number for bills.
--   type                  text       ACCREC (a sales invoice) or ACCPAY (a bill).
--   contact_id            text       The customer or supplier (dim_contacts.contact_id).
--   reference             text       The reference shown on the document, if any.
--   invoice_date          date       The document's date.
--   due_date              date       When payment is due.
--   status                text       DRAFT, SUBMITTED, AUTHORISED, PAID, VOIDED or DELETED.
--   line_amount_types     text       Exclusive, Inclusive or NoTax: whether line amounts include tax.
--   currency_code         text       The document's currency (ISO 4217).
--   currency_rate         rate       Units of the document's currency per unit of the base currency.
--   sub_total             money      Total excluding tax.
--   total_tax             money      Total tax of the document.
--   total                 money      Total including tax (sub_total + total_tax).
--   amount_due            money      What is still owed (0 once paid, voided or deleted).
--   amount_paid           money      Payments applied so far.
--   amount_credited       money      Credit notes (and pre/overpayments) applied so far.
--   sub_total_base        money      sub_total in the base currency.
--   total_tax_base        money      total_tax in the base currency.
--   total_base            money      total in the base currency.
--   amount_due_base       money      amount_due in the base currency.
--   amount_paid_base      money      amount_paid in the base currency.
--   amount_credited_base  money      amount_credited in the base currency.
--   fully_paid_on_date    date       The day the document was paid in full, if it was.
--   updated_at            timestamp  When Xero last changed the document (UTC).
--
-- tests:
--   unique: invoice_id
--   not_null: invoice_id, type, contact_id, invoice_date, status, currency_code, total, amount_due
--   accepted_values: type in (ACCREC, ACCPAY)
--   accepted_values: status in (DRAFT, SUBMITTED, AUTHORISED, PAID, VOIDED, DELETED)
--   accepted_values: line_amount_types in (Exclusive, Inclusive, NoTax)
--   relationship: contact_id -> dim_contacts.contact_id
--   relationship: invoice_date -> dim_date.date_day
--   custom: invoice_totals_match_lines
--   custom: invoice_amount_due
WITH invoices AS (
    -- Dates as text, converted below.
    SELECT
        r.id AS invoice_id,
        {{ m::text(row="r", path="InvoiceNumber") }} AS invoice_number,
        {{ m::text(row="r", path="Type") }} AS type,
        {{ m::text(row="r", path="Contact.ContactID") }} AS contact_id,
        NULLIF({{ m::text(row="r", path="Reference") }}, '') AS reference,
        {{ m::text(row="r", path="Date") }} AS invoice_date_text,
        {{ m::text(row="r", path="DueDate") }} AS due_date_text,
        {{ m::text(row="r", path="Status") }} AS status,
        {{ m::text(row="r", path="LineAmountTypes") }} AS line_amount_types,
        {{ m::text(row="r", path="CurrencyCode") }} AS currency_code,
        COALESCE({{ m::rate(row="r", path="CurrencyRate") }}, 1) AS currency_rate,
        {{ m::money(row="r", path="SubTotal", or_zero=true) }} AS sub_total,
        {{ m::money(row="r", path="TotalTax", or_zero=true) }} AS total_tax,
        {{ m::money(row="r", path="Total", or_zero=true) }} AS total,
        {{ m::money(row="r", path="AmountDue", or_zero=true) }} AS amount_due,
        {{ m::money(row="r", path="AmountPaid", or_zero=true) }} AS amount_paid,
        {{ m::money(row="r", path="AmountCredited", or_zero=true) }} AS amount_credited,
        {{ m::text(row="r", path="FullyPaidOnDate") }} AS fully_paid_on_date_text,
        r.updated_at AS updated_at
    FROM {{ m::parsed(relation=source(name="invoices"), doc="record",
                      paths=["InvoiceNumber", "Type", "Contact.ContactID", "Reference", "Date",
                             "DueDate", "Status", "LineAmountTypes", "CurrencyCode", "CurrencyRate",
                             "SubTotal", "TotalTax", "Total", "AmountDue", "AmountPaid",
                             "AmountCredited", "FullyPaidOnDate"]) }} AS r
)
SELECT
    invoice_id,
    invoice_number,
    type,
    contact_id,
    reference,
    {{ m::date_from_text(value="invoice_date_text") }} AS invoice_date,
    {{ m::date_from_text(value="due_date_text") }} AS due_date,
    status,
    line_amount_types,
    currency_code,
    currency_rate,
    sub_total,
    total_tax,
    total,
    amount_due,
    amount_paid,
    amount_credited,
    {{ m::to_base(amount="sub_total", rate="currency_rate") }} AS sub_total_base,
    {{ m::to_base(amount="total_tax", rate="currency_rate") }} AS total_tax_base,
    {{ m::to_base(amount="total", rate="currency_rate") }} AS total_base,
    {{ m::to_base(amount="amount_due", rate="currency_rate") }} AS amount_due_base,
    {{ m::to_base(amount="amount_paid", rate="currency_rate") }} AS amount_paid_base,
    {{ m::to_base(amount="amount_credited", rate="currency_rate") }} AS amount_credited_base,
    {{ m::date_from_text(value="fully_paid_on_date_text") }} AS fully_paid_on_date,
    updated_at
FROM invoices
