{#-
  DuckDB's side of every dialect difference the models meet. bigquery.sql
  defines the same macros with the same arguments; a model calls them as
  m::name(...) and never spells dialect-specific SQL itself.

  doc   an expression holding a Xero record as JSON text (a raw table's
        `record` column, or an element produced by explode)
  path  a field path under the record's root, e.g. `Total` or `Contact.ContactID`
-#}

{#- ---- Reading fields of a record ---------------------------------------- -#}

{%- macro text(doc, path) -%}
json_extract_string({{ doc }}, '$.{{ path }}')
{%- endmacro text -%}

{#- Money: exact, two decimals (amounts arrive as JSON numbers); with or_zero, a missing field reads as 0. -#}
{%- macro money(doc, path, or_zero=false) -%}
CAST({% if or_zero %}COALESCE(json_extract_string({{ doc }}, '$.{{ path }}'), '0'){% else %}json_extract_string({{ doc }}, '$.{{ path }}'){% endif %} AS DECIMAL(18, 2))
{%- endmacro money -%}

{#- Quantities and unit prices: Xero allows up to four decimals. -#}
{%- macro amount(doc, path) -%}
CAST(json_extract_string({{ doc }}, '$.{{ path }}') AS DECIMAL(18, 4))
{%- endmacro amount -%}

{#- Exchange rates: a binary float, as Xero computes with them. -#}
{%- macro rate(doc, path) -%}
CAST(json_extract_string({{ doc }}, '$.{{ path }}') AS DOUBLE)
{%- endmacro rate -%}

{%- macro integer(doc, path) -%}
CAST(json_extract_string({{ doc }}, '$.{{ path }}') AS BIGINT)
{%- endmacro integer -%}

{%- macro boolean(doc, path) -%}
CAST(json_extract_string({{ doc }}, '$.{{ path }}') AS BOOLEAN)
{%- endmacro boolean -%}

{#-
  `/Date(1577836800000+0000)/` → DATE. The milliseconds are the instant and
  the optional ±HHMM the organisation's clock, so the date is the one on that
  clock (Xero writes document dates as midnight there). The conversion uses
  its input several times, and DuckDB reads a JSON field again each time: a
  model converting many rows reads the field once with m::text (in a CTE)
  and converts that column with m::date_from_text.
-#}
{%- macro xero_date(doc, path) -%}
{{ self::date_from_text(value=self::text(doc=doc, path=path)) }}
{%- endmacro xero_date -%}

{%- macro date_from_text(value) -%}
CAST(epoch_ms(
    CAST(regexp_extract({{ value }}, '^/Date\((-?\d+)', 1) AS BIGINT)
    + COALESCE(
        (CASE WHEN regexp_extract({{ value }}, '\d([+-])\d{4}\)/$', 1) = '-' THEN -1 ELSE 1 END)
        * (TRY_CAST(regexp_extract({{ value }}, '\d[+-](\d{2})\d{2}\)/$', 1) AS BIGINT) * 60
           + TRY_CAST(regexp_extract({{ value }}, '\d[+-]\d{2}(\d{2})\)/$', 1) AS BIGINT))
        * 60000,
        0)
) AS DATE)
{%- endmacro date_from_text -%}

{#- `/Date(ms±HHMM)/` → TIMESTAMP in UTC (the instant; the offset is ignored). -#}
{%- macro xero_timestamp(doc, path) -%}
{{ self::timestamp_from_text(value=self::text(doc=doc, path=path)) }}
{%- endmacro xero_timestamp -%}

{%- macro timestamp_from_text(value) -%}
epoch_ms(CAST(regexp_extract({{ value }}, '^/Date\((-?\d+)', 1) AS BIGINT))
{%- endmacro timestamp_from_text -%}

{#-
  One row per element of the array at `path` of each row of `relation`: a
  derived table with every column of `relation` (as s.*) plus `item`, the
  element as JSON text. Rows whose array is empty or missing yield nothing.
-#}
{%- macro explode(relation, doc, path, item) -%}
(SELECT s.*, unnest(json_extract(s.{{ doc }}, '$.{{ path }}[*]')) AS {{ item }} FROM {{ relation }} AS s)
{%- endmacro explode -%}

{#- Casts of computed values to the column types the models document. -#}
{%- macro as_money(value) -%}
CAST({{ value }} AS DECIMAL(18, 2))
{%- endmacro as_money -%}

{%- macro as_integer(value) -%}
CAST({{ value }} AS BIGINT)
{%- endmacro as_integer -%}

{#-
  A NULL of a documented logical type (text, boolean, integer, money, amount,
  rate, date, timestamp): the columns of an unknown member that nothing
  tells, typed so that either side of a UNION ALL may come first.
-#}
{%- macro typed_null(type) -%}
CAST(NULL AS {% if type == "text" %}VARCHAR{% elif type == "boolean" %}BOOLEAN{% elif type == "integer" %}BIGINT{% elif type == "money" %}DECIMAL(18, 2){% elif type == "amount" %}DECIMAL(18, 4){% elif type == "rate" %}DOUBLE{% elif type == "date" %}DATE{% elif type == "timestamp" %}TIMESTAMP{% else %}{{ throw(message="m::typed_null: " ~ type ~ " is not a logical type") }}{% endif %})
{%- endmacro typed_null -%}

{#- ---- Arithmetic and dates ---------------------------------------------- -#}

{#-
  A document-currency amount in the base currency: amount ÷ rate, rounded
  half away from zero to the cent per document (as Xero reports do). The
  division is in binary floating point on whole cents, the way Xero and the
  sandbox do it, so the cents agree exactly.
-#}
{%- macro to_base(amount, rate) -%}
(CASE WHEN {{ rate }} IS NULL OR {{ rate }} = 1 OR {{ rate }} <= 0 THEN CAST({{ amount }} AS DECIMAL(18, 2))
      ELSE CAST(round(CAST({{ amount }} * 100 AS DOUBLE) / {{ rate }}) / 100 AS DECIMAL(18, 2)) END)
{%- endmacro to_base -%}

{%- macro make_date(year, month, day) -%}
make_date(CAST({{ year }} AS BIGINT), CAST({{ month }} AS BIGINT), CAST({{ day }} AS BIGINT))
{%- endmacro make_date -%}

{#- strftime-style formats (%Y, %m, %d, %B, %A) behave the same in both dialects. -#}
{%- macro format_date(date, format) -%}
strftime({{ date }}, '{{ format }}')
{%- endmacro format_date -%}

{#- ISO day of the week: 1 = Monday … 7 = Sunday. -#}
{%- macro iso_day_of_week(date) -%}
CAST(isodow({{ date }}) AS BIGINT)
{%- endmacro iso_day_of_week -%}

{#- A table of every day from `start` to `end` inclusive, one column `date_day`. -#}
{%- macro date_spine(start, end) -%}
(SELECT CAST(g.d AS DATE) AS date_day
   FROM generate_series(CAST({{ start }} AS TIMESTAMP), CAST({{ end }} AS TIMESTAMP), INTERVAL 1 DAY) AS g(d))
{%- endmacro date_spine -%}

{%- macro string_literal(value) -%}
'{{ value | replace(from="'", to="''") }}'
{%- endmacro string_literal -%}

{#- ---- The raw dataset (loading) ----------------------------------------- -#}

{#-
  A raw table: the latest version of each record of one resource, the record
  kept whole as JSON text so the schema never changes with Xero's fields.
-#}
{%- macro raw_table(table) -%}
CREATE TABLE IF NOT EXISTS {{ table }} (
    id VARCHAR NOT NULL,
    updated_at TIMESTAMP,
    record VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    fetched_at TIMESTAMP NOT NULL
);
{%- endmacro raw_table -%}

{#-
  Merges the envelopes in `load` into `target`, keeping the latest version of
  each record: newest change stamp first, then the latest fetch; a tie
  replaces the row with the same record, so loading twice changes nothing.
  The run id and fetch time come in as literals (not from the load table,
  whose column types are inferred). One transaction; `load` is kept (the
  loader drops it once every merge of the run went through, so a merge can
  be repeated).
-#}
{%- macro merge_latest(target, load, run_id, fetched_at) -%}
BEGIN TRANSACTION;
{{ self::raw_table(table=target) }}
CREATE TEMP TABLE ledgerlake_incoming AS
SELECT id, updated_at, record, run_id, fetched_at FROM (
    SELECT CAST(id AS VARCHAR) AS id,
           TRY_CAST(updated_at AS TIMESTAMP) AS updated_at,
           CAST(record AS VARCHAR) AS record,
           {{ self::string_literal(value=run_id) }} AS run_id,
           CAST({{ self::string_literal(value=fetched_at) }} AS TIMESTAMP) AS fetched_at,
           seq
      FROM {{ load }}
) AS l
QUALIFY row_number() OVER (PARTITION BY id ORDER BY updated_at DESC NULLS LAST, seq DESC) = 1;
DELETE FROM ledgerlake_incoming AS i USING {{ target }} AS t
 WHERE t.id = i.id
   AND (COALESCE(t.updated_at, TIMESTAMP '0001-01-01') > COALESCE(i.updated_at, TIMESTAMP '0001-01-01')
        OR (COALESCE(t.updated_at, TIMESTAMP '0001-01-01') = COALESCE(i.updated_at, TIMESTAMP '0001-01-01')
            AND t.fetched_at > i.fetched_at));
DELETE FROM {{ target }} AS t USING ledgerlake_incoming AS i WHERE t.id = i.id;
INSERT INTO {{ target }} SELECT id, updated_at, record, run_id, fetched_at FROM ledgerlake_incoming;
DROP TABLE ledgerlake_incoming;
COMMIT;
{%- endmacro merge_latest -%}

{#- ---- The transformed dataset (publishing) ------------------------------ -#}

{#-
  Replaces every published table by its staging table in one transaction:
  a reader sees all the old tables or all the new ones.
-#}
{%- macro publish(models, prefix) -%}
BEGIN TRANSACTION;
{% for name in models -%}
DROP TABLE IF EXISTS {{ name }};
ALTER TABLE {{ prefix }}{{ name }} RENAME TO {{ name }};
{% endfor -%}
COMMIT;
{%- endmacro publish -%}
