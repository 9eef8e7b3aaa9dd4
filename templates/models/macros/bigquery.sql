{#-
  BigQuery's side of every dialect difference the models meet: the same
  macros with the same arguments as duckdb.sql (see there for what each
  means). Regular expressions are raw strings (r'…') because BigQuery
  string literals treat the backslash as an escape.
-#}

{#- ---- Reading fields of a record ---------------------------------------- -#}

{#- BigQuery reads each field with JSON_VALUE, which parses cheaply there. -#}
{%- macro parsed(relation, doc, paths) -%}
(SELECT s.*{% for path in paths %}, JSON_VALUE(s.{{ doc }}, '$.{{ path }}') AS {{ self::field_column(path=path) }}{% endfor %} FROM {{ relation }} AS s)
{%- endmacro parsed -%}

{%- macro field_column(path) -%}
f__{{ path | replace(from=".", to="__") }}
{%- endmacro field_column -%}

{%- macro text(row, path) -%}
{{ row }}.{{ self::field_column(path=path) }}
{%- endmacro text -%}

{%- macro money(row, path, or_zero=false) -%}
CAST({% if or_zero %}COALESCE({{ self::text(row=row, path=path) }}, '0'){% else %}{{ self::text(row=row, path=path) }}{% endif %} AS NUMERIC(18, 2))
{%- endmacro money -%}

{%- macro amount(row, path) -%}
CAST({{ self::text(row=row, path=path) }} AS NUMERIC(18, 4))
{%- endmacro amount -%}

{%- macro rate(row, path) -%}
CAST({{ self::text(row=row, path=path) }} AS FLOAT64)
{%- endmacro rate -%}

{%- macro integer(row, path) -%}
CAST({{ self::text(row=row, path=path) }} AS INT64)
{%- endmacro integer -%}

{%- macro boolean(row, path) -%}
CAST({{ self::text(row=row, path=path) }} AS BOOL)
{%- endmacro boolean -%}

{%- macro xero_date(row, path) -%}
{{ self::date_from_text(value=self::text(row=row, path=path)) }}
{%- endmacro xero_date -%}

{%- macro date_from_text(value) -%}
DATE(TIMESTAMP_MILLIS(
    CAST(REGEXP_EXTRACT({{ value }}, r'^/Date\((-?\d+)') AS INT64)
    + IFNULL(
        IF(REGEXP_EXTRACT({{ value }}, r'\d([+-])\d{4}\)/$') = '-', -1, 1)
        * (SAFE_CAST(REGEXP_EXTRACT({{ value }}, r'\d[+-](\d{2})\d{2}\)/$') AS INT64) * 60
           + SAFE_CAST(REGEXP_EXTRACT({{ value }}, r'\d[+-]\d{2}(\d{2})\)/$') AS INT64))
        * 60000,
        0)
))
{%- endmacro date_from_text -%}

{%- macro xero_timestamp(row, path) -%}
{{ self::timestamp_from_text(value=self::text(row=row, path=path)) }}
{%- endmacro xero_timestamp -%}

{%- macro timestamp_from_text(value) -%}
TIMESTAMP_MILLIS(CAST(REGEXP_EXTRACT({{ value }}, r'^/Date\((-?\d+)') AS INT64))
{%- endmacro timestamp_from_text -%}

{%- macro explode(relation, doc, path, paths) -%}
(SELECT s.*{% for p in paths %}, JSON_VALUE(ledgerlake_item, '$.{{ p }}') AS {{ self::field_column(path=p) }}{% endfor %} FROM {{ relation }} AS s CROSS JOIN UNNEST(JSON_QUERY_ARRAY(s.{{ doc }}, '$.{{ path }}')) AS ledgerlake_item)
{%- endmacro explode -%}

{#- Casts of computed values to the column types the models document. -#}
{%- macro as_money(value) -%}
CAST({{ value }} AS NUMERIC(18, 2))
{%- endmacro as_money -%}

{%- macro as_integer(value) -%}
CAST({{ value }} AS INT64)
{%- endmacro as_integer -%}

{%- macro typed_null(type) -%}
CAST(NULL AS {% if type == "text" %}STRING{% elif type == "boolean" %}BOOL{% elif type == "integer" %}INT64{% elif type == "money" %}NUMERIC(18, 2){% elif type == "amount" %}NUMERIC(18, 4){% elif type == "rate" %}FLOAT64{% elif type == "date" %}DATE{% elif type == "timestamp" %}TIMESTAMP{% else %}{{ throw(message="m::typed_null: " ~ type ~ " is not a logical type") }}{% endif %})
{%- endmacro typed_null -%}

{#- ---- Arithmetic and dates ---------------------------------------------- -#}

{%- macro to_base(amount, rate) -%}
(CASE WHEN {{ rate }} IS NULL OR {{ rate }} = 1 OR {{ rate }} <= 0 THEN CAST({{ amount }} AS NUMERIC(18, 2))
      ELSE CAST(ROUND(CAST({{ amount }} * 100 AS FLOAT64) / {{ rate }}) / 100 AS NUMERIC(18, 2)) END)
{%- endmacro to_base -%}

{%- macro make_date(year, month, day) -%}
DATE({{ year }}, {{ month }}, {{ day }})
{%- endmacro make_date -%}

{%- macro format_date(date, format) -%}
FORMAT_DATE('{{ format }}', {{ date }})
{%- endmacro format_date -%}

{#- BigQuery counts from Sunday = 1. -#}
{%- macro iso_day_of_week(date) -%}
(MOD(EXTRACT(DAYOFWEEK FROM {{ date }}) + 5, 7) + 1)
{%- endmacro iso_day_of_week -%}

{%- macro date_spine(start, end) -%}
(SELECT date_day FROM UNNEST(GENERATE_DATE_ARRAY(CAST({{ start }} AS DATE), CAST({{ end }} AS DATE))) AS date_day)
{%- endmacro date_spine -%}

{%- macro string_literal(value) -%}
'{{ value | replace(from="\", to="\\") | replace(from="'", to="\'") }}'
{%- endmacro string_literal -%}

{#- ---- The raw dataset (loading) ----------------------------------------- -#}

{%- macro raw_table(table) -%}
CREATE TABLE IF NOT EXISTS {{ table }} (
    id STRING NOT NULL,
    updated_at TIMESTAMP,
    record STRING NOT NULL,
    run_id STRING NOT NULL,
    fetched_at TIMESTAMP NOT NULL,
    xero_status STRING,
    removed_at TIMESTAMP,
    removed_run_id STRING
);
{%- endmacro raw_table -%}

{#- Adds the removal columns to a raw table made before they existed. -#}
{%- macro raw_upgrade(table) -%}
ALTER TABLE {{ table }} ADD COLUMN IF NOT EXISTS xero_status STRING;
ALTER TABLE {{ table }} ADD COLUMN IF NOT EXISTS removed_at TIMESTAMP;
ALTER TABLE {{ table }} ADD COLUMN IF NOT EXISTS removed_run_id STRING;
{%- endmacro raw_upgrade -%}

{%- macro removal_statuses() -%}
('DELETED', 'VOIDED', 'ARCHIVED', 'GDPRREQUEST')
{%- endmacro removal_statuses -%}

{%- macro raw_backfill(table, status_field) -%}
UPDATE {{ table }}
   SET xero_status = JSON_VALUE(record, '$.{{ status_field }}'),
       removed_at = IF(JSON_VALUE(record, '$.{{ status_field }}') IN {{ self::removal_statuses() }}, IFNULL(updated_at, fetched_at), NULL),
       removed_run_id = IF(JSON_VALUE(record, '$.{{ status_field }}') IN {{ self::removal_statuses() }}, run_id, NULL)
 WHERE xero_status IS NULL AND removed_at IS NULL
   AND JSON_VALUE(record, '$.{{ status_field }}') IS NOT NULL;
{%- endmacro raw_backfill -%}

{%- macro merge_lines(target, load, pages, id_field, updated_field, status_field) -%}
{{ self::raw_table(table=target) }}
{%- set streak = status_field and not updated_field %}
MERGE {{ target }} AS t
USING (
    SELECT id, updated_at, record, run_id, fetched_at, xero_status,
           IF(removed, {% if streak %}streak_at{% else %}IFNULL(updated_at, fetched_at){% endif %}, NULL) AS removed_at,
           IF(removed, {% if streak %}streak_run{% else %}run_id{% endif %}, NULL) AS removed_run_id,
           {% if streak %}removed AND last_live IS NULL{% else %}FALSE{% endif %} AS whole_streak
      FROM (
        SELECT *{% if streak %},
               MAX(IF(seq = IFNULL(last_live, 0) + 1, fetched_at, NULL)) OVER (PARTITION BY id) AS streak_at,
               MAX(IF(seq = IFNULL(last_live, 0) + 1, run_id, NULL)) OVER (PARTITION BY id) AS streak_run{% endif %}
          FROM (
            SELECT *{% if streak %},
                   MAX(IF(NOT removed, seq, NULL)) OVER (PARTITION BY id) AS last_live{% endif %}
              FROM (
                SELECT *,
                       IFNULL(xero_status IN {{ self::removal_statuses() }}, FALSE) AS removed{% if streak %},
                       ROW_NUMBER() OVER (PARTITION BY id ORDER BY updated_at ASC NULLS FIRST, fetched_at, manifest, page, line) AS seq{% endif %}
                  FROM (
                    SELECT CASE
                               WHEN STARTS_WITH(f.id_json, '"') AND JSON_VALUE(f.id_json) <> '' THEN JSON_VALUE(f.id_json)
                               WHEN REGEXP_CONTAINS(f.id_json, r'^-?[0-9]') THEN f.id_json
                               ELSE ERROR(CONCAT('bad raw record: ', f.object, ' line ', CAST(f.line AS STRING), ': the record has no {{ id_field }} (or is not a JSON object)'))
                           END AS id,
                           {% if updated_field -%}
                           CASE
                               WHEN f.stamp_json IS NULL OR f.stamp_json = 'null' THEN NULL
                               WHEN STARTS_WITH(f.stamp_json, '"') AND REGEXP_CONTAINS(JSON_VALUE(f.stamp_json), r'^\s*/Date\(-?\d+([+-]\d{4})?\)/\s*$')
                                   THEN TIMESTAMP_MILLIS(CAST(REGEXP_EXTRACT(JSON_VALUE(f.stamp_json), r'/Date\((-?\d+)') AS INT64))
                               WHEN STARTS_WITH(f.stamp_json, '"') AND SAFE_CAST(JSON_VALUE(f.stamp_json) AS TIMESTAMP) IS NOT NULL
                                   THEN CAST(JSON_VALUE(f.stamp_json) AS TIMESTAMP)
                               ELSE ERROR(CONCAT('bad raw record: ', f.object, ' line ', CAST(f.line AS STRING), ': {{ updated_field }} is not a date: ', f.stamp_json))
                           END
                           {%- else -%}
                           CAST(NULL AS TIMESTAMP)
                           {%- endif %} AS updated_at,
                           {% if status_field -%}
                           JSON_VALUE(f.record, '$.{{ status_field }}')
                           {%- else -%}
                           CAST(NULL AS STRING)
                           {%- endif %} AS xero_status,
                           f.record, p.run_id, p.fetched_at, p.manifest, p.page, f.line
                      FROM (
                          SELECT l.object, l.line, l.text AS record,
                                 JSON_QUERY(l.text, '$.{{ id_field }}') AS id_json{% if updated_field %},
                                 JSON_QUERY(l.text, '$.{{ updated_field }}') AS stamp_json{% endif %}
                            FROM {{ load }} AS l
                      ) AS f
                      JOIN UNNEST([
{% for p in pages -%}
                          STRUCT({{ self::string_literal(value=p.key) }} AS object, {{ self::string_literal(value=p.run_id) }} AS run_id, TIMESTAMP({{ self::string_literal(value=p.fetched_at) }}) AS fetched_at, {{ p.manifest }} AS manifest, {{ p.page }} AS page){% if not loop.last %},{% endif %}
{% endfor -%}
                      ]) AS p ON p.object = f.object
                  )
              )
          )
      )
    WHERE TRUE
    QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY updated_at DESC NULLS LAST, fetched_at DESC, manifest DESC, page DESC, line DESC) = 1
) AS i
ON t.id = i.id
WHEN MATCHED AND NOT (
        IFNULL(t.updated_at, TIMESTAMP '0001-01-01') > IFNULL(i.updated_at, TIMESTAMP '0001-01-01')
        OR (IFNULL(t.updated_at, TIMESTAMP '0001-01-01') = IFNULL(i.updated_at, TIMESTAMP '0001-01-01')
            AND t.fetched_at > i.fetched_at))
    THEN UPDATE SET updated_at = i.updated_at, record = i.record, run_id = i.run_id, fetched_at = i.fetched_at,
        xero_status = i.xero_status,
        -- A removal that stands (see duckdb.sql) keeps the row's time and run.
        removed_at = IF(t.removed_at IS NOT NULL
                        AND ((i.whole_streak AND IFNULL(t.xero_status IN {{ self::removal_statuses() }}, FALSE))
                             OR (i.removed_at IS NULL AND t.run_id = i.run_id AND t.fetched_at = i.fetched_at)),
                        t.removed_at, i.removed_at),
        removed_run_id = IF(t.removed_at IS NOT NULL
                        AND ((i.whole_streak AND IFNULL(t.xero_status IN {{ self::removal_statuses() }}, FALSE))
                             OR (i.removed_at IS NULL AND t.run_id = i.run_id AND t.fetched_at = i.fetched_at)),
                        t.removed_run_id, i.removed_run_id)
WHEN NOT MATCHED
    THEN INSERT (id, updated_at, record, run_id, fetched_at, xero_status, removed_at, removed_run_id)
    VALUES (i.id, i.updated_at, i.record, i.run_id, i.fetched_at, i.xero_status, i.removed_at, i.removed_run_id);
{%- endmacro merge_lines -%}

{%- macro mark_unlisted(target, listings) -%}
{% for l in listings -%}
UPDATE {{ target }}
   SET removed_at = TIMESTAMP({{ self::string_literal(value=l.fetched_at) }}),
       removed_run_id = {{ self::string_literal(value=l.run_id) }}
 WHERE removed_at IS NULL AND fetched_at < TIMESTAMP({{ self::string_literal(value=l.fetched_at) }});
{% endfor -%}
{%- endmacro mark_unlisted -%}

{#- ---- The transformed dataset (publishing) ------------------------------ -#}

{#-
  BigQuery has no transactional DDL, but DML across tables commits together
  in a multi-statement transaction: new tables are created empty first, then
  every published table's rows are swapped in one transaction. A model whose
  columns changed makes the INSERT fail inside the transaction, which leaves
  every published table as it was (such a change needs a migration).
-#}
{%- macro publish(models, prefix) -%}
{% for name in models -%}
CREATE TABLE IF NOT EXISTS {{ name }} LIKE {{ prefix }}{{ name }};
{% endfor -%}
BEGIN TRANSACTION;
{% for name in models -%}
DELETE FROM {{ name }} WHERE TRUE;
INSERT INTO {{ name }} SELECT * FROM {{ prefix }}{{ name }};
{% endfor -%}
COMMIT TRANSACTION;
{% for name in models -%}
DROP TABLE {{ prefix }}{{ name }};
{% endfor -%}
{%- endmacro publish -%}
