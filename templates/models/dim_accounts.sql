-- dim_accounts: the chart of accounts, one row per account.
--
-- sources: accounts
-- depends_on:
--
-- columns:
--   account_id        text       Xero AccountID (a UUID); unique.
--   code              text       The account code (e.g. 200); unique when present.
--   name              text       Account name.
--   type              text       Xero account type (BANK, CURRENT, REVENUE, EXPENSE, OVERHEADS, DIRECTCOSTS, …).
--   class             text       ASSET, EQUITY, EXPENSE, LIABILITY or REVENUE.
--   status            text       ACTIVE or ARCHIVED.
--   tax_type          text       The default tax type of lines on the account.
--   system_account    text       Xero's system role (DEBTORS, CREDITORS, GST, …), if any.
--   currency_code     text       The currency of a bank account; empty for other accounts.
--   reporting_code    text       Xero's reporting code.
--   updated_at        timestamp  When Xero last changed the account (UTC).
--
-- tests:
--   unique: account_id
--   unique: code
--   not_null: account_id, name, type, class, status
--   accepted_values: class in (ASSET, EQUITY, EXPENSE, LIABILITY, REVENUE)
SELECT
    r.id AS account_id,
    {{ m::text(doc="r.record", path="Code") }} AS code,
    {{ m::text(doc="r.record", path="Name") }} AS name,
    {{ m::text(doc="r.record", path="Type") }} AS type,
    {{ m::text(doc="r.record", path="Class") }} AS class,
    {{ m::text(doc="r.record", path="Status") }} AS status,
    {{ m::text(doc="r.record", path="TaxType") }} AS tax_type,
    NULLIF({{ m::text(doc="r.record", path="SystemAccount") }}, '') AS system_account,
    {{ m::text(doc="r.record", path="CurrencyCode") }} AS currency_code,
    {{ m::text(doc="r.record", path="ReportingCode") }} AS reporting_code,
    r.updated_at AS updated_at
FROM {{ source(name="accounts") }} AS r
