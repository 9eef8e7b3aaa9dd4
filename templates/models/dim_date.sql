-- dim_date: the calendar, one row per day from 1 January of the earliest year any document,
-- payment or journal falls in to 31 December of the latest (due dates included), with the
-- organisation's financial year (from its FinancialYearEndMonth; December when unknown).
--
-- sources: organisation
-- depends_on: fct_invoices, fct_credit_notes, fct_payments, fct_bank_transactions, fct_journal_lines
--
-- columns:
--   date_day        date       The day; unique.
--   year            integer    Calendar year.
--   quarter         integer    Calendar quarter, 1 to 4.
--   month           integer    Month, 1 to 12.
--   month_name      text       January … December.
--   year_month      text       YYYY-MM.
--   day_of_month    integer    1 to 31.
--   day_of_week     integer    ISO day of the week: 1 = Monday … 7 = Sunday.
--   day_name        text       Monday … Sunday.
--   is_weekend      boolean    Saturday or Sunday.
--   fiscal_year     integer    The financial year, named by the calendar year it ends in.
--   fiscal_quarter  integer    Quarter of the financial year, 1 to 4.
--
-- tests:
--   unique: date_day
--   not_null: date_day, year, month, fiscal_year, fiscal_quarter
WITH days AS (
    SELECT invoice_date AS day FROM {{ ref(name="fct_invoices") }}
    UNION ALL SELECT due_date FROM {{ ref(name="fct_invoices") }}
    UNION ALL SELECT credit_note_date FROM {{ ref(name="fct_credit_notes") }}
    UNION ALL SELECT payment_date FROM {{ ref(name="fct_payments") }}
    UNION ALL SELECT transaction_date FROM {{ ref(name="fct_bank_transactions") }}
    UNION ALL SELECT journal_date FROM {{ ref(name="fct_journal_lines") }}
),
bounds AS (
    SELECT
        {{ m::make_date(year="EXTRACT(YEAR FROM MIN(day))", month="1", day="1") }} AS first_day,
        {{ m::make_date(year="EXTRACT(YEAR FROM MAX(day))", month="12", day="31") }} AS last_day
    FROM days
),
financial_year AS (
    SELECT COALESCE(MAX({{ m::integer(row="o", path="FinancialYearEndMonth") }}), 12) AS end_month
    FROM {{ m::parsed(relation=source(name="organisation"), doc="record",
                      paths=["FinancialYearEndMonth"]) }} AS o
),
calendar AS (
    SELECT
        d.date_day,
        {{ m::as_integer(value="EXTRACT(YEAR FROM d.date_day)") }} AS year,
        {{ m::as_integer(value="EXTRACT(QUARTER FROM d.date_day)") }} AS quarter,
        {{ m::as_integer(value="EXTRACT(MONTH FROM d.date_day)") }} AS month,
        {{ m::as_integer(value="EXTRACT(DAY FROM d.date_day)") }} AS day_of_month,
        {{ m::iso_day_of_week(date="d.date_day") }} AS day_of_week,
        f.end_month,
        -- Whole months since the financial year began: 0 to 11.
        CASE WHEN EXTRACT(MONTH FROM d.date_day) > f.end_month
             THEN EXTRACT(MONTH FROM d.date_day) - f.end_month - 1
             ELSE EXTRACT(MONTH FROM d.date_day) - f.end_month + 11 END AS months_into_year
    FROM {{ m::date_spine(start="(SELECT first_day FROM bounds)", end="(SELECT last_day FROM bounds)") }} AS d
    CROSS JOIN financial_year AS f
)
SELECT
    date_day,
    year,
    quarter,
    month,
    {{ m::format_date(date="date_day", format="%B") }} AS month_name,
    {{ m::format_date(date="date_day", format="%Y-%m") }} AS year_month,
    day_of_month,
    day_of_week,
    {{ m::format_date(date="date_day", format="%A") }} AS day_name,
    day_of_week >= 6 AS is_weekend,
    {{ m::as_integer(value="year + CASE WHEN month > end_month THEN 1 ELSE 0 END") }} AS fiscal_year,
    {{ m::as_integer(value="CASE WHEN months_into_year < 3 THEN 1 WHEN months_into_year < 6 THEN 2 WHEN months_into_year < 9 THEN 3 ELSE 4 END") }} AS fiscal_quarter
FROM calendar
