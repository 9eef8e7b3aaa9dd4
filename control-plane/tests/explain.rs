//! The plans of every hot query (`control_plane::store::HOT_QUERIES`: what
//! the control plane runs per scheduler tick, reconcile pass, listed page,
//! keep-alive scan and prune) on PostgreSQL at 10,000 tenants and 1,000,000
//! runs: none reads runs, resources or the audit logs by a sequential scan,
//! whether PostgreSQL plans the statement for its values or generically
//! (as it does for a prepared statement after a few runs). SQLite's plans
//! are checked the same way. Without `LEDGERLAKE_TEST_DATABASE_URL` the
//! PostgreSQL test says so loudly and passes.

mod support;

use control_plane::store::{HotQuery, Sample, Store, HOT_QUERIES};
use serde_json::Value;
use sqlx::{Connection, Row};

/// Tables no hot query may read from end to end.
const GUARDED: [&str; 4] = ["runs", "resources", "audit_log", "query_audit"];

const TENANTS: i64 = 10_000;
const RUNS: i64 = 1_000_000;

/// A literal for a sample of the seeded data.
fn literal(sample: Sample) -> String {
    let now = 1_800_000_000_000_i64;
    match sample {
        Sample::Tenant => "'t01234'".to_owned(),
        Sample::LaterTenant => "'t01333'".to_owned(),
        Sample::FirstCursor => "''".to_owned(),
        Sample::Run => "'run-0000500000'".to_owned(),
        Sample::ResourceKind => "'bucket'".to_owned(),
        Sample::ResourceName => "'r-t01234-5'".to_owned(),
        Sample::Now => now.to_string(),
        Sample::Cutoff => (now - 90 * 86_400_000).to_string(),
        Sample::Limit => "100".to_owned(),
        Sample::Text(t) => format!("'{}'", t.replace('\'', "''")),
    }
}

/// Seeds the database in a few statements: 10,000 tenants (ten marked by a
/// webhook, each with a Xero connection), 13 resources each, 1,000,000 runs
/// over the last 200 days (100 still running), 1,000,000 audit lines and
/// 1,000,000 questions; then ANALYZE.
const SEED: &str = r#"
INSERT INTO tenants (id, desired, generation, phase, keep_data, message, created_at, updated_at,
                     next_run_at, sync_requested_at)
SELECT 't' || lpad(i::text, 5, '0'), 'present', 1, 'Ready', FALSE, NULL, 0, 0,
       1800000000000 + (i % 60) * 60000,
       CASE WHEN i % 1000 = 0 THEN 1800000000000 ELSE NULL END
FROM generate_series(0, 9999) AS i;

INSERT INTO xero_connections (tenant_id, xero_tenant_id, connected_at)
SELECT 't' || lpad(i::text, 5, '0'), 'org-' || i, 0 FROM generate_series(0, 9999) AS i;

INSERT INTO resources (tenant_id, kind, name, status, observed_generation, attempts,
                       attempt_generation, last_transition, created_at)
SELECT 't' || lpad(t::text, 5, '0'),
       (ARRAY['service_account','bucket','dataset','dataset','secret','binding','binding',
              'binding','binding','binding','binding','job','job'])[r + 1],
       'r-t' || lpad(t::text, 5, '0') || '-' || r, 'Ready', 1, 1, 1, 0, r
FROM generate_series(0, 9999) AS t, generate_series(0, 12) AS r;

INSERT INTO runs (id, tenant_id, command, trigger, status, job, execution_id, created_at,
                  started_at, finished_at)
SELECT 'run-' || lpad(i::text, 10, '0'), 't' || lpad((i % 10000)::text, 5, '0'), 'sync',
       'schedule', CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'succeeded' END, 'job', 'exec',
       1800000000000 - (1000000 - i) * 17280, 1800000000000 - (1000000 - i) * 17280,
       1800000000000 - (1000000 - i) * 17280 + 60000
FROM generate_series(0::bigint, 999999) AS i;

UPDATE runs SET status = 'running', finished_at = NULL
WHERE id IN (SELECT 'run-' || lpad(i::text, 10, '0') FROM generate_series(999900, 999999) AS i);

INSERT INTO audit_log (at, actor, action, tenant_id, detail)
SELECT 1800000000000 - (1000000 - i) * 17280, 'reconciler', 'tenant.provision',
       't' || lpad((i % 10000)::text, 5, '0'), '{}'
FROM generate_series(0::bigint, 999999) AS i;

INSERT INTO query_audit (id, tenant_id, actor, conversation_id, question, generator, outcome,
                         created_at)
SELECT 'q-' || i, 't' || lpad((i % 10000)::text, 5, '0'), 'operator', 'c-' || (i / 3),
       'how much?', 'rules', 'answered', 1800000000000 - (1000000 - i) * 17280
FROM generate_series(0::bigint, 999999) AS i;

ANALYZE;
"#;

