//! The transformation when something is wrong: a model that does not build,
//! a data test that fails, a damaged page, a broken template, another
//! tenant's data. Whatever fails, the published tables stay as they were and
//! the error names what failed.

mod transform_support;

use cloud::ports::QueryRequest;
use cloud::CloudError;
use job_contract::raw;
use tenant_job::transform::{self, ColumnType, Dialect, ModelSet, TransformError};
use transform_support::{open_cloud, provision, Books, Tenant};
use xero::resources::Resource;
use xero_sandbox::ChangeRequest;

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

/// The embedded models with `path`'s text edited by `edit`, which must change it.
fn edited(path: &str, from: &str, to: &str) -> ModelSet {
    let set = ModelSet::embedded();
    let text = set.file(path).expect("template");
    assert!(text.contains(from), "{path} has no {from:?}");
    let changed = text.replace(from, to);
    set.with_file(path, &changed)
}

/// A tenant whose first batch is transformed and published.
async fn published(invoices: usize, seed: u64) -> (tempfile::TempDir, Tenant, Books) {
    let (dir, adapters) = open_cloud();
    let tenant = provision(&adapters, "acme").await;
    let mut books = Books::start(invoices, seed).await;
    books.ingest(&tenant, "run-1", 100).await;
    transform::run(&tenant.context("run-1"))
        .await
        .expect("first transform");
    (dir, tenant, books)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_that_fails_to_build_leaves_the_published_tables_as_they_were() {
    let (_dir, tenant, mut books) = published(200, 3).await;
    let before = tenant.snapshot(&tenant.transformed).await;
    books
        .sandbox
        .apply_changes(&ChangeRequest {
            create: 5,
            pay: 3,
            ..Default::default()
        })
        .await
        .expect("changes");
    books.ingest(&tenant, "run-2", 100).await;

    // fct_payments builds after several other models have been staged.
    let broken = edited(
        "fct_payments.sql",
        "{{ m::text(row=\"r\", path=\"Invoice.InvoiceID\") }} AS invoice_id",
        "r.no_such_column AS invoice_id",
    );
    let err = transform::run_with_models(&tenant.context("run-2"), &broken)
        .await
        .expect_err("a broken model must fail the run");
    match &err {
        TransformError::Model { model, .. } => assert_eq!(model, "fct_payments"),
        other => panic!("{other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.starts_with("model fct_payments failed to build, nothing was published")
            && message.contains("no_such_column"),
        "{message}"
    );
    assert_eq!(tenant.snapshot(&tenant.transformed).await, before);
    assert_eq!(tenant.tables().await, model_names(), "staging tables left");

    // The raw dataset took the second batch; the next good run publishes it.
    let report = transform::run(&tenant.context("run-3"))
        .await
        .expect("fixed");
    assert!(
        report.manifests.is_empty(),
        "already loaded by the failed run"
    );
    assert_ne!(tenant.snapshot(&tenant.transformed).await, before);
    assert_eq!(tenant.count("SELECT count(*) FROM fct_invoices").await, 205);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_data_test_leaves_the_published_tables_as_they_were_and_names_it() {
    let (_dir, tenant, _books) = published(200, 5).await;
    let before = tenant.snapshot(&tenant.transformed).await;

    // One contact twice, and a custom test that always finds rows.
    let broken = edited(
        "dim_contacts.sql",
        "m::parsed(relation=source(name=\"contacts\"),",
        "m::parsed(relation=\"(SELECT * FROM \" ~ source(name=\"contacts\") ~ \
         \" UNION ALL (SELECT * FROM \" ~ source(name=\"contacts\") ~ \" ORDER BY id LIMIT 1))\",",
    )
    .with_file(
        "tests/journals_balance.sql",
        "SELECT journal_id FROM {{ ref(name=\"fct_journal_lines\") }} ORDER BY journal_id LIMIT 2",
    );
    let err = transform::run_with_models(&tenant.context("run-2"), &broken)
        .await
        .expect_err("failing tests must fail the run");
    let failed = match &err {
        TransformError::DataTests { failed } => failed.clone(),
        other => panic!("{other:?}"),
    };
    // In build order: the facts, then the dimensions that read them.
    let names: Vec<&str> = failed.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "fct_journal_lines.journals_balance",
            "dim_contacts.unique(contact_id)"
        ]
    );
    assert_eq!(failed[0].failing_rows, 2);
    assert_eq!(failed[1].failing_rows, 1);
    let first_contact = tenant.t("SELECT min(contact_id) FROM dim_contacts").await;
    let message = err.to_string();
    assert!(
        message.starts_with("data tests failed, nothing was published: fct_journal_lines.journals_balance (2 failing rows, e.g. ")
            && message.contains("; dim_contacts.unique(contact_id) (1 failing row, e.g. ")
            && message.contains(first_contact[0][0].as_str().expect("id")),
        "{message}"
    );
    assert_eq!(tenant.snapshot(&tenant.transformed).await, before);
    assert_eq!(tenant.tables().await, model_names(), "staging tables left");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_page_is_refused_and_its_manifest_stays_unloaded() {
    let (_dir, adapters) = open_cloud();
    let tenant = provision(&adapters, "acme").await;
    let mut books = Books::start(150, 9).await;
    books.ingest(&tenant, "run-1", 50).await;
    let page = raw::page_key(Resource::Invoices, "run-1", 2);
    let original = tenant.get(&page).await;
    let damaged = String::from_utf8(original.clone())
        .expect("utf-8")
        .replacen("\"Total\":", "\"Total\":1", 1);
    tenant.put(&page, damaged.into_bytes()).await;

    let err = transform::run(&tenant.context("run-1"))
        .await
        .expect_err("a damaged page must be refused");
    match &err {
        TransformError::BadRaw { key, reason } => {
            assert_eq!(key, &page);
            assert!(reason.contains("SHA-256"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Nothing of the run was merged or marked loaded, and nothing published.
    assert!(matches!(
        tenant
            .cloud
            .objects
            .get_object(&tenant.cred, &tenant.bucket, raw::LOADED_KEY)
            .await,
        Err(CloudError::NotFound { .. })
    ));
    assert_eq!(
        tenant
            .rows(&tenant.raw, "SELECT count(*) FROM invoices")
            .await[0][0],
        0
    );
    assert!(tenant.tables().await.is_empty(), "nothing was published");

    tenant.put(&page, original).await;
    let report = transform::run(&tenant.context("run-2"))
        .await
        .expect("repaired");
    assert!(report
        .manifests
        .contains(&raw::manifest_key(Resource::Invoices, "run-1")));
    assert_eq!(report.loaded["invoices"], 150);
    assert_eq!(tenant.count("SELECT count(*) FROM fct_invoices").await, 150);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_template_mistake_fails_before_anything_is_written() {
    let (_dir, adapters) = open_cloud();
    let tenant = provision(&adapters, "acme").await;
    let mut books = Books::start(20, 1).await;
    books.ingest(&tenant, "run-1", 50).await;
    let broken = edited(
        "dim_items.sql",
        "{{ m::text(row=\"r\", path=\"Name\") }}",
        "{{ m::no_such_macro(doc=\"r.record\") }}",
    );
    let err = transform::run_with_models(&tenant.context("run-1"), &broken)
        .await
        .expect_err("must fail");
    let message = err.to_string();
    assert!(
        matches!(err, TransformError::Templates(_))
            && message.contains("model dim_items")
            && message.contains("no_such_macro"),
        "{message}"
    );
    for dataset in [&tenant.raw, &tenant.transformed] {
        let tables = tenant
            .cloud
            .warehouse
            .list_tables(&tenant.cred, dataset)
            .await
            .expect("tables");
        assert!(tables.is_empty(), "{dataset}: {tables:?}");
    }
    assert!(matches!(
        tenant
            .cloud
            .objects
            .get_object(&tenant.cred, &tenant.bucket, raw::LOADED_KEY)
            .await,
        Err(CloudError::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_column_is_a_column_of_its_table_and_back() {
    let (_dir, tenant, _books) = published(100, 13).await;
    for model in ModelSet::embedded().models().expect("models") {
        let result = tenant
            .cloud
            .warehouse
            .query(
                &tenant.cred,
                &QueryRequest {
                    dataset: tenant.transformed.clone(),
                    sql: format!("SELECT * FROM {} LIMIT 0", model.name),
                    max_rows: 1,
                    timeout: std::time::Duration::from_secs(60),
                    max_bytes: None,
                },
            )
            .await
            .expect("columns");
        let actual: Vec<(String, String)> = result
            .columns
            .into_iter()
            .map(|c| (c.name, c.data_type))
            .collect();
        let documented: Vec<(String, String)> = model
            .columns
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    c.column_type.warehouse_type(Dialect::DuckDb).to_owned(),
                )
            })
            .collect();
        assert_eq!(actual, documented, "{}", model.name);
        for c in &model.columns {
            assert!(
                c.description.len() > 5,
                "{}.{} is barely documented",
                model.name,
                c.name
            );
        }
        // Money is exact with two decimals, dates are dates.
        for (name, ty) in &actual {
            if name.ends_with("_date") || name == "date_day" {
                assert_eq!(ty, "DATE", "{}.{name}", model.name);
            }
        }
        let money: Vec<&str> = model
            .columns
            .iter()
            .filter(|c| c.column_type == ColumnType::Money)
            .map(|c| c.name.as_str())
            .collect();
        for name in money {
            let ty = &actual.iter().find(|(n, _)| n == name).expect("column").1;
            assert_eq!(ty, "DECIMAL(18,2)", "{}.{name}", model.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_cannot_read_another_tenants_raw_dataset() {
    let (_dir, adapters) = open_cloud();
    let a = provision(&adapters, "aaa").await;
    let b = provision(&adapters, "bbb").await;
    let mut books = Books::start(50, 2).await;
    books.ingest(&b, "run-1", 50).await;
    transform::run(&b.context("run-1"))
        .await
        .expect("b's own transform");
    let b_raw = b.snapshot(&b.raw).await;

    // Directly: A may write its transformed dataset but not name B's raw one.
    let r = a
        .cloud
        .warehouse
        .execute_reading(
            &a.cred,
            &a.transformed,
            &format!("CREATE TABLE stolen AS SELECT * FROM {}.invoices", b.raw),
            std::slice::from_ref(&b.raw),
        )
        .await;
    assert!(
        matches!(r, Err(CloudError::PermissionDenied { ref resource, .. }) if resource.contains(&b.raw)),
        "{r:?}"
    );
    // Nor without declaring it: it is simply not there.
    let r = a
        .cloud
        .warehouse
        .execute_reading(
            &a.cred,
            &a.transformed,
            &format!("CREATE TABLE stolen AS SELECT * FROM {}.invoices", b.raw),
            std::slice::from_ref(&a.raw),
        )
        .await;
    assert!(r.is_err(), "{r:?}");

    // Through the transformation: A's credential pointed at B's raw dataset
    // or bucket is refused.
    let mut ctx = a.context("run-1");
    ctx.raw_dataset = b.raw.clone();
    let err = transform::run(&ctx).await.expect_err("B's raw dataset");
    assert!(
        matches!(
            &err,
            TransformError::Storage {
                source: CloudError::PermissionDenied { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let mut ctx = a.context("run-1");
    ctx.bucket = b.bucket.clone();
    let err = transform::run(&ctx).await.expect_err("B's bucket");
    assert!(
        matches!(
            &err,
            TransformError::Storage {
                source: CloudError::PermissionDenied { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(b.snapshot(&b.raw).await, b_raw);
    assert!(a.tables().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_without_data_yet_gets_empty_tables() {
    let (_dir, adapters) = open_cloud();
    let tenant = provision(&adapters, "acme").await;
    let report = transform::run(&tenant.context("run-1"))
        .await
        .expect("empty transform");
    assert!(report.manifests.is_empty());
    assert!(report.loaded.values().all(|n| *n == 0));
    assert_eq!(report.loaded.len(), Resource::ALL.len());
    assert!(
        report.models.iter().all(|m| m.rows == 0),
        "{:?}",
        report.models
    );
    assert!(report.tests.iter().all(|t| t.passed));
    assert_eq!(tenant.tables().await, model_names());
}
