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
        {{ m::text(row="r", path="Type") }} AS type,
        {{ m::text(row="r", path="Contact.ContactID") }} AS contact_id,
        {{ m::text(row="r", path="BankAccount.AccountID") }} AS bank_account_id,
        {{ m::text(row="r", path="BankAccount.Code") }} AS bank_account_code,
        {{ m::text(row="r", path="Date") }} AS transaction_date_text,
        NULLIF({{ m::text(row="r", path="Reference") }}, '') AS reference,
        {{ m::text(row="r", path="Status") }} AS status,
        {{ m::text(row="r", path="LineAmountTypes") }} AS line_amount_types,
        {{ m::text(row="r", path="CurrencyCode") }} AS currency_code,
        COALESCE({{ m::rate(row="r", path="CurrencyRate") }}, 1) AS currency_rate,
        {{ m::money(row="r", path="SubTotal", or_zero=true) }} AS sub_total,
        {{ m::money(row="r", path="TotalTax", or_zero=true) }} AS total_tax,
        {{ m::money(row="r", path="Total", or_zero=true) }} AS total,
        COALESCE({{ m::boolean(row="r", path="IsReconciled") }}, FALSE) AS is_reconciled,
        r.updated_at AS updated_at
    FROM {{ m::parsed(relation=source(name="banktransactions"), doc="record",
                      paths=["Type", "Contact.ContactID", "BankAccount.AccountID",
                             "BankAccount.Code", "Date", "Reference", "Status", "LineAmountTypes",
                             "CurrencyCode", "CurrencyRate", "SubTotal", "TotalTax", "Total",
                             "IsReconciled"]) }} AS r
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
