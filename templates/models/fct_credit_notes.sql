-- fct_credit_notes: one row per credit note, sales (ACCRECCREDIT) or purchase (ACCPAYCREDIT),
-- at its latest version. Amounts are in the credit note's currency; the *_base columns in the
-- organisation's base currency, converted at the credit note's own rate.
--
-- sources: creditnotes
-- depends_on:
--
-- columns:
--   credit_note_id         text       Xero CreditNoteID (a UUID); unique.
--   credit_note_number     text       CN-0001 style for sales; the supplier's number for purchases.
--   type                   text       ACCRECCREDIT (to a customer) or ACCPAYCREDIT (from a supplier).
--   contact_id             text       The customer or supplier (dim_contacts.contact_id).
--   reference              text       The reference shown on the credit note, if any.
--   credit_note_date       date       The credit note's date.
--   status                 text       DRAFT, SUBMITTED, AUTHORISED, PAID, VOIDED or DELETED.
--   line_amount_types      text       Exclusive, Inclusive or NoTax.
--   currency_code          text       The credit note's currency (ISO 4217).
--   currency_rate          rate       Units of the credit note's currency per unit of the base currency.
--   sub_total              money      Total excluding tax.
--   total_tax              money      Total tax of the document.
--   total                  money      Total including tax.
--   remaining_credit       money      Credit not yet allocated to invoices or refunded.
--   total_base             money      total in the base currency.
--   remaining_credit_base  money      remaining_credit in the base currency.
--   updated_at             timestamp  When Xero last changed the credit note (UTC).
--
-- tests:
--   unique: credit_note_id
--   not_null: credit_note_id, type, contact_id, credit_note_date, status, total
--   accepted_values: type in (ACCRECCREDIT, ACCPAYCREDIT)
--   relationship: contact_id -> dim_contacts.contact_id
--   relationship: credit_note_date -> dim_date.date_day
WITH credit_notes AS (
    SELECT
        r.id AS credit_note_id,
        {{ m::text(row="r", path="CreditNoteNumber") }} AS credit_note_number,
        {{ m::text(row="r", path="Type") }} AS type,
        {{ m::text(row="r", path="Contact.ContactID") }} AS contact_id,
        NULLIF({{ m::text(row="r", path="Reference") }}, '') AS reference,
        {{ m::text(row="r", path="Date") }} AS credit_note_date_text,
        {{ m::text(row="r", path="Status") }} AS status,
        {{ m::text(row="r", path="LineAmountTypes") }} AS line_amount_types,
        {{ m::text(row="r", path="CurrencyCode") }} AS currency_code,
        COALESCE({{ m::rate(row="r", path="CurrencyRate") }}, 1) AS currency_rate,
        {{ m::money(row="r", path="SubTotal", or_zero=true) }} AS sub_total,
        {{ m::money(row="r", path="TotalTax", or_zero=true) }} AS total_tax,
        {{ m::money(row="r", path="Total", or_zero=true) }} AS total,
        {{ m::money(row="r", path="RemainingCredit", or_zero=true) }} AS remaining_credit,
        r.updated_at AS updated_at
    FROM {{ m::parsed(relation=source(name="creditnotes"), doc="record",
                      paths=["CreditNoteNumber", "Type", "Contact.ContactID", "Reference", "Date",
                             "Status", "LineAmountTypes", "CurrencyCode", "CurrencyRate",
                             "SubTotal", "TotalTax", "Total", "RemainingCredit"]) }} AS r
)
SELECT
    credit_note_id,
    credit_note_number,
    type,
    contact_id,
    reference,
    {{ m::date_from_text(value="credit_note_date_text") }} AS credit_note_date,
    status,
    line_amount_types,
    currency_code,
    currency_rate,
    sub_total,
    total_tax,
    total,
    remaining_credit,
    {{ m::to_base(amount="total", rate="currency_rate") }} AS total_base,
    {{ m::to_base(amount="remaining_credit", rate="currency_rate") }} AS remaining_credit_base,
    updated_at
FROM credit_notes
