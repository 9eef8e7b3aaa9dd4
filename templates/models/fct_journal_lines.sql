-- fct_journal_lines: the general ledger, one row per line of every journal Xero posted (for
-- invoices, bills, credit notes, payments, bank transactions, manual journals, and the reversals
-- of voided or edited ones). Amounts are in the base currency; a positive net_amount is a debit,
-- a negative one a credit, and every journal's lines add up to zero.
--
-- sources: journals, accounts
-- depends_on:
--
-- columns:
--   journal_id         text       Xero JournalID (a UUID) of the line's journal.
--   journal_line_id    text       Xero JournalLineID (a UUID); unique.
--   journal_number     integer    The journal's number: journals are numbered in the order they were posted.
--   journal_date       date       The accounting date of the journal.
--   created_at         timestamp  When Xero posted the journal (UTC).
--   source_id          text       The document that posted it (an invoice, payment, … id).
--   source_type        text       The kind of document: ACCREC, ACCPAY, ACCRECCREDIT, ACCPAYCREDIT, ACCRECPAYMENT, ACCPAYPAYMENT, CASHREC, CASHPAID, MANJOURNAL, …
--   reference          text       The journal's reference, if any.
--   account_id         text       The account posted to (dim_accounts.account_id).
--   account_code       text       That account's code.
--   account_type       text       That account's type (BANK, REVENUE, …).
--   account_name       text       That account's name.
--   account_class      text       That account's class (ASSET, EQUITY, EXPENSE, LIABILITY, REVENUE), as dim_accounts has it: UNKNOWN when Xero did not return the account.
--   description        text       The line's description, if any.
--   net_amount         money      Amount excluding tax: positive for a debit, negative for a credit.
--   gross_amount       money      Amount including tax.
--   tax_amount         money      Tax on the line (base currency).
--   tax_type           text       The tax rate applied, if any.
--
-- tests:
--   unique: journal_line_id
--   not_null: journal_id, journal_line_id, journal_number, journal_date, account_id, net_amount
--   relationship: account_id -> dim_accounts.account_id
--   relationship: journal_date -> dim_date.date_day
--   custom: journals_balance
WITH journals AS (
    -- The journal's own fields once per journal, not once per line.
    SELECT
        j.id AS journal_id,
        {{ m::integer(row="j", path="JournalNumber") }} AS journal_number,
        {{ m::xero_date(row="j", path="JournalDate") }} AS journal_date,
        j.updated_at AS created_at,
        {{ m::text(row="j", path="SourceID") }} AS source_id,
        {{ m::text(row="j", path="SourceType") }} AS source_type,
        NULLIF({{ m::text(row="j", path="Reference") }}, '') AS reference,
        j.record
    FROM {{ m::parsed(relation=source(name="journals"), doc="record",
                      paths=["JournalNumber", "JournalDate", "SourceID", "SourceType", "Reference"]) }} AS j
),
lines AS (
    SELECT
        j.journal_id,
        {{ m::text(row="j", path="JournalLineID") }} AS journal_line_id,
        j.journal_number,
        j.journal_date,
        j.created_at,
        j.source_id,
        j.source_type,
        j.reference,
        {{ m::text(row="j", path="AccountID") }} AS account_id,
        {{ m::text(row="j", path="AccountCode") }} AS account_code,
        {{ m::text(row="j", path="AccountType") }} AS account_type,
        {{ m::text(row="j", path="AccountName") }} AS account_name,
        NULLIF({{ m::text(row="j", path="Description") }}, '') AS description,
        {{ m::money(row="j", path="NetAmount", or_zero=true) }} AS net_amount,
        {{ m::money(row="j", path="GrossAmount", or_zero=true) }} AS gross_amount,
        {{ m::money(row="j", path="TaxAmount", or_zero=true) }} AS tax_amount,
        {{ m::text(row="j", path="TaxType") }} AS tax_type
    FROM {{ m::explode(relation="journals", doc="record", path="JournalLines",
                       paths=["JournalLineID", "AccountID", "AccountCode", "AccountType", "AccountName",
                              "Description", "NetAmount", "GrossAmount", "TaxAmount", "TaxType"]) }} AS j
),
accounts AS (
    -- Read from the raw accounts, not dim_accounts: dim_accounts reads these
    -- lines for the accounts Xero did not return (its unknown members).
    SELECT a.id AS account_id, {{ m::text(row="a", path="Class") }} AS class
    FROM {{ m::parsed(relation=source(name="accounts"), doc="record", paths=["Class"]) }} AS a
)
SELECT
    l.journal_id,
    l.journal_line_id,
    l.journal_number,
    l.journal_date,
    l.created_at,
    l.source_id,
    l.source_type,
    l.reference,
    l.account_id,
    l.account_code,
    l.account_type,
    l.account_name,
    CASE WHEN a.account_id IS NULL THEN 'UNKNOWN' ELSE a.class END AS account_class,
    l.description,
    l.net_amount,
    l.gross_amount,
    l.tax_amount,
    l.tax_type
FROM lines AS l
LEFT JOIN accounts AS a ON a.account_id = l.account_id
