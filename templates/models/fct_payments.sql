-- fct_payments: one row per payment of a sales invoice (received) or bill (made), at its latest
-- version. A deleted payment stays, with status DELETED. amount is in the invoice's currency;
-- bank_amount in the bank account's; amount_base in the organisation's base currency.
--
-- sources: payments
-- depends_on:
--
-- columns:
--   payment_id         text       Xero PaymentID (a UUID); unique.
--   invoice_id         text       The invoice or bill paid (fct_invoices.invoice_id).
--   payment_date       date       The day of the payment.
--   payment_type       text       ACCRECPAYMENT (received) or ACCPAYPAYMENT (made), among Xero's payment types.
--   status             text       AUTHORISED or DELETED.
--   amount             money      Amount, in the invoice's currency.
--   bank_amount        money      Amount, in the bank account's currency.
--   currency_rate      rate       The rate the payment was made at.
--   amount_base        money      amount in the base currency.
--   account_id         text       The bank account paid into or from (dim_accounts.account_id).
--   account_code       text       That account's code.
--   reference          text       The payment's reference, if any.
--   is_reconciled      boolean    Whether the payment is reconciled with a bank statement line.
--   updated_at         timestamp  When Xero last changed the payment (UTC).
--
-- tests:
--   unique: payment_id
--   not_null: payment_id, payment_date, status, amount
--   accepted_values: status in (AUTHORISED, DELETED)
--   relationship: invoice_id -> fct_invoices.invoice_id
--   relationship: account_id -> dim_accounts.account_id
--   relationship: payment_date -> dim_date.date_day
WITH payments AS (
    SELECT
        r.id AS payment_id,
        {{ m::text(row="r", path="Invoice.InvoiceID") }} AS invoice_id,
        {{ m::text(row="r", path="Date") }} AS payment_date_text,
        {{ m::text(row="r", path="PaymentType") }} AS payment_type,
        {{ m::text(row="r", path="Status") }} AS status,
        {{ m::money(row="r", path="Amount", or_zero=true) }} AS amount,
        {{ m::money(row="r", path="BankAmount") }} AS bank_amount,
        COALESCE({{ m::rate(row="r", path="CurrencyRate") }}, 1) AS currency_rate,
        {{ m::text(row="r", path="Account.AccountID") }} AS account_id,
        {{ m::text(row="r", path="Account.Code") }} AS account_code,
        NULLIF({{ m::text(row="r", path="Reference") }}, '') AS reference,
        COALESCE({{ m::boolean(row="r", path="IsReconciled") }}, FALSE) AS is_reconciled,
        r.updated_at AS updated_at
    FROM {{ m::parsed(relation=source(name="payments"), doc="record",
                      paths=["Invoice.InvoiceID", "Date", "PaymentType", "Status", "Amount",
                             "BankAmount", "CurrencyRate", "Account.AccountID", "Account.Code",
                             "Reference", "IsReconciled"]) }} AS r
)
SELECT
    payment_id,
    invoice_id,
    {{ m::date_from_text(value="payment_date_text") }} AS payment_date,
    payment_type,
    status,
    amount,
    bank_amount,
    currency_rate,
    {{ m::to_base(amount="amount", rate="currency_rate") }} AS amount_base,
    account_id,
    account_code,
    reference,
    is_reconciled,
    updated_at
FROM payments
