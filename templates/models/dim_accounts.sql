-- dim_accounts: the chart of accounts, one row per account.
-- An account that journal lines, payments, bank transactions (by id) or invoice lines (by code)
-- post to but Xero did not return gets an unknown member: name 'Unknown account', type, class
-- and status UNKNOWN, is_unknown TRUE, so what posts to it still joins (the relationship tests
-- warn). Referred to by id, the member has that account_id, and the code the references give
-- when they agree on one that no other account has; a code that invoice lines use and no
-- account (known or unknown) has gets a member of its own, with account_id 'unknown:<code>'.
--
-- sources: accounts
-- depends_on: fct_journal_lines, fct_payments, fct_bank_transactions, fct_invoice_lines
--
-- columns:
--   account_id        text       Xero AccountID (a UUID); unique. 'unknown:<code>' for an unknown member known only by its code.
--   code              text       The account code (e.g. 200); unique when present.
--   name              text       Account name; 'Unknown account' for an unknown member.
--   type              text       Xero account type (BANK, CURRENT, REVENUE, EXPENSE, OVERHEADS, DIRECTCOSTS, …); UNKNOWN for an unknown member.
--   class             text       ASSET, EQUITY, EXPENSE, LIABILITY or REVENUE; UNKNOWN for an unknown member.
--   status            text       ACTIVE or ARCHIVED; UNKNOWN for an unknown member.
--   tax_type          text       The default tax type of lines on the account.
--   system_account    text       Xero's system role (DEBTORS, CREDITORS, GST, …), if any.
--   currency_code     text       The currency of a bank account; empty for other accounts.
--   reporting_code    text       Xero's reporting code.
--   updated_at        timestamp  When Xero last changed the account (UTC); empty for an unknown member.
--   is_unknown        boolean    Whether the row is an unknown member: an account posted to that Xero did not return.
--
-- tests:
--   unique: account_id
--   unique: code
--   not_null: account_id, name, type, class, status, is_unknown
--   accepted_values: class in (ASSET, EQUITY, EXPENSE, LIABILITY, REVENUE, UNKNOWN)
WITH accounts AS (
    SELECT
        r.id AS account_id,
        {{ m::text(row="r", path="Code") }} AS code,
        {{ m::text(row="r", path="Name") }} AS name,
        {{ m::text(row="r", path="Type") }} AS type,
        {{ m::text(row="r", path="Class") }} AS class,
        {{ m::text(row="r", path="Status") }} AS status,
        {{ m::text(row="r", path="TaxType") }} AS tax_type,
        NULLIF({{ m::text(row="r", path="SystemAccount") }}, '') AS system_account,
        {{ m::text(row="r", path="CurrencyCode") }} AS currency_code,
        {{ m::text(row="r", path="ReportingCode") }} AS reporting_code,
        r.updated_at AS updated_at
    FROM {{ m::parsed(relation=source(name="accounts"), doc="record",
                      paths=["Code", "Name", "Type", "Class", "Status", "TaxType", "SystemAccount",
                             "CurrencyCode", "ReportingCode"]) }} AS r
),
by_id AS (
    -- Every account posted to by id, with the code the reference gives.
    SELECT account_id, NULLIF(account_code, '') AS code FROM {{ ref(name="fct_journal_lines") }}
    UNION ALL
    SELECT account_id, NULLIF(account_code, '') FROM {{ ref(name="fct_payments") }}
    UNION ALL
    SELECT bank_account_id, NULLIF(bank_account_code, '') FROM {{ ref(name="fct_bank_transactions") }}
),
missing_ids AS (
    SELECT b.account_id,
           CASE WHEN COUNT(DISTINCT b.code) = 1 THEN MIN(b.code) END AS code
    FROM by_id AS b
    LEFT JOIN accounts AS a ON a.account_id = b.account_id
    WHERE b.account_id IS NOT NULL
      AND a.account_id IS NULL
    GROUP BY b.account_id
),
unknown_ids AS (
    -- The code is kept when no known account has it and no other unknown one claims it.
    SELECT m.account_id,
           CASE WHEN taken.code IS NULL AND COUNT(*) OVER (PARTITION BY m.code) = 1
                THEN m.code END AS code
    FROM missing_ids AS m
    LEFT JOIN (SELECT DISTINCT code FROM accounts WHERE code IS NOT NULL) AS taken
           ON taken.code = m.code
),
unknown_codes AS (
    SELECT DISTINCT l.account_code AS code
    FROM {{ ref(name="fct_invoice_lines") }} AS l
    LEFT JOIN (
        SELECT code FROM accounts WHERE code IS NOT NULL
        UNION ALL
        SELECT code FROM unknown_ids WHERE code IS NOT NULL
    ) AS known ON known.code = l.account_code
    WHERE l.account_code IS NOT NULL
      AND known.code IS NULL
),
unknown AS (
    SELECT account_id, code FROM unknown_ids
    UNION ALL
    SELECT 'unknown:' || code, code FROM unknown_codes
)
SELECT
    account_id,
    code,
    name,
    type,
    class,
    status,
    tax_type,
    system_account,
    currency_code,
    reporting_code,
    updated_at,
    FALSE AS is_unknown
FROM accounts
UNION ALL
SELECT
    account_id,
    code,
    'Unknown account' AS name,
    'UNKNOWN' AS type,
    'UNKNOWN' AS class,
    'UNKNOWN' AS status,
    {{ m::typed_null(type="text") }} AS tax_type,
    {{ m::typed_null(type="text") }} AS system_account,
    {{ m::typed_null(type="text") }} AS currency_code,
    {{ m::typed_null(type="text") }} AS reporting_code,
    {{ m::typed_null(type="timestamp") }} AS updated_at,
    TRUE AS is_unknown
FROM unknown
