{#-
  DuckDB's side of every dialect difference the models meet. bigquery.sql
  defines the same macros with the same arguments; a model calls them as
  m::name(...) and never spells dialect-specific SQL itself.

  doc   a column holding a Xero record as JSON text (a raw table's `record`,
        or the `item` of explode)
  path  a field path under the record's root, e.g. `Total` or `Contact.ContactID`
  row   the alias of a row of a relation made by parsed
-#}

{#- ---- Reading fields of a record ---------------------------------------- -#}

{#-
  `relation` with, beside its own columns, the field at each of `paths` of
  its JSON column `doc` as text (NULL when missing), in a column named by
  field_column: every field from one parse of the record. (A JSON function
  per field would parse the record once per field, and each keeps a buffer
  of its own per thread that DuckDB cannot spill: fifteen of them ran a
  256 MB memory limit out.) The field macros below read these columns.
-#}
{%- macro parsed(relation, doc, paths) -%}
(SELECT p.* EXCLUDE (ledgerlake_fields){% for path in paths %}, p.ledgerlake_fields[{{ loop.index }}] AS {{ self::field_column(path=path) }}{% endfor %}
   FROM (SELECT s.*, json_extract_string(s.{{ doc }}, [{% for path in paths %}'$.{{ path }}'{% if not loop.last %}, {% endif %}{% endfor %}]) AS ledgerlake_fields
           FROM {{ relation }} AS s) AS p)
{%- endmacro parsed -%}

{#- The column of parsed holding the field at `path`. -#}
{%- macro field_column(path) -%}
f__{{ path | replace(from=".", to="__") }}
{%- endmacro field_column -%}

{%- macro text(row, path) -%}
{{ row }}.{{ self::field_column(path=path) }}
{%- endmacro text -%}

{#- Money: exact, two decimals (amounts arrive as JSON numbers); with or_zero, a missing field reads as 0. -#}
{%- macro money(row, path, or_zero=false) -%}
CAST({% if or_zero %}COALESCE({{ self::text(row=row, path=path) }}, '0'){% else %}{{ self::text(row=row, path=path) }}{% endif %} AS DECIMAL(18, 2))
{%- endmacro money -%}

{#- Quantities and unit prices: Xero allows up to four decimals. -#}
{%- macro amount(row, path) -%}
CAST({{ self::text(row=row, path=path) }} AS DECIMAL(18, 4))
{%- endmacro amount -%}

{#- Exchange rates: a binary float, as Xero computes with them. -#}
{%- macro rate(row, path) -%}
CAST({{ self::text(row=row, path=path) }} AS DOUBLE)
{%- endmacro rate -%}

{%- macro integer(row, path) -%}
CAST({{ self::text(row=row, path=path) }} AS BIGINT)
{%- endmacro integer -%}

{%- macro boolean(row, path) -%}
CAST({{ self::text(row=row, path=path) }} AS BOOLEAN)
{%- endmacro boolean -%}

{#-
  `/Date(1577836800000+0000)/` → DATE. The milliseconds are the instant and
  the optional ±HHMM the organisation's clock, so the date is the one on that
  clock (Xero writes document dates as midnight there).
-#}
{%- macro xero_date(row, path) -%}
{{ self::date_from_text(value=self::text(row=row, path=path)) }}
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
{%- macro xero_timestamp(row, path) -%}
{{ self::timestamp_from_text(value=self::text(row=row, path=path)) }}
{%- endmacro xero_timestamp -%}

{%- macro timestamp_from_text(value) -%}
epoch_ms(CAST(regexp_extract({{ value }}, '^/Date\((-?\d+)', 1) AS BIGINT))
{%- endmacro timestamp_from_text -%}

{#-
  One row per element of the array at `path` (a field of the record's root)
  of each row of `relation`: a derived table with every column of
  `relation` (as s.*) plus, as parsed does, the element's field at each of
  `paths` (plain field names) in its field_column, for the field macros to
  read. Rows whose array is empty or missing yield nothing. The record is
  parsed once, straight into the elements' fields: no element is written
  back out as JSON to be parsed again.
-#}
{%- macro explode(relation, doc, path, paths) -%}
{%- for p in paths %}{% if "." in p %}{{ throw(message="m::explode: element paths are plain field names, not " ~ p) }}{% endif %}{% endfor -%}
(SELECT s.* EXCLUDE (ledgerlake_item){% for p in paths %}, s.ledgerlake_item."{{ p }}" AS {{ self::field_column(path=p) }}{% endfor %}
   FROM (SELECT s.*, unnest(json_transform(s.{{ doc }}, '{"{{ path }}": [{ {%- for p in paths %}"{{ p }}": "VARCHAR"{% if not loop.last %}, {% endif %}{% endfor -%} }]}')."{{ path }}") AS ledgerlake_item
           FROM {{ relation }} AS s) AS s)
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
  kept whole as JSON text so the schema never changes with Xero's fields;
  with whether and when Xero removed it: `xero_status` (the record's status
  field as sent, NULL for resources without one), `removed_at` (NULL while
  the record lives) and `removed_run_id` (the run whose data said it was
  removed; compaction keeps that run's manifest). A table made before these
  columns existed gains them by raw_upgrade. The records are stored with
  zstd: on JSON text it writes about twice as fast as DuckDB's default
  (dictionary and FSST, which it analyses every record for) and a third of
  the size, and reads as fast (BENCHMARKS.md). A table made before keeps
  its compression until a rebuild.
-#}
{%- macro raw_table(table) -%}
CREATE TABLE IF NOT EXISTS {{ table }} (
    id VARCHAR NOT NULL,
    updated_at TIMESTAMP,
    record VARCHAR NOT NULL USING COMPRESSION zstd,
    run_id VARCHAR NOT NULL,
    fetched_at TIMESTAMP NOT NULL,
    xero_status VARCHAR,
    removed_at TIMESTAMP,
    removed_run_id VARCHAR
);
{%- endmacro raw_table -%}

{#- Adds the removal columns to a raw table made before they existed. -#}
{%- macro raw_upgrade(table) -%}
ALTER TABLE {{ table }} ADD COLUMN IF NOT EXISTS xero_status VARCHAR;
ALTER TABLE {{ table }} ADD COLUMN IF NOT EXISTS removed_at TIMESTAMP;
ALTER TABLE {{ table }} ADD COLUMN IF NOT EXISTS removed_run_id VARCHAR;
{%- endmacro raw_upgrade -%}

{#-
  The statuses by which Xero says a record is gone (deleted, voided,
  archived; a contact's GDPRREQUEST: Xero erased its personal data).
-#}
{%- macro removal_statuses() -%}
('DELETED', 'VOIDED', 'ARCHIVED', 'GDPRREQUEST')
{%- endmacro removal_statuses -%}

{#-
  Fills the status of rows loaded before raw tables had one (a table just
  upgraded by raw_upgrade): `xero_status` from the record, and a removal's time
  from the version itself (its change stamp, else its fetch). Rows already
  filled, or whose record has no status, are left alone.
-#}
{%- macro raw_backfill(table, status_field) -%}
UPDATE {{ table }}
   SET xero_status = json_extract_string(record, '$.{{ status_field }}'),
       removed_at = CASE WHEN json_extract_string(record, '$.{{ status_field }}') IN {{ self::removal_statuses() }} THEN COALESCE(updated_at, fetched_at) END,
       removed_run_id = CASE WHEN json_extract_string(record, '$.{{ status_field }}') IN {{ self::removal_statuses() }} THEN run_id END
 WHERE xero_status IS NULL AND removed_at IS NULL
   AND json_extract_string(record, '$.{{ status_field }}') IS NOT NULL;
{%- endmacro raw_backfill -%}

{#-
  Merges the lines of raw pages in `load` (object, line, text: see the
  warehouse's load_lines) into `target`, keeping the latest version of each
  record: newest change stamp first, then the latest fetch, then the later
  manifest, page and line; a tie with the row already there replaces it
  with the same record, so loading twice changes nothing. Each record's id
  (`id_field`), change stamp (`updated_field`; none for a resource without
  one) and status (`status_field`, if any) are read from the record itself.
  `pages` names every page of the resource being loaded: its key, the run and
  fetch time of its manifest, the manifest's place among those loaded and
  the page's place in it (they come in as literals, not from the load
  table). A record with no id, or a stamp that is not a date, fails the merge
  naming its page and line. No transaction of its own: it runs inside the
  warehouse's load (load_lines), whose one transaction holds every table's
  merge.

  Removal: a version whose status is one of removal_statuses is removed at
  its change stamp. A resource without a stamp has no such time, so its
  removal dates from the first fetch of the unbroken run of removed versions
  ending at the kept one (`streak`: the kept row's, when the incoming
  versions are all removed and the row was removed already). A row removed
  because a complete listing lacked it (mark_unlisted) stays so when the same
  version is loaded again.
-#}
{%- macro merge_lines(target, load, pages, id_field, updated_field, status_field) -%}
{{ self::raw_table(table=target) }}
CREATE TEMP TABLE ledgerlake_pages (object VARCHAR, run_id VARCHAR, fetched_at TIMESTAMP, manifest INTEGER, page INTEGER);
INSERT INTO ledgerlake_pages VALUES
{% for p in pages -%}
({{ self::string_literal(value=p.key) }}, {{ self::string_literal(value=p.run_id) }}, CAST({{ self::string_literal(value=p.fetched_at) }} AS TIMESTAMP), {{ p.manifest }}, {{ p.page }}){% if not loop.last %},{% endif %}
{% endfor -%};
{%- set streak = status_field and not updated_field %}
-- The latest version of each record is chosen over its keys and place
-- (object, line) only, and its text joins back from the load table only as
-- it is inserted: neither the sort nor the incoming rows move the records'
-- JSON (which, under the connection's memory limit, would spill to disk).
CREATE TEMP TABLE ledgerlake_incoming AS
SELECT w.id, w.updated_at, w.object, w.line, w.run_id, w.fetched_at, w.xero_status,
       w.removed_at, w.removed_run_id, w.whole_streak
  FROM (
SELECT id, updated_at, object, line, run_id, fetched_at, xero_status,
       CASE WHEN removed THEN {% if streak %}streak_at{% else %}COALESCE(updated_at, fetched_at){% endif %} END AS removed_at,
       CASE WHEN removed THEN {% if streak %}streak_run{% else %}run_id{% endif %} END AS removed_run_id,
       {% if streak %}removed AND last_live IS NULL{% else %}FALSE{% endif %} AS whole_streak
  FROM (
    SELECT *{% if streak %},
           -- The first removed version after the last live one.
           max(CASE WHEN seq = COALESCE(last_live, 0) + 1 THEN fetched_at END) OVER (PARTITION BY id) AS streak_at,
           max(CASE WHEN seq = COALESCE(last_live, 0) + 1 THEN run_id END) OVER (PARTITION BY id) AS streak_run{% endif %}
      FROM (
        SELECT *{% if streak %},
               max(CASE WHEN NOT removed THEN seq END) OVER (PARTITION BY id) AS last_live{% endif %}
          FROM (
            SELECT *,
                   COALESCE(xero_status IN {{ self::removal_statuses() }}, FALSE) AS removed{% if streak %},
                   row_number() OVER (PARTITION BY id ORDER BY updated_at ASC NULLS FIRST, fetched_at, manifest, page, line) AS seq{% endif %}
              FROM (
                SELECT CASE
                           WHEN json_type(f.id_json) = 'VARCHAR' AND (f.id_json ->> '$') <> '' THEN f.id_json ->> '$'
                           WHEN json_type(f.id_json) IN ('BIGINT', 'UBIGINT', 'HUGEINT', 'DOUBLE') THEN CAST(f.id_json AS VARCHAR)
                           ELSE error('bad raw record: ' || f.object || ' line ' || f.line || ': the record has no {{ id_field }} (or is not a JSON object)')
                       END AS id,
                       {% if updated_field -%}
                       CASE
                           WHEN f.stamp_json IS NULL OR json_type(f.stamp_json) = 'NULL' THEN NULL
                           WHEN json_type(f.stamp_json) = 'VARCHAR' AND regexp_full_match(trim(f.stamp_json ->> '$'), '/Date\(-?\d+([+-]\d{4})?\)/')
                               THEN epoch_ms(CAST(regexp_extract(f.stamp_json ->> '$', '/Date\((-?\d+)', 1) AS BIGINT))
                           WHEN json_type(f.stamp_json) = 'VARCHAR' AND TRY_CAST(f.stamp_json ->> '$' AS TIMESTAMP) IS NOT NULL
                               THEN CAST(f.stamp_json ->> '$' AS TIMESTAMP)
                           ELSE error('bad raw record: ' || f.object || ' line ' || f.line || ': {{ updated_field }} is not a date: ' || CAST(f.stamp_json AS VARCHAR))
                       END
                       {%- else -%}
                       CAST(NULL AS TIMESTAMP)
                       {%- endif %} AS updated_at,
                       {% if status_field -%}
                       f.status_json ->> '$'
                       {%- else -%}
                       CAST(NULL AS VARCHAR)
                       {%- endif %} AS xero_status,
                       f.object, f.run_id, f.fetched_at, f.manifest, f.page, f.line
                  FROM (
                      SELECT object, line, run_id, fetched_at, manifest, page, fields[1] AS id_json{% if updated_field %}, fields[2] AS stamp_json{% endif %}{% if status_field %}, fields[{% if updated_field %}3{% else %}2{% endif %}] AS status_json{% endif %} FROM (
                          -- Only this resource's lines (the load table holds
                          -- the whole batch's): joined to its pages before
                          -- the parse, which would otherwise run on every
                          -- line. One parse of the record for every field.
                          SELECT l.object, l.line, p.run_id, p.fetched_at, p.manifest, p.page,
                                 json_extract(l.text, ['$.{{ id_field }}'{% if updated_field %}, '$.{{ updated_field }}'{% endif %}{% if status_field %}, '$.{{ status_field }}'{% endif %}]) AS fields
                            FROM {{ load }} AS l
                            JOIN ledgerlake_pages AS p ON p.object = l.object
                      )
                  ) AS f
              )
          )
      )
  )
QUALIFY row_number() OVER (PARTITION BY id ORDER BY updated_at DESC NULLS LAST, fetched_at DESC, manifest DESC, page DESC, line DESC) = 1
  ) AS w;
DELETE FROM ledgerlake_incoming AS i USING {{ target }} AS t
 WHERE t.id = i.id
   AND (COALESCE(t.updated_at, TIMESTAMP '0001-01-01') > COALESCE(i.updated_at, TIMESTAMP '0001-01-01')
        OR (COALESCE(t.updated_at, TIMESTAMP '0001-01-01') = COALESCE(i.updated_at, TIMESTAMP '0001-01-01')
            AND t.fetched_at > i.fetched_at));
UPDATE ledgerlake_incoming AS i
   SET removed_at = t.removed_at, removed_run_id = t.removed_run_id
  FROM {{ target }} AS t
 WHERE t.id = i.id AND t.removed_at IS NOT NULL
   AND ((i.whole_streak AND t.xero_status IN {{ self::removal_statuses() }})
        OR (i.removed_at IS NULL AND t.run_id = i.run_id AND t.fetched_at = i.fetched_at));
DELETE FROM {{ target }} AS t USING ledgerlake_incoming AS i WHERE t.id = i.id;
INSERT INTO {{ target }} (id, updated_at, record, run_id, fetched_at, xero_status, removed_at, removed_run_id)
SELECT i.id, i.updated_at, l.text, i.run_id, i.fetched_at, i.xero_status, i.removed_at, i.removed_run_id
  FROM ledgerlake_incoming AS i
  JOIN {{ load }} AS l ON l.object = i.object AND l.line = i.line;
DROP TABLE ledgerlake_incoming;
DROP TABLE ledgerlake_pages;
{%- endmacro merge_lines -%}

{#-
  For a resource Xero lists in full every run: each row older than a
  complete listing loaded now (`listings`, oldest first: run_id, fetched_at)
  is not in it, so Xero no longer has the record; it is removed at that
  listing's fetch, by that listing's run (whose manifest compaction then
  keeps, so loading from scratch marks it alike). Rows removed already keep
  their removal.
-#}
{%- macro mark_unlisted(target, listings) -%}
{% for l in listings -%}
UPDATE {{ target }}
   SET removed_at = CAST({{ self::string_literal(value=l.fetched_at) }} AS TIMESTAMP),
       removed_run_id = {{ self::string_literal(value=l.run_id) }}
 WHERE removed_at IS NULL AND fetched_at < CAST({{ self::string_literal(value=l.fetched_at) }} AS TIMESTAMP);
{% endfor -%}
{%- endmacro mark_unlisted -%}

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
