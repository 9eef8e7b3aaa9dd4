//! The guard against hostile inputs (each refused with its code) and against
//! realistic analytics queries of both dialects (each admitted with its LIMIT).

use query::guard::{admit, Dialect, GuardPolicy, Refusal};

const DATASET: &str = "transformed_acme";
const PROJECT: &str = "ll-cell-eu1";
const MAX_ROWS: u64 = 1000;

fn policy() -> GuardPolicy {
    GuardPolicy::new(DATASET, Some(PROJECT.to_owned()), MAX_ROWS)
}

#[path = "corpus/legitimate.rs"]
mod legitimate;

use legitimate::On::{self, Both, Bq, Duck};
use legitimate::LEGITIMATE;

/// (dialects, SQL, the refusal code expected)
const HOSTILE: &[(On, &str, &str)] = &[
    // Other tenants' datasets, by every spelling.
    (Both, "SELECT * FROM transformed_globex.fct_invoices", "foreign_dataset"),
    (Duck, r#"SELECT * FROM "transformed_globex".fct_invoices"#, "foreign_dataset"),
    (Duck, r#"SELECT * FROM "transformed_globex"."fct_invoices""#, "foreign_dataset"),
    (Duck, "SELECT * FROM TRANSFORMED_GLOBEX.main.fct_invoices", "foreign_dataset"),
    (Duck, "SELECT * FROM transformed_globex.main.fct_invoices", "foreign_dataset"),
    (Bq, "SELECT * FROM `transformed_globex.fct_invoices`", "foreign_dataset"),
    (Bq, "SELECT * FROM `transformed_globex`.fct_invoices", "foreign_dataset"),
    (Bq, "SELECT * FROM `ll-cell-eu1.transformed_globex.fct_invoices`", "foreign_dataset"),
    (Bq, "SELECT * FROM `ll-cell-eu1`.transformed_globex.fct_invoices", "foreign_dataset"),
    (Bq, "SELECT * FROM Transformed_Acme.fct_invoices", "foreign_dataset"),
    (Bq, "SELECT * FROM `other-project.transformed_acme.fct_invoices`", "foreign_project"),
    (Bq, "SELECT * FROM `other-project`.transformed_acme.fct_invoices", "foreign_project"),
    (Bq, "SELECT * FROM `LL-CELL-EU1.transformed_acme.fct_invoices`", "foreign_project"),
    (Both, "SELECT * FROM raw_acme.invoices", "foreign_dataset"),
    (Both, "SELECT * FROM a.b.c.d", "foreign_dataset"),
    (Duck, "SELECT * FROM pg_catalog.pg_tables", "foreign_dataset"),
    (Duck, "SELECT * FROM system.main.duckdb_tables", "foreign_dataset"),
    (Duck, "SELECT * FROM temp.main.scratch", "foreign_dataset"),
    // Unicode look-alikes and invisible characters.
    (Duck, "SELECT * FROM \"tr\u{430}nsformed_acme\".fct_invoices", "invalid_identifier"),
    (Bq, "SELECT * FROM `tr\u{430}nsformed_acme.fct_invoices`", "invalid_identifier"),
    (Duck, "SELECT * FROM \"fct_invoices\u{200b}\"", "invalid_identifier"),
    (Duck, "SELECT * FROM \"\u{ff46}ct_invoices\"", "invalid_identifier"),
    (Duck, "SELECT total AS \"t\u{0}x\" FROM fct_invoices", "invalid_identifier"),
    (Bq, "SELECT * FROM `transformed_acme.fct_invoices$20240101`", "invalid_identifier"),
    // Unknown tables (unqualified names resolve only to the dataset's tables).
    (Both, "SELECT * FROM secrets", "unknown_table"),
    (Both, "SELECT * FROM invoices", "unknown_table"),
    (Duck, "SELECT * FROM duckdb_settings", "unknown_table"),
    (Duck, "SELECT * FROM main.duckdb_secrets", "unknown_table"),
    // Relations anywhere in the tree.
    (Both, "SELECT * FROM fct_invoices WHERE contact_id IN (SELECT contact_id FROM transformed_globex.dim_contacts)", "foreign_dataset"),
    (Both, "SELECT * FROM fct_invoices i WHERE EXISTS (SELECT 1 FROM transformed_globex.fct_payments p WHERE p.invoice_id = i.invoice_id)", "foreign_dataset"),
    (Both, "SELECT (SELECT MAX(total) FROM transformed_globex.fct_invoices) AS m", "foreign_dataset"),
    (Both, "SELECT * FROM (SELECT * FROM transformed_globex.fct_payments) p", "foreign_dataset"),
    (Duck, "SELECT * FROM fct_invoices i, LATERAL (SELECT * FROM transformed_globex.fct_payments p WHERE p.invoice_id = i.invoice_id) x", "foreign_dataset"),
    (Both, "SELECT * FROM (fct_invoices JOIN transformed_globex.dim_contacts USING (contact_id))", "foreign_dataset"),
    (Both, "SELECT i.* FROM fct_invoices i LEFT JOIN transformed_globex.fct_payments p ON p.invoice_id = i.invoice_id", "foreign_dataset"),
    (Both, "SELECT invoice_id FROM fct_invoices UNION ALL SELECT invoice_id FROM transformed_globex.fct_invoices", "foreign_dataset"),
    (Bq, "SELECT contact_id FROM fct_invoices INTERSECT DISTINCT SELECT contact_id FROM `transformed_globex.dim_contacts`", "foreign_dataset"),
    (Duck, "SELECT contact_id FROM fct_invoices EXCEPT SELECT contact_id FROM transformed_globex.dim_contacts", "foreign_dataset"),
    (Both, "SELECT * FROM fct_invoices WHERE total > ALL (SELECT total FROM transformed_globex.fct_invoices)", "foreign_dataset"),
    (Duck, "SELECT SUM(total) FILTER (WHERE contact_id IN (SELECT contact_id FROM transformed_globex.dim_contacts)) FROM fct_invoices", "foreign_dataset"),
    // CTEs: shadowing, scope, recursion.
    (Both, "WITH transformed_globex AS (SELECT 1 AS x) SELECT * FROM transformed_globex.fct_invoices", "foreign_dataset"),
    (Both, "WITH fct_invoices AS (SELECT 1 AS x) SELECT * FROM transformed_globex.fct_invoices", "foreign_dataset"),
    (Both, "WITH fct_invoices AS (SELECT * FROM transformed_globex.fct_invoices) SELECT * FROM fct_invoices", "foreign_dataset"),
    (Both, "SELECT * FROM (WITH secret AS (SELECT 1 AS x) SELECT * FROM secret) s, secret", "unknown_table"),
    (Both, "WITH a AS (SELECT * FROM b), b AS (SELECT 1 AS x) SELECT * FROM a", "unknown_table"),
    (Both, "WITH a AS (SELECT * FROM a) SELECT * FROM a", "unknown_table"),
    (Both, "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT * FROM r", "recursive_cte"),
    (Both, "WITH x AS (SELECT 1 AS n) SELECT * FROM x, (WITH y AS (SELECT * FROM transformed_globex.fct_invoices) SELECT * FROM y) z", "foreign_dataset"),
    // More than one statement, comments hiding statements, nothing at all.
    (Both, "SELECT 1; SELECT 2", "multiple_statements"),
    (Both, "SELECT * FROM fct_invoices; DROP TABLE fct_invoices", "multiple_statements"),
    (Both, "SELECT 1 -- harmless\n; DELETE FROM fct_invoices", "multiple_statements"),
    (Duck, "SELECT 1 /* ; */ ; ATTACH 'x.db' AS x", "multiple_statements"),
    (Both, "", "empty"),
    (Both, "-- only a comment", "empty"),
    // DDL, DML and everything else that is not a query.
    (Both, "CREATE TABLE x AS SELECT * FROM fct_invoices", "not_a_query"),
    (Both, "DROP TABLE fct_invoices", "not_a_query"),
    (Both, "ALTER TABLE fct_invoices ADD COLUMN x INT", "not_a_query"),
    (Both, "CREATE VIEW v AS SELECT 1", "not_a_query"),
    (Both, "INSERT INTO fct_invoices SELECT * FROM fct_invoices", "not_a_query"),
    (Both, "UPDATE fct_invoices SET total = 0 WHERE TRUE", "not_a_query"),
    (Both, "DELETE FROM fct_invoices WHERE TRUE", "not_a_query"),
    (Bq, "MERGE INTO fct_invoices t USING fct_payments p ON t.invoice_id = p.invoice_id WHEN MATCHED THEN DELETE", "not_a_query"),
    (Both, "TRUNCATE TABLE fct_invoices", "not_a_query"),
    (Duck, "PRAGMA database_list", "not_a_query"),
    (Duck, "SET enable_external_access = true", "not_a_query"),
    (Duck, "SET search_path = 'transformed_globex'", "not_a_query"),
    (Duck, "ATTACH '/data/transformed_globex.duckdb' AS g", "not_a_query"),
    (Duck, "DETACH g", "not_a_query"),
    (Duck, "COPY fct_invoices TO '/tmp/x.csv'", "not_a_query"),
    (Duck, "COPY (SELECT * FROM fct_invoices) TO 'x.parquet' (FORMAT PARQUET)", "not_a_query"),
    (Duck, "EXPORT DATABASE '/tmp/dump'", "parse_error"),
    (Bq, "EXPORT DATA OPTIONS (uri = 'gs://b/*.csv', format = 'CSV') AS SELECT * FROM fct_invoices", "not_a_query"),
    (Duck, "CALL pragma_version()", "not_a_query"),
    (Duck, "INSTALL httpfs", "not_a_query"),
    (Duck, "LOAD httpfs", "not_a_query"),
    (Bq, "DECLARE x INT64 DEFAULT 1", "not_a_query"),
    (Bq, "BEGIN SELECT 1; END", "not_a_query"),
    (Bq, "EXECUTE IMMEDIATE 'SELECT 1'", "not_a_query"),
    (Bq, "IF TRUE THEN SELECT 1; END IF", "not_a_query"),
    (Bq, "CREATE TEMP FUNCTION f() AS (1)", "not_a_query"),
    (Both, "EXPLAIN SELECT * FROM fct_invoices", "not_a_query"),
    (Duck, "DESCRIBE fct_invoices", "not_a_query"),
    (Duck, "SHOW TABLES", "not_a_query"),
    (Duck, "USE transformed_globex", "not_a_query"),
    (Duck, "BEGIN TRANSACTION", "not_a_query"),
    (Both, "SELECT * INTO stolen FROM fct_invoices", "select_into"),
    (Duck, "WITH d AS (DELETE FROM fct_invoices RETURNING *) SELECT * FROM d", "not_a_query"),
    (Both, "SELECT * FROM fct_invoices FOR UPDATE", "unsupported_construct"),
    // Files, URLs and external readers.
    (Duck, "SELECT * FROM read_csv('/etc/passwd')", "external_read"),
    (Duck, "SELECT * FROM read_csv_auto('s3://bucket/x.csv')", "external_read"),
    (Duck, "SELECT * FROM read_parquet('https://evil.example/x.parquet')", "external_read"),
    (Duck, "SELECT * FROM read_json('x.json')", "external_read"),
    (Duck, "SELECT * FROM READ_TEXT('/etc/passwd')", "external_read"),
    (Duck, "SELECT * FROM glob('/data/*')", "external_read"),
    (Duck, "SELECT * FROM sqlite_scan('x.db', 't')", "external_read"),
    (Duck, "SELECT * FROM fct_invoices, read_csv('x.csv') AS r", "external_read"),
    (Duck, "SELECT * FROM 'x.csv'", "external_read"),
    (Duck, "SELECT * FROM 'https://example.com/x.parquet'", "external_read"),
    (Duck, "SELECT * FROM \"x.csv\"", "external_read"),
    (Duck, "SELECT * FROM \"/data/transformed_globex.duckdb\"", "external_read"),
    (Duck, "SELECT content FROM read_blob('/etc/passwd')", "external_read"),
    (Duck, "SELECT pg_read_file('/etc/passwd')", "external_read"),
    (Both, "SELECT SUM(length(read_text('/etc/passwd'))) FROM fct_invoices", "external_read"),
    (Bq, "SELECT * FROM EXTERNAL_QUERY('conn', 'SELECT 1')", "external_read"),
    (Bq, "SELECT ML.GENERATE_EMBEDDING(description) FROM fct_invoice_lines", "external_read"),
    (Bq, "SELECT SAFE.EXTERNAL_QUERY('c', 'SELECT 1')", "external_read"),
    // Table functions.
    (Duck, "SELECT * FROM duckdb_settings()", "table_function"),
    (Duck, "SELECT * FROM query_table('transformed_globex.fct_invoices')", "table_function"),
    (Duck, "SELECT * FROM query('SELECT 1')", "table_function"),
    (Duck, "SELECT * FROM generate_series(1, 1000000000)", "table_function"),
    (Bq, "SELECT * FROM UNNEST(GENERATE_ARRAY(1, 1000000000))", "table_function"),
    (Bq, "SELECT * FROM fct_invoices WHERE 1 IN UNNEST([1, 2])", "table_function"),
    // Functions off the allow-list, wherever they are.
    (Duck, "SELECT getenv('HOME')", "function_not_allowed"),
    (Duck, "SELECT current_setting('enable_external_access')", "function_not_allowed"),
    (Both, "SELECT * FROM fct_invoices WHERE getenv('X') = 'y'", "function_not_allowed"),
    (Both, "SELECT SUM(total) OVER (PARTITION BY current_setting('x')) FROM fct_invoices", "function_not_allowed"),
    (Both, "SELECT contact_id FROM fct_invoices GROUP BY contact_id HAVING MAX(version()) > ''", "function_not_allowed"),
    (Both, "SELECT * FROM fct_invoices i JOIN fct_payments p ON p.invoice_id = hash(i.invoice_id)", "function_not_allowed"),
    (Both, "SELECT * FROM fct_invoices ORDER BY random()", "function_not_allowed"),
    (Duck, "SELECT COLUMNS(*) FROM fct_invoices", "function_not_allowed"),
    (Duck, "SELECT list_transform([1, 2], x -> x + 1)", "function_not_allowed"),
    (Duck, "SELECT nextval('seq')", "function_not_allowed"),
    (Duck, "SELECT main.sum(total) FROM fct_invoices", "function_not_allowed"),
    (Duck, "SELECT \"\u{455}um\"(total) FROM fct_invoices", "function_not_allowed"),
    (Both, "SELECT CASE WHEN TRUE THEN load_extension('x') END", "function_not_allowed"),
    // Wildcard tables.
    (Bq, "SELECT * FROM `transformed_*.fct_invoices`", "wildcard_table"),
    (Bq, "SELECT * FROM `ll-cell-eu1.transformed_acme.fct_*`", "wildcard_table"),
    (Bq, "SELECT * FROM transformed_acme.`fct_*` WHERE _TABLE_SUFFIX = 'invoices'", "wildcard_table"),
    (Duck, "SELECT * FROM \"transformed_*\".fct_invoices", "wildcard_table"),
    // Information schemas other than the tenant dataset's tables and columns.
    (Bq, "SELECT * FROM `region-us`.INFORMATION_SCHEMA.JOBS", "information_schema"),
    (Bq, "SELECT * FROM `region-us.INFORMATION_SCHEMA.SCHEMATA`", "information_schema"),
    (Bq, "SELECT * FROM transformed_globex.INFORMATION_SCHEMA.TABLES", "information_schema"),
    (Bq, "SELECT * FROM `other-project`.transformed_acme.INFORMATION_SCHEMA.TABLES", "information_schema"),
    (Bq, "SELECT * FROM INFORMATION_SCHEMA.SCHEMATA", "information_schema"),
    (Bq, "SELECT * FROM transformed_acme.INFORMATION_SCHEMA.JOBS_BY_PROJECT", "information_schema"),
    (Duck, "SELECT * FROM information_schema.schemata", "information_schema"),
    (Duck, "SELECT * FROM transformed_globex.information_schema.tables", "information_schema"),
    // LIMIT and OFFSET must be plain numbers; other clauses we do not need.
    (Both, "SELECT * FROM fct_invoices LIMIT -1", "invalid_limit"),
    (Both, "SELECT * FROM fct_invoices LIMIT 1e9", "invalid_limit"),
    (Both, "SELECT * FROM fct_invoices LIMIT (SELECT 5)", "invalid_limit"),
    (Both, "SELECT * FROM fct_invoices LIMIT 10 OFFSET (SELECT COUNT(*) FROM transformed_globex.fct_invoices)", "invalid_limit"),
    (Duck, "SELECT * FROM fct_invoices FETCH FIRST 10 ROWS ONLY", "unsupported_construct"),
    (Duck, "SELECT * FROM fct_invoices USING SAMPLE 10%", "parse_error"),
    (Bq, "SELECT * FROM fct_invoices TABLESAMPLE SYSTEM (10 PERCENT)", "unsupported_construct"),
    (Bq, "SELECT * FROM fct_invoices FOR SYSTEM_TIME AS OF TIMESTAMP '2024-01-01'", "unsupported_construct"),
    (Duck, "PIVOT fct_invoices ON status USING SUM(total)", "parse_error"),
    (Both, "SELECT * FROM fct_invoices WHERE total > $1", "unsupported_construct"),
];

fn refusal(dialect: Dialect, sql: &str) -> Result<Refusal, String> {
    match admit(sql, dialect, &policy()) {
        Ok(admitted) => Err(format!("admitted as {}", admitted.sql)),
        Err(r) => Ok(r),
    }
}

#[test]
fn hostile_inputs_are_refused_with_their_codes() {
    let mut failures = Vec::new();
    let mut tried = 0;
    for (on, sql, code) in HOSTILE {
        for dialect in on.dialects() {
            tried += 1;
            match refusal(*dialect, sql) {
                Ok(r) if r.code() == *code => {
                    let message = r.to_string();
                    assert!(message.len() < 400, "unbounded message: {message}");
                }
                Ok(r) => failures.push(format!(
                    "{dialect:?} {sql:?}: {} ({r}), expected {code}",
                    r.code()
                )),
                Err(e) => failures.push(format!("{dialect:?} {sql:?}: {e}, expected {code}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {tried}:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(HOSTILE.len() >= 60);
}

#[test]
fn refusals_quote_a_bounded_piece_of_huge_input() {
    let huge_name = "x".repeat(50_000);
    let sql = format!("SELECT * FROM transformed_globex.{huge_name}");
    let r = refusal(Dialect::DuckDb, &sql).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.code(), "foreign_dataset");
    assert!(r.to_string().len() < 300, "{}", r.to_string().len());

    let too_long = format!("SELECT 1 AS {}", "y".repeat(70_000));
    let r = refusal(Dialect::BigQuery, &too_long).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.code(), "too_long");

    let deep = format!("SELECT {}1{}", "(".repeat(500), ")".repeat(500));
    let r = refusal(Dialect::DuckDb, &deep).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.code(), "parse_error");
    assert!(r.to_string().len() < 300);
}

#[test]
fn legitimate_queries_are_admitted_with_a_limit() {
    let policy = policy();
    let mut failures = Vec::new();
    let mut tried = 0;
    for (on, sql) in LEGITIMATE {
        for dialect in on.dialects() {
            tried += 1;
            match admit(sql, *dialect, &policy) {
                Ok(admitted) => {
                    assert!(admitted.limit <= MAX_ROWS, "{sql}");
                    assert!(
                        admitted.sql.ends_with(&format!("LIMIT {}", admitted.limit)),
                        "{}",
                        admitted.sql
                    );
                    assert!(!admitted.tables.is_empty(), "{sql}");
                    for table in &admitted.tables {
                        assert!(table.starts_with("transformed_acme."), "{table}");
                    }
                    // The admitted text is admitted again, unchanged.
                    let again = admit(&admitted.sql, *dialect, &policy).map(|a| a.sql);
                    assert_eq!(again.as_deref(), Ok(admitted.sql.as_str()));
                }
                Err(r) => failures.push(format!("{dialect:?} {sql}\n  -> {} ({r})", r.code())),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {tried}:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(tried >= 30 * 2 - 10);
}

#[test]
fn the_limit_is_added_kept_or_lowered() {
    let policy = policy();
    for dialect in [Dialect::DuckDb, Dialect::BigQuery] {
        let added = admit("SELECT total FROM fct_invoices", dialect, &policy)
            .unwrap_or_else(|r| panic!("{r}"));
        assert_eq!(added.sql, "SELECT total FROM fct_invoices LIMIT 1000");
        assert_eq!(added.limit, 1000);

        let kept = admit(
            "SELECT total FROM fct_invoices LIMIT 10 OFFSET 20",
            dialect,
            &policy,
        )
        .unwrap_or_else(|r| panic!("{r}"));
        assert_eq!(
            kept.sql,
            "SELECT total FROM fct_invoices LIMIT 10 OFFSET 20"
        );
        assert_eq!(kept.limit, 10);

        for huge in [
            "5000",
            "18446744073709551615",
            "999999999999999999999999999999999999999999",
        ] {
            let lowered = admit(
                &format!("SELECT total FROM fct_invoices LIMIT {huge}"),
                dialect,
                &policy,
            )
            .unwrap_or_else(|r| panic!("{r}"));
            assert_eq!(lowered.sql, "SELECT total FROM fct_invoices LIMIT 1000");
            assert_eq!(lowered.limit, 1000);
        }

        // A set operation's LIMIT applies to the whole of it, not its last arm.
        let union = admit(
            "SELECT invoice_id FROM fct_invoices UNION ALL SELECT invoice_id FROM fct_payments",
            dialect,
            &policy,
        )
        .unwrap_or_else(|r| panic!("{r}"));
        assert_eq!(
            union.sql,
            "SELECT invoice_id FROM fct_invoices UNION ALL SELECT invoice_id FROM fct_payments LIMIT 1000"
        );
        assert_eq!(
            union.tables,
            [
                "transformed_acme.fct_invoices",
                "transformed_acme.fct_payments"
            ]
        );

        // An inner LIMIT does not count: the outer query gets one.
        let inner = admit(
            "(SELECT total FROM fct_invoices LIMIT 5000)",
            dialect,
            &policy,
        )
        .unwrap_or_else(|r| panic!("{r}"));
        assert_eq!(
            inner.sql,
            "(SELECT total FROM fct_invoices LIMIT 5000) LIMIT 1000"
        );

        let union_lowered = admit(
            "SELECT invoice_id FROM fct_invoices UNION ALL (SELECT invoice_id FROM fct_payments LIMIT 3) LIMIT 99999",
            dialect,
            &policy,
        )
        .unwrap_or_else(|r| panic!("{r}"));
        assert!(
            union_lowered.sql.ends_with("LIMIT 3) LIMIT 1000"),
            "{}",
            union_lowered.sql
        );
    }
}

#[test]
fn comments_are_dropped_from_the_admitted_text() {
    let admitted = admit(
        "SELECT total /* ; DROP TABLE x */ FROM fct_invoices -- ; DELETE\n",
        Dialect::DuckDb,
        &policy(),
    )
    .unwrap_or_else(|r| panic!("{r}"));
    assert_eq!(admitted.sql, "SELECT total FROM fct_invoices LIMIT 1000");
}

#[test]
fn bigquery_without_a_project_refuses_every_project() {
    let policy = GuardPolicy::new(DATASET, None, MAX_ROWS);
    let r = admit(
        "SELECT * FROM `ll-cell-eu1.transformed_acme.fct_invoices`",
        Dialect::BigQuery,
        &policy,
    );
    assert_eq!(r.map_err(|r| r.code()), Err("foreign_project"));
}

#[test]
fn a_tenant_policy_names_its_dataset() {
    let tenant = cloud::naming::TenantId::parse("acme-co").unwrap_or_else(|e| panic!("{e}"));
    let policy = GuardPolicy::for_tenant(&tenant, None, 10);
    assert_eq!(policy.dataset(), "transformed_acme_co");
    let ok = admit(
        "SELECT * FROM transformed_acme_co.dim_date",
        Dialect::DuckDb,
        &policy,
    );
    assert_eq!(
        ok.map(|a| a.tables),
        Ok(vec!["transformed_acme_co.dim_date".to_owned()])
    );
    let theirs = admit(
        "SELECT * FROM transformed_acme.dim_date",
        Dialect::DuckDb,
        &policy,
    );
    assert_eq!(theirs.map_err(|r| r.code()), Err("foreign_dataset"));
}
