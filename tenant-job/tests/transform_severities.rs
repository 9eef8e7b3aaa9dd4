//! Data tests have severities: a relationship to reference data that the
//! other endpoints did not return warns (the tables are published, orphan
//! facts join to an "unknown" member), while a broken invariant (a key, a
//! journal that does not balance) still withholds every table.

mod transform_support;

use serde_json::Value;
use tenant_job::transform::{self, ModelSet, Severity, TransformError};
use transform_support::{cents, open_cloud, provision, write_run, Books, Tenant};
use xero::resources::Resource;

use job_contract::raw::{self, Manifest};

fn model_names() -> Vec<String> {
    let mut names: Vec<String> = ModelSet::embedded()
        .models()
        .expect("models")
        .into_iter()
        .map(|m| m.name)
        .collect();
    names.sort();
    names
}

/// The records of `resource` that `run_id` wrote, in page order.
async fn raw_records(tenant: &Tenant, resource: Resource, run_id: &str) -> Vec<Value> {
    let manifest: Manifest =
        serde_json::from_slice(&tenant.get(&raw::manifest_key(resource, run_id)).await)
            .expect("manifest");
    let mut out = Vec::new();
    for page in &manifest.pages {
        let body = tenant.get(&page.key).await;
        for line in String::from_utf8(body).expect("utf-8").lines() {
            out.push(serde_json::from_str(line).expect("record"));
        }
    }
    out
}

