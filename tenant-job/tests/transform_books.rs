//! The transformation against the sandbox's books: what the transformed
//! tables say must be what the sandbox knows to be true, after a first load,
//! after running again, and after a second batch of changes.

mod transform_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::Value;
use tenant_job::transform::{self, ModelSet, TransformReport};
use transform_support::{cents, int, open_cloud, provision, text, with_field, Books, Tenant};
use xero_sandbox::ChangeRequest;

/// Invoices in the sandbox (`LEDGERLAKE_TEST_INVOICES` to try other sizes).
fn invoices() -> usize {
    std::env::var("LEDGERLAKE_TEST_INVOICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

fn report_timings(what: &str, report: &TransformReport) {
    eprintln!(
        "{what}: {} manifests, {} records loaded, {} tables; load {} ms, build {} ms, tests {} ms ({} tests), publish {} ms, total {} ms",
        report.manifests.len(),
        report.loaded.values().sum::<u64>(),
        report.models.len(),
        report.timings.load_ms,
        report.timings.build_ms,
        report.timings.test_ms,
        report.tests.len(),
        report.timings.publish_ms,
        report.timings.total_ms
    );
}

/// Everything the books say, compared with the transformed tables; returns
/// the differences.
async fn disagreements(t: &Tenant, books: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut same = |what: String, ours: i64, theirs: i64| {
        if ours != theirs {
            out.push(format!("{what}: transformed {ours}, books {theirs}"));
        }
    };
    let counts = &books["counts"];
    let n = |k: &str| {
        counts[k]
            .as_i64()
            .unwrap_or_else(|| panic!("books count {k}"))
    };
    for (sql, key) in [
        ("SELECT count(*) FROM dim_accounts", "Accounts"),
        ("SELECT count(*) FROM dim_contacts", "Contacts"),
        (
            "SELECT count(*) FROM dim_contacts WHERE status = 'ARCHIVED'",
            "ContactsArchived",
        ),
        ("SELECT count(*) FROM fct_invoices", "Invoices"),
        (
            "SELECT count(*) FROM fct_invoices WHERE status = 'VOIDED'",
            "InvoicesVoided",
        ),
        (
            "SELECT count(*) FROM fct_invoices WHERE status = 'DELETED'",
            "InvoicesDeleted",
        ),
        ("SELECT count(*) FROM fct_credit_notes", "CreditNotes"),
        ("SELECT count(*) FROM fct_payments", "Payments"),
        (
            "SELECT count(*) FROM fct_bank_transactions",
            "BankTransactions",
        ),
        (
            "SELECT count(DISTINCT journal_id) FROM fct_journal_lines",
            "Journals",
        ),
        ("SELECT count(*) FROM fct_journal_lines", "JournalLines"),
        ("SELECT count(*) FROM dim_items", "Items"),
    ] {
        same(key.to_owned(), t.count(sql).await, n(key));
    }
    for (table, key) in [
        ("manualjournals", "ManualJournals"),
        ("taxrates", "TaxRates"),
        ("trackingcategories", "TrackingCategories"),
        ("currencies", "Currencies"),
    ] {
        let rows = t
            .rows(&t.raw, &format!("SELECT count(*) FROM {table}"))
            .await;
        same(format!("raw {key}"), int(&rows[0][0]), n(key));
    }

    // Invoices per type and status, in the base currency.
    let rows = t
        .t("SELECT type || ':' || status, count(*), sum(sub_total_base), sum(total_tax_base), \
            sum(total_base), sum(amount_due_base), sum(amount_paid_base), sum(amount_credited_base) \
            FROM fct_invoices GROUP BY ALL")
        .await;
    let expected = books["invoices"]["by_type_and_status"]
        .as_object()
        .expect("by_type_and_status");
    same(
        "invoice type:status groups".into(),
        rows.len() as i64,
        expected.len() as i64,
    );
    for row in &rows {
        let key = text(&row[0]);
        let e = &expected[&key];
        same(
            format!("{key} count"),
            int(&row[1]),
            e["count"].as_i64().unwrap_or(-1),
        );
        for (i, field) in [
            "sub_total",
            "total_tax",
            "total",
            "amount_due",
            "amount_paid",
            "amount_credited",
        ]
        .iter()
        .enumerate()
        {
            same(
                format!("{key} {field}"),
                cents(&row[i + 2]),
                cents(&e[*field]),
            );
        }
    }

    // Posted invoices per currency, in the document currency.
    let rows = t
        .t(
            "SELECT currency_code, count(*), sum(total), sum(amount_due) FROM fct_invoices \
            WHERE status IN ('AUTHORISED', 'PAID') GROUP BY ALL",
        )
        .await;
    let expected = books["invoices"]["posted_by_currency"]
        .as_object()
        .expect("posted_by_currency");
    same(
        "posted currencies".into(),
        rows.len() as i64,
        expected.len() as i64,
    );
    for row in &rows {
        let key = text(&row[0]);
        let e = &expected[&key];
        same(
            format!("{key} count"),
            int(&row[1]),
            e["count"].as_i64().unwrap_or(-1),
        );
        same(format!("{key} total"), cents(&row[2]), cents(&e["total"]));
        same(
            format!("{key} amount_due"),
            cents(&row[3]),
            cents(&e["amount_due"]),
        );
    }

    // Payments.
    let rows = t
        .t("SELECT count(*) FILTER (WHERE status = 'AUTHORISED'), \
            sum(amount_base) FILTER (WHERE status = 'AUTHORISED'), \
            count(*) FILTER (WHERE status <> 'AUTHORISED') FROM fct_payments")
        .await;
    let p = &books["payments"];
    same(
        "payments authorised".into(),
        int(&rows[0][0]),
        p["authorised"].as_i64().unwrap_or(-1),
    );
    same(
        "payments authorised amount".into(),
        cents(&rows[0][1]),
        cents(&p["authorised_amount"]),
    );
    same(
        "payments deleted".into(),
        int(&rows[0][2]),
        p["deleted"].as_i64().unwrap_or(-1),
    );

    // Credit notes per type and status, in the base currency.
    let rows = t
        .t(
            "SELECT type || ':' || status, count(*), sum(total_base), sum(remaining_credit_base) \
            FROM fct_credit_notes GROUP BY ALL",
        )
        .await;
    let expected = books["credit_notes"].as_object().expect("credit_notes");
    same(
        "credit note groups".into(),
        rows.len() as i64,
        expected.len() as i64,
    );
    for row in &rows {
        let key = text(&row[0]);
        let e = &expected[&key];
        same(
            format!("{key} count"),
            int(&row[1]),
            e["count"].as_i64().unwrap_or(-1),
        );
        same(format!("{key} total"), cents(&row[2]), cents(&e["total"]));
        same(
            format!("{key} remaining_credit"),
            cents(&row[3]),
            cents(&e["remaining_credit"]),
        );
    }

    // The general ledger: every journal balances, and the trial balance.
    let j = &books["journals"];
    same(
        "unbalanced journals".into(),
        t.count(
            "SELECT count(*) FROM (SELECT journal_id FROM fct_journal_lines \
                 GROUP BY journal_id HAVING sum(net_amount) <> 0)",
        )
        .await,
        j["unbalanced"].as_i64().unwrap_or(-1),
    );
    same(
        "last journal number".into(),
        t.count("SELECT max(journal_number) FROM fct_journal_lines")
            .await,
        j["last_journal_number"].as_i64().unwrap_or(-1),
    );
    let rows = t
        .t(
            "SELECT account_code, sum(net_amount) FROM fct_journal_lines GROUP BY ALL \
            HAVING sum(net_amount) <> 0",
        )
        .await;
    let ours: BTreeMap<String, i64> = rows.iter().map(|r| (text(&r[0]), cents(&r[1]))).collect();
    let theirs: BTreeMap<String, i64> = j["trial_balance"]
        .as_array()
        .expect("trial balance")
        .iter()
        .map(|a| (text(&a["AccountCode"]), cents(&a["balance"])))
        .collect();
    if ours != theirs {
        out.push(format!(
            "trial balance: transformed {ours:?}, books {theirs:?}"
        ));
    }
    let total = t
        .t("SELECT coalesce(sum(net_amount), 0) FROM fct_journal_lines")
        .await;
    if cents(&total[0][0]) != cents(&j["trial_balance_sum"]) {
        out.push(format!(
            "trial balance sum: transformed {:?}, books {}",
            total[0][0], j["trial_balance_sum"]
        ));
    }

    // Posted invoices per contact, type and month (through dim_date), base currency.
    let rows = t
        .t("SELECT i.contact_id, c.name, i.type, d.year_month, count(*), sum(i.sub_total_base), \
            sum(i.total_tax_base), sum(i.total_base), sum(i.amount_due_base), sum(i.amount_paid_base) \
            FROM fct_invoices AS i \
            JOIN dim_contacts AS c ON c.contact_id = i.contact_id \
            JOIN dim_date AS d ON d.date_day = i.invoice_date \
            WHERE i.status IN ('AUTHORISED', 'PAID') GROUP BY ALL")
        .await;
    type Key = (String, String, String);
    let ours: BTreeMap<Key, Vec<i64>> = rows
        .iter()
        .map(|r| {
            (
                (text(&r[0]), text(&r[2]), text(&r[3])),
                vec![
                    int(&r[4]),
                    cents(&r[5]),
                    cents(&r[6]),
                    cents(&r[7]),
                    cents(&r[8]),
                    cents(&r[9]),
                ],
            )
        })
        .collect();
    let names: BTreeMap<String, String> = rows.iter().map(|r| (text(&r[0]), text(&r[1]))).collect();
    let mut theirs: BTreeMap<Key, Vec<i64>> = BTreeMap::new();
    for e in books["by_contact_month"]
        .as_array()
        .expect("by_contact_month")
    {
        let id = text(&e["contact_id"]);
        if let Some(name) = names.get(&id) {
            if *name != text(&e["contact_name"]) {
                out.push(format!(
                    "contact {id} is {name} here, {} in the books",
                    e["contact_name"]
                ));
            }
        }
        theirs.insert(
            (id, text(&e["type"]), text(&e["month"])),
            vec![
                e["count"].as_i64().unwrap_or(-1),
                cents(&e["sub_total"]),
                cents(&e["total_tax"]),
                cents(&e["total"]),
                cents(&e["amount_due"]),
                cents(&e["amount_paid"]),
            ],
        );
    }
    if ours != theirs {
        let differing: Vec<String> = ours
            .keys()
            .chain(theirs.keys())
            .filter(|k| ours.get(*k) != theirs.get(*k))
            .take(5)
            .map(|k| {
                format!(
                    "{k:?}: transformed {:?}, books {:?}",
                    ours.get(k),
                    theirs.get(k)
                )
            })
            .collect();
        out.push(format!(
            "per contact and month ({} vs {} groups): {}",
            ours.len(),
            theirs.len(),
            differing.join("; ")
        ));
    }
    out
}

async fn assert_agrees(t: &Tenant, books: &Books) {
    let problems = disagreements(t, &books.truth()).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The published tables: the models, nothing staged.
async fn assert_only_models_published(t: &Tenant) {
    let mut models: Vec<String> = ModelSet::embedded()
        .models()
        .expect("models")
        .into_iter()
        .map(|m| m.name)
        .collect();
    models.sort();
    assert_eq!(t.tables().await, models);
    t.assert_no_load_table_left("after publishing").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn transformed_tables_agree_with_the_sandbox_books() {
    let (_dir, adapters) = open_cloud();
    let tenant = provision(&adapters, "acme").await;
    let started = std::time::Instant::now();
    let mut books = Books::start(invoices(), 7).await;
    eprintln!("sandbox started in {} ms", started.elapsed().as_millis());
    let started = std::time::Instant::now();
    let written = books.ingest(&tenant, "run-1", 250).await;
    eprintln!("ingested in {} ms", started.elapsed().as_millis());

    let report = transform::run(&tenant.context("run-1"))
        .await
        .expect("transform");
    report_timings(&format!("first load of {} invoices", invoices()), &report);
    for (resource, n) in &written {
        assert_eq!(
            report.loaded[&resource.storage_name()],
            *n as u64,
            "{resource}"
        );
    }
    assert_eq!(report.manifests.len(), written.len());
    assert!(report.tests.iter().all(|t| t.passed));
    assert!(report
        .tests
        .iter()
        .any(|t| t.name == "fct_invoices.invoice_totals_match_lines"));
    assert!(report
        .tests
        .iter()
        .any(|t| t.name == "fct_journal_lines.journals_balance"));
    let invoices_rows = report
        .models
        .iter()
        .find(|m| m.name == "fct_invoices")
        .expect("fct_invoices")
        .rows;
    assert_eq!(invoices_rows as usize, invoices());
    assert_only_models_published(&tenant).await;
    let started = std::time::Instant::now();
    assert_agrees(&tenant, &books).await;
    eprintln!(
        "compared with the books in {} ms",
        started.elapsed().as_millis()
    );

    // Every kind of line amounts is present, so the totals test covered them all.
    let kinds = tenant
        .t("SELECT DISTINCT line_amount_types FROM fct_invoices ORDER BY 1")
        .await;
    assert_eq!(
        kinds,
        vec![
            vec![Value::from("Exclusive")],
            vec![Value::from("Inclusive")],
            vec![Value::from("NoTax")]
        ]
    );
    let state: job_contract::raw::Loaded =
        serde_json::from_slice(&tenant.get(job_contract::raw::LOADED_KEY).await)
            .expect("loaded.json");
    assert_eq!(
        state.manifests.iter().cloned().collect::<Vec<_>>().len(),
        written.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn running_the_transform_twice_changes_nothing() {
    let (_dir, adapters) = open_cloud();
    let tenant = provision(&adapters, "acme").await;
    let mut books = Books::start(300, 11).await;
    books.ingest(&tenant, "run-1", 100).await;
    transform::run(&tenant.context("run-1"))
        .await
        .expect("first");
    let raw = tenant.snapshot(&tenant.raw).await;
    let transformed = tenant.snapshot(&tenant.transformed).await;

    let again = transform::run(&tenant.context("run-2"))
        .await
        .expect("second");
    assert!(again.manifests.is_empty(), "{:?}", again.manifests);
    assert!(again.loaded.values().all(|n| *n == 0));
    assert_eq!(tenant.snapshot(&tenant.raw).await, raw);
    assert_eq!(tenant.snapshot(&tenant.transformed).await, transformed);

    // Forgetting what was loaded loads every manifest a second time: the
    // merge keeps one version of each record, so still nothing changes.
    tenant
        .cloud
        .objects
        .delete_object(&tenant.cred, &tenant.bucket, job_contract::raw::LOADED_KEY)
        .await
        .expect("forget");
    let reloaded = transform::run(&tenant.context("run-3"))
        .await
        .expect("third");
    assert!(!reloaded.manifests.is_empty());
    assert_eq!(tenant.snapshot(&tenant.raw).await, raw);
    assert_eq!(tenant.snapshot(&tenant.transformed).await, transformed);
    assert_agrees(&tenant, &books).await;
}

/// What a reader compares across the publication: several tables in one query.
const READER_SQL: &str = "SELECT (SELECT count(*) FROM fct_invoices), \
     (SELECT CAST(sum(total_base) AS VARCHAR) FROM fct_invoices), \
     (SELECT count(*) FROM fct_payments), (SELECT count(*) FROM dim_contacts), \
     (SELECT count(*) FROM fct_journal_lines)";

#[tokio::test(flavor = "multi_thread")]
async fn a_second_batch_after_changes_is_merged_and_agrees_with_the_books_again() {
    let (_dir, adapters) = open_cloud();
    let tenant = provision(&adapters, "acme").await;
    let mut books = Books::start(invoices(), 23).await;
    let first = books.ingest(&tenant, "run-1", 250).await;
    transform::run(&tenant.context("run-1"))
        .await
        .expect("first");
    assert_agrees(&tenant, &books).await;

    let changes = books
        .sandbox
        .apply_changes(&ChangeRequest {
            create: 20,
            edit: 10,
            void: 6,
            pay: 12,
            contacts: 8,
            new_contacts: 4,
            ..Default::default()
        })
        .await
        .expect("changes");
    assert!(changes.shortfalls.is_empty(), "{:?}", changes.shortfalls);
    let second = books.ingest(&tenant, "run-2", 250).await;
    // Incremental: the second batch holds the changes, not the books again.
    assert!(
        second[&xero::resources::Resource::Invoices]
            < first[&xero::resources::Resource::Invoices] / 2,
        "{second:?}"
    );

    // A reader querying while the transformation runs sees the old tables
    // or the new ones, never a mix or a half-built table.
    let before = tenant.t(READER_SQL).await;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (tenant, stop) = (tenant.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                seen.push(tenant.t(READER_SQL).await);
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    let report = transform::run(&tenant.context("run-2"))
        .await
        .expect("second");
    stop.store(true, Ordering::SeqCst);
    let seen = reader.await.expect("reader");
    let after = tenant.t(READER_SQL).await;
    report_timings("second batch", &report);
    assert_ne!(before, after);
    assert!(!seen.is_empty());
    for s in &seen {
        assert!(
            *s == before || *s == after,
            "a reader saw {s:?}, neither {before:?} nor {after:?}"
        );
    }

    assert_agrees(&tenant, &books).await;
    assert_only_models_published(&tenant).await;
    for change in &changes.changed {
        let quoted = format!("'{}'", change.id);
        match change.kind.as_str() {
            "void" => {
                let row = tenant
                    .t(&format!(
                        "SELECT status, amount_due FROM fct_invoices WHERE invoice_id = {quoted}"
                    ))
                    .await;
                assert_eq!(text(&row[0][0]), "VOIDED", "{}", change.id);
                assert_eq!(cents(&row[0][1]), 0);
            }
            "edit" => {
                let row = tenant
                    .t(&format!(
                        "SELECT reference FROM fct_invoices WHERE invoice_id = {quoted}"
                    ))
                    .await;
                assert!(text(&row[0][0]).starts_with("Revised"), "{row:?}");
            }
            "pay" if change.resource == "Payments" => {
                assert_eq!(
                    tenant
                        .count(&format!(
                            "SELECT count(*) FROM fct_payments WHERE payment_id = {quoted}"
                        ))
                        .await,
                    1
                );
            }
            "create" => {
                assert_eq!(
                    tenant
                        .count(&format!(
                            "SELECT count(*) FROM fct_invoices WHERE invoice_id = {quoted}"
                        ))
                        .await,
                    1
                );
            }
            _ => {}
        }
    }
    // Each record once, at its latest version.
    assert_eq!(
        tenant
            .count("SELECT count(*) - count(DISTINCT invoice_id) FROM fct_invoices")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_latest_version_of_a_record_wins_whatever_order_it_arrives_in() {
    use job_contract::raw::LOADED_KEY;
    use time::{Duration, OffsetDateTime};
    use transform_support::write_run;
    use xero::resources::Resource;

    let (_dir, adapters) = open_cloud();
    let tenant = provision(&adapters, "acme").await;
    let mut books = Books::start(40, 31).await;
    books.ingest(&tenant, "run-1", 100).await;
    transform::run(&tenant.context("run-1"))
        .await
        .expect("first");
    // The stamps are loaded, not lost on the way.
    assert_eq!(
        tenant
            .count("SELECT count(*) FROM fct_invoices WHERE updated_at IS NULL")
            .await,
        0
    );
    let rows = tenant
        .rows(
            &tenant.raw,
            "SELECT id, record, epoch_ms(updated_at) FROM invoices ORDER BY id LIMIT 2",
        )
        .await;
    let (x_id, x) = (text(&rows[0][0]), text(&rows[0][1]));
    let (y_id, y) = (text(&rows[1][0]), text(&rows[1][1]));
    let x_stamp: Value = serde_json::from_str::<Value>(&x).expect("x")["UpdatedDateUTC"].clone();
    let stamp = xero::dates::parse(x_stamp.as_str().expect("stamp")).expect("stamp");
    assert_eq!(
        i128::from(int(&rows[0][2])),
        stamp.unix_timestamp_nanos() / 1_000_000,
        "raw updated_at is the record's UpdatedDateUTC"
    );
    let ms = |t: OffsetDateTime| Value::from(xero::dates::to_ms_date(t));
    let now = OffsetDateTime::now_utc();
    // run-2: a newer version of X; two versions of Y with its own stamp in
    // one page (the later line wins); a currency renamed.
    write_run(
        &tenant,
        Resource::Invoices,
        "run-2",
        &[
            with_field(
                &with_field(&x, "Reference", Value::from("v2")),
                "UpdatedDateUTC",
                ms(stamp + Duration::days(1)),
            ),
            with_field(&y, "Reference", Value::from("first")),
            with_field(&y, "Reference", Value::from("second")),
        ],
        100,
        None,
        now,
    )
    .await;
    // run-3, fetched later: an older version of X must not replace the newer.
    write_run(
        &tenant,
        Resource::Invoices,
        "run-3",
        &[with_field(
            &with_field(&x, "Reference", Value::from("v0")),
            "UpdatedDateUTC",
            ms(stamp - Duration::days(1)),
        )],
        100,
        None,
        now + Duration::minutes(1),
    )
    .await;
    // Currencies have no stamp: the later fetch wins.
    let nzd = r#"{"Code":"NZD","Description":"New Zealand Dollar"}"#;
    for (run, description, at) in [
        ("run-3", "Later", now + Duration::minutes(1)),
        ("run-2", "Earlier", now),
    ] {
        write_run(
            &tenant,
            Resource::Currencies,
            run,
            &[with_field(nzd, "Description", Value::from(description))],
            100,
            None,
            at,
        )
        .await;
    }
    let check = |tenant: Tenant, x_id: String, y_id: String| async move {
        let rows = tenant
            .t(&format!(
                "SELECT invoice_id, reference, updated_at FROM fct_invoices \
                 WHERE invoice_id IN ('{x_id}', '{y_id}') ORDER BY invoice_id"
            ))
            .await;
        assert_eq!(text(&rows[0][1]), "v2", "{rows:?}");
        assert_eq!(text(&rows[1][1]), "second", "{rows:?}");
        let nzd = tenant
            .rows(
                &tenant.raw,
                "SELECT record, run_id FROM currencies WHERE id = 'NZD'",
            )
            .await;
        assert!(text(&nzd[0][0]).contains("Later"), "{nzd:?}");
        assert_eq!(text(&nzd[0][1]), "run-3");
    };
    let report = transform::run(&tenant.context("run-4"))
        .await
        .expect("second");
    assert_eq!(report.loaded["invoices"], 4);
    check(tenant.clone(), x_id.clone(), y_id.clone()).await;
    let y_row = tenant
        .t(&format!(
            "SELECT updated_at FROM fct_invoices WHERE invoice_id = '{y_id}'"
        ))
        .await;
    assert!(!y_row[0][0].is_null(), "{y_row:?}");

    // Loading everything again, in any state, gives the same.
    let transformed = tenant.snapshot(&tenant.transformed).await;
    tenant
        .cloud
        .objects
        .delete_object(&tenant.cred, &tenant.bucket, LOADED_KEY)
        .await
        .expect("forget");
    transform::run(&tenant.context("run-5"))
        .await
        .expect("again");
    check(tenant.clone(), x_id, y_id).await;
    assert_eq!(tenant.snapshot(&tenant.transformed).await, transformed);
}
