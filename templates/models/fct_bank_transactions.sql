-- fct_bank_transactions: one row per spend-money or receive-money transaction (money moved
-- without an invoice), at its latest version. Amounts are in the transaction's currency; total_base
-- in the organisation's base currency.
--
-- sources: banktransactions
-- depends_on:
--
-- columns:
--   bank_transaction_id  text       Xero BankTransactionID (a UUID); unique.
--   type                 text       SPEND or RECEIVE (and Xero's overpayment/prepayment/transfer variants).
--   contact_id           text       The other party (dim_contacts.contact_id), if any.
--   bank_account_id      text       The bank account (dim_accounts.account_id).
--   bank_account_code    text       That account's code.
--   transaction_date     date       The transaction's date.
--   reference            text       The reference, if any.
--   status               text       AUTHORISED, VOIDED or DELETED.
--   line_amount_types    text       Exclusive, Inclusive or NoTax.
--   currency_code        text       The transaction's currency (ISO 4217).
--   currency_rate        rate       Units of the transaction's currency per unit of the base currency.
--   sub_total            money      Total excluding tax.
--   total_tax            money      Total tax of the document.
--   total                money      Total including tax.
--   total_base           money      total in the base currency.
--   is_reconciled        boolean    Whether it is reconciled with a bank statement line.
--   updated_at           timestamp  When Xero last changed the transaction (UTC).
--
-- tests:
--   unique: bank_transaction_id
--   not_null: bank_transaction_id, type, bank_account_id, transaction_date, status, total
--   relationship: contact_id -> dim_contacts.contact_id
--   relationship: bank_account_id -> dim_accounts.account_id
--   relationship: transaction_date -> dim_date.date_day
WITH transactions AS (
    SELECT
        r.id AS bank_transaction_id,
        {{ m::text(doc="r.record", path="Type") }} AS type,
        {{ m::text(doc="r.record", path="Contact.ContactID") }} AS contact_id,
        {{ m::text(doc="r.record", path="BankAccount.AccountID") }} AS bank_account_id,
        {{ m::text(doc="r.record", path="BankAccount.Code") }} AS bank_account_code,
        {{ m::text(doc="r.record", path="Date") }} AS transaction_date_text,
        NULLIF({{ m::text(doc="r.record", path="Reference") }}, '') AS reference,
        {{ m::text(doc="r.record", path="Status") }} AS status,
        {{ m::text(doc="r.record", path="LineAmountTypes") }} AS line_amount_types,
        {{ m::text(doc="r.record", path="CurrencyCode") }} AS currency_code,
        COALESCE({{ m::rate(doc="r.record", path="CurrencyRate") }}, 1) AS currency_rate,
        {{ m::money(doc="r.record", path="SubTotal", or_zero=true) }} AS sub_total,
        {{ m::money(doc="r.record", path="TotalTax", or_zero=true) }} AS total_tax,
        {{ m::money(doc="r.record", path="Total", or_zero=true) }} AS total,
        COALESCE({{ m::boolean(doc="r.record", path="IsReconciled") }}, FALSE) AS is_reconciled,
        r.updated_at AS updated_at
    FROM {{ source(name="banktransactions") }} AS r
)
SELECT
    bank_transaction_id,
    type,
    contact_id,
    bank_account_id,
    bank_account_code,
    {{ m::date_from_text(value="transaction_date_text") }} AS transaction_date,
    reference,
    status,
    line_amount_types,
    currency_code,
    currency_rate,
    sub_total,
    total_tax,
    total,
    {{ m::to_base(amount="total", rate="currency_rate") }} AS total_base,
    is_reconciled,
    updated_at
FROM transactions