/// Rewrites `resource`'s pages of `run_id` through `edit` (which may drop
/// or change records), with a manifest that matches, as ingestion would have
/// written them had Xero answered so.
async fn rewrite_raw(
    tenant: &Tenant,
    resource: Resource,
    run_id: &str,
    edit: impl FnMut(Value) -> Option<Value>,
) -> usize {
    let manifest: Manifest =
        serde_json::from_slice(&tenant.get(&raw::manifest_key(resource, run_id)).await)
            .expect("manifest");
    let before = raw_records(tenant, resource, run_id).await;
    let count = before.len();
    let lines: Vec<String> = before
        .into_iter()
        .filter_map(edit)
        .map(|r| serde_json::to_string(&r).expect("encode"))
        .collect();
    let removed = count - lines.len();
    write_run(
        tenant,
        resource,
        run_id,
        &lines,
        100,
        manifest.modified_since,
        manifest.completed_at,
    )
    .await;
    removed
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// What the orphaned company lacks, and how many facts point at it.
struct Orphans {
    contact_id: String,
    item_code: String,
    account_code: String,
    invoices: usize,
    item_lines: usize,
    account_lines: usize,
    all_invoices: usize,
}

/// A company whose raw contacts, items and accounts lack one contact, one
/// item and one account that its invoices use: what a sync sees when the
/// other endpoints did not return them.
async fn orphaned_company(tenant: &Tenant, invoices: usize, seed: u64) -> (Books, Orphans) {
    let mut books = Books::start(invoices, seed).await;
    books.ingest(tenant, "run-1", 100).await;
    let raw_invoices = raw_records(tenant, Resource::Invoices, "run-1").await;
    let (contact_id, item_code, account_code) = raw_invoices
        .iter()
        .filter(|i| s(i, "/Type") == "ACCREC" && matches!(s(i, "/Status"), "AUTHORISED" | "PAID"))
        .find_map(|i| {
            let line = i["LineItems"]
                .as_array()?
                .iter()
                .find(|l| !s(l, "/ItemCode").is_empty() && !s(l, "/AccountCode").is_empty())?;
            Some((
                s(i, "/Contact/ContactID").to_owned(),
                s(line, "/ItemCode").to_owned(),
                s(line, "/AccountCode").to_owned(),
            ))
        })
        .expect("a posted sales invoice with an item line");
    let lines = || {
        raw_invoices
            .iter()
            .flat_map(|i| i["LineItems"].as_array().cloned().unwrap_or_default())
    };
    let orphans = Orphans {
        invoices: raw_invoices
            .iter()
            .filter(|i| s(i, "/Contact/ContactID") == contact_id)
            .count(),
        item_lines: lines().filter(|l| s(l, "/ItemCode") == item_code).count(),
        account_lines: lines()
            .filter(|l| s(l, "/AccountCode") == account_code)
            .count(),
        all_invoices: raw_invoices.len(),
        contact_id,
        item_code,
        account_code,
    };
    for (resource, pointer, value) in [
        (Resource::Contacts, "/ContactID", &orphans.contact_id),
        (Resource::Items, "/Code", &orphans.item_code),
        (Resource::Accounts, "/Code", &orphans.account_code),
    ] {
        let removed = rewrite_raw(tenant, resource, "run-1", |r| {
            (s(&r, pointer) != value.as_str()).then_some(r)
        })
        .await;
        assert_eq!(removed, 1, "{resource} {value}");
    }
    (books, orphans)
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_reference_data_warns_and_publishes_every_fact_under_unknown_members() {
    let (_dir, adapters) = open_cloud();
    let tenant = provision(&adapters, "acme").await;
    let (mut books, orphans) = orphaned_company(&tenant, 120, 31).await;

    let report = transform::run(&tenant.context("run-1"))
        .await
        .expect("missing reference data must not withhold the tables");
    assert_eq!(tenant.tables().await, model_names());

    // Every invoice is there, and its revenue is counted under the unknown contact.
    assert_eq!(
        tenant.count("SELECT count(*) FROM fct_invoices").await,
        orphans.all_invoices as i64
    );
    let posted_sales = "i.type = 'ACCREC' AND i.status IN ('AUTHORISED', 'PAID')";
    let revenue = |join: &str| {
        format!("SELECT CAST(sum(i.total_base) AS VARCHAR) FROM fct_invoices AS i {join} WHERE {posted_sales}")
    };
    let all = tenant.t(&revenue("")).await;
    let joined = tenant
        .t(&revenue(
            "JOIN dim_contacts AS c ON c.contact_id = i.contact_id",
        ))
        .await;
    assert_eq!(
        cents(&joined[0][0]),
        cents(&all[0][0]),
        "a join dropped revenue"
    );
    let unknown = tenant
        .t(&format!(
            "SELECT c.name, count(*), CAST(sum(i.total_base) AS VARCHAR) FROM fct_invoices AS i \
             JOIN dim_contacts AS c ON c.contact_id = i.contact_id \
             WHERE {posted_sales} AND i.contact_id = '{}' GROUP BY c.name",
            orphans.contact_id
        ))
        .await;
    let theirs = tenant
        .t(&format!(
            "SELECT CAST(sum(i.total_base) AS VARCHAR) FROM fct_invoices AS i \
             WHERE {posted_sales} AND i.contact_id = '{}'",
            orphans.contact_id
        ))
        .await;
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert_eq!(unknown[0][0], Value::from("Unknown contact"));
    assert_eq!(cents(&unknown[0][2]), cents(&theirs[0][0]));
    assert!(cents(&theirs[0][0]) != 0);

    // Lines of the missing item and account join to their unknown members.
    for (dim, key, code, expected) in [
        (
            "dim_items",
            "item_code",
            &orphans.item_code,
            orphans.item_lines,
        ),
        (
            "dim_accounts",
            "account_code",
            &orphans.account_code,
            orphans.account_lines,
        ),
    ] {
        let rows = tenant
            .t(&format!(
                "SELECT d.name, count(*) FROM fct_invoice_lines AS l \
                 JOIN {dim} AS d ON d.code = l.{key} WHERE l.{key} = '{code}' GROUP BY d.name"
            ))
            .await;
        assert_eq!(rows.len(), 1, "{dim}: {rows:?}");
        assert!(
            rows[0][0]
                .as_str()
                .is_some_and(|n| n.starts_with("Unknown ")),
            "{rows:?}"
        );
        assert_eq!(rows[0][1], Value::from(expected as i64), "{dim}");
    }
    assert_eq!(
        tenant
            .count("SELECT count(*) FROM fct_invoice_lines AS l JOIN fct_invoices AS i USING (invoice_id)")
            .await,
        tenant.count("SELECT count(*) FROM fct_invoice_lines").await
    );
    // One unknown member per missing record: the account, referred to by id
    // from its journal lines and by code from the invoice lines, is one row.
    for (dim, extra) in [
        (
            "dim_contacts",
            format!("contact_id = '{}'", orphans.contact_id),
        ),
        (
            "dim_items",
            format!(
                "code = '{}' AND item_id = 'unknown:{}'",
                orphans.item_code, orphans.item_code
            ),
        ),
        (
            "dim_accounts",
            format!("code = '{}' AND class = 'UNKNOWN'", orphans.account_code),
        ),
    ] {
        assert_eq!(
            tenant
                .count(&format!("SELECT count(*) FROM {dim} WHERE is_unknown"))
                .await,
            1,
            "{dim}"
        );
        assert_eq!(
            tenant
                .count(&format!(
                    "SELECT count(*) FROM {dim} WHERE is_unknown AND {extra}"
                ))
                .await,
            1,
            "{dim}: {extra}"
        );
    }
    assert_eq!(
        tenant
            .count(&format!(
                "SELECT count(*) FROM fct_journal_lines AS j JOIN dim_accounts AS a USING (account_id) \
                 WHERE a.code = '{}' AND j.account_class = 'UNKNOWN'",
                orphans.account_code
            ))
            .await,
        tenant
            .count(&format!(
                "SELECT count(*) FROM fct_journal_lines WHERE account_code = '{}'",
                orphans.account_code
            ))
            .await
    );

    // The report, and so the run's summary, lists the warnings; every test
    // that failed is a relationship that warns.
    assert!(report
        .tests
        .iter()
        .all(|t| t.passed || (t.severity == Severity::Warn && t.name.contains(".relationship("))));
    let warned = |test: &str| {
        report
            .warnings
            .iter()
            .find(|w| w.test == test)
            .unwrap_or_else(|| panic!("no warning {test} in {:#?}", report.warnings))
    };
    let contact = warned("fct_invoices.relationship(contact_id -> dim_contacts.contact_id)");
    assert_eq!(contact.model, "fct_invoices");
    assert_eq!(contact.failing_rows, orphans.invoices as u64);
    assert!(!contact.sample.is_empty() && contact.sample.len() <= 3);
    for row in &contact.sample {
        assert_eq!(row["contact_id"], Value::from(orphans.contact_id.as_str()));
        assert!(row["invoice_id"].is_string(), "{row}");
    }
    let item = warned("fct_invoice_lines.relationship(item_code -> dim_items.code)");
    assert_eq!(item.failing_rows, orphans.item_lines as u64);
    assert_eq!(
        item.sample[0]["item_code"],
        Value::from(orphans.item_code.as_str())
    );
    let account = warned("fct_invoice_lines.relationship(account_code -> dim_accounts.code)");
    assert_eq!(account.failing_rows, orphans.account_lines as u64);
    assert_eq!(
        account.sample[0]["account_code"],
        Value::from(orphans.account_code.as_str())
    );
    // As the job writes it into the run's summary, and the control plane reads it.
    let summary_transform = serde_json::to_value(&report).expect("report as JSON");
    let read_back = job_contract::summary::transform_warnings(&summary_transform);
    assert_eq!(read_back, report.warnings);

    // A later sync that gets every record fills the gaps: the same facts
    // join to the real records, and nothing warns.
    books.cursors.clear();
    books.ingest(&tenant, "run-2", 100).await;
    let healed = transform::run(&tenant.context("run-2"))
        .await
        .expect("complete books");
    assert!(healed.warnings.is_empty(), "{:#?}", healed.warnings);
    assert!(healed.tests.iter().all(|t| t.passed));
    for dim in ["dim_contacts", "dim_items", "dim_accounts"] {
        assert_eq!(
            tenant
                .count(&format!("SELECT count(*) FROM {dim} WHERE is_unknown"))
                .await,
            0,
            "{dim}"
        );
    }
    let named = tenant
        .t(&format!(
            "SELECT c.name FROM dim_contacts AS c WHERE c.contact_id = '{}'",
            orphans.contact_id
        ))
        .await;
    assert_ne!(named[0][0], Value::from("Unknown contact"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_journal_that_does_not_balance_still_withholds_every_table() {
    let (_dir, adapters) = open_cloud();
    let tenant = provision(&adapters, "acme").await;
    // Missing reference data as well: its warnings do not hide the error.
    let (_books, _orphans) = orphaned_company(&tenant, 80, 37).await;
    let mut changed = None;
    rewrite_raw(&tenant, Resource::Journals, "run-1", |mut journal| {
        if changed.is_none() {
            if let Some(line) = journal
                .pointer_mut("/JournalLines/0/NetAmount")
                .filter(|v| v.is_number())
            {
                let amount = line.as_f64().unwrap_or(0.0);
                *line = Value::from(amount + 1.0);
                changed = Some(s(&journal, "/JournalID").to_owned());
            }
        }
        Some(journal)
    })
    .await;
    let journal_id = changed.expect("a journal with lines");

    let err = transform::run(&tenant.context("run-1"))
        .await
        .expect_err("an unbalanced journal must withhold the tables");
    let failed = match &err {
        TransformError::DataTests { failed } => failed.clone(),
        other => panic!("{other:?}"),
    };
    let names: Vec<&str> = failed.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["fct_journal_lines.journals_balance"]);
    assert_eq!(failed[0].failing_rows, 1);
    assert_eq!(failed[0].severity, Severity::Error);
    assert!(err.to_string().contains(&journal_id), "{err}");
    assert!(tenant.tables().await.is_empty(), "nothing was published");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_may_make_a_relationship_an_error() {
    let (_dir, adapters) = open_cloud();
    let tenant = provision(&adapters, "acme").await;
    let (_books, orphans) = orphaned_company(&tenant, 60, 41).await;
    let set = ModelSet::embedded();
    let strict = set.clone().with_file(
        "fct_invoices.sql",
        &set.file("fct_invoices.sql").expect("model").replace(
            "--   relationship: contact_id -> dim_contacts.contact_id",
            "--   relationship(severity=error): contact_id -> dim_contacts.contact_id",
        ),
    );
    assert_ne!(strict, set, "the header line was found");
    let err = transform::run_with_models(&tenant.context("run-1"), &strict)
        .await
        .expect_err("an error-severity relationship blocks");
    match &err {
        TransformError::DataTests { failed } => {
            let names: Vec<&str> = failed.iter().map(|f| f.name.as_str()).collect();
            assert_eq!(
                names,
                ["fct_invoices.relationship(contact_id -> dim_contacts.contact_id)"]
            );
            assert_eq!(failed[0].failing_rows, orphans.invoices as u64);
        }
        other => panic!("{other:?}"),
    }
    assert!(tenant.tables().await.is_empty(), "nothing was published");
}
