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

#[path = "corpus/hostile.rs"]
mod hostile;

use hostile::HOSTILE;
use legitimate::LEGITIMATE;

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