/// Every (table, node type) of a plan whose node reads a guarded table by a
/// sequential scan.
fn seq_scans(node: &Value, found: &mut Vec<String>) {
    if let Some(obj) = node.as_object() {
        let kind = obj.get("Node Type").and_then(Value::as_str);
        let table = obj.get("Relation Name").and_then(Value::as_str);
        if let (Some("Seq Scan"), Some(table)) = (kind, table) {
            if GUARDED.contains(&table) {
                found.push(table.to_owned());
            }
        }
        for child in obj.values() {
            seq_scans(child, found);
        }
    } else if let Some(items) = node.as_array() {
        for item in items {
            seq_scans(item, found);
        }
    }
}

async fn plan_on_postgres(conn: &mut sqlx::PgConnection, q: &HotQuery, mode: &str) -> Value {
    let types: Vec<&str> = q.params.iter().map(|p| p.sql_type()).collect();
    let prepare = if types.is_empty() {
        format!("PREPARE hot AS {}", q.sql)
    } else {
        format!("PREPARE hot ({}) AS {}", types.join(", "), q.sql)
    };
    sqlx::raw_sql(&format!("SET plan_cache_mode = {mode}"))
        .execute(&mut *conn)
        .await
        .expect("plan cache mode");
    sqlx::raw_sql(&prepare)
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{}: PREPARE failed: {e}\n{}", q.name, q.sql));
    let args: Vec<String> = q.params.iter().map(|p| literal(*p)).collect();
    let execute = if args.is_empty() {
        "EXPLAIN (FORMAT JSON) EXECUTE hot".to_owned()
    } else {
        format!("EXPLAIN (FORMAT JSON) EXECUTE hot ({})", args.join(", "))
    };
    let row = sqlx::query(&execute)
        .fetch_one(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{}: EXPLAIN failed: {e}", q.name));
    // A json column: its text is the plan.
    let text: String = row.try_get_unchecked(0).expect("plan text");
    sqlx::raw_sql("DEALLOCATE hot")
        .execute(&mut *conn)
        .await
        .expect("deallocate");
    serde_json::from_str(&text).expect("plan json")
}

#[test]
fn no_hot_query_scans_runs_or_resources_on_postgres() {
    let Some(url) = support::postgres_database().expect("postgres") else {
        eprintln!(
            "\n!!! SKIPPED no_hot_query_scans_runs_or_resources_on_postgres: \
             LEDGERLAKE_TEST_DATABASE_URL is not set !!!"
        );
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // The store's migrations make the schema.
        let store = Store::open(&url).await.expect("open store");
        store.close().await;
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::raw_sql(SEED).execute(&mut conn).await.expect("seed");
        let counted: i64 =
            sqlx::query("SELECT (SELECT COUNT(*) FROM runs) + (SELECT COUNT(*) FROM tenants)")
                .fetch_one(&mut conn)
                .await
                .expect("count")
                .get(0);
        assert_eq!(counted, RUNS + TENANTS);

        let mut failures = Vec::new();
        for q in HOT_QUERIES {
            for mode in ["force_custom_plan", "force_generic_plan"] {
                let plan = plan_on_postgres(&mut conn, q, mode).await;
                let mut found = Vec::new();
                seq_scans(&plan, &mut found);
                if !found.is_empty() {
                    failures.push(format!(
                        "{} ({}, {mode}): sequential scan of {}\n{}\n{}",
                        q.name,
                        q.path,
                        found.join(", "),
                        q.sql,
                        serde_json::to_string_pretty(&plan).unwrap_or_default()
                    ));
                }
            }
        }
        conn.close().await.expect("close");
        support::backends::drop_database(&url).await;
        assert!(
            failures.is_empty(),
            "{} hot plan(s) scan a guarded table:\n\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    });
}

/// SQLite has no statistics to go by until ANALYZE, so this checks that an
/// index exists for every hot query: no plan reads a guarded table by a bare
/// `SCAN <table>` (a full-table scan).
#[test]
fn no_hot_query_scans_runs_or_resources_on_sqlite() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tmp");
        let url = control_plane::store::sqlite_url(&dir.path().join("state.db"));
        let store = Store::open(&url).await.expect("open store");
        store.close().await;
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("connect");
        let mut failures = Vec::new();
        for q in HOT_QUERIES {
            let sql = format!("EXPLAIN QUERY PLAN {}", q.sql);
            let mut query = sqlx::query(&sql);
            for p in q.params {
                query = match p.sql_type() {
                    "bigint" => query.bind(0_i64),
                    _ => query.bind("t01234"),
                };
            }
            let rows = query
                .fetch_all(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", q.name));
            for row in rows {
                let detail: String = row.get("detail");
                for table in GUARDED {
                    if detail == format!("SCAN {table}") {
                        failures.push(format!("{}: {detail}\n{}", q.name, q.sql));
                    }
                }
            }
        }
        conn.close().await.expect("close");
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    });
}
