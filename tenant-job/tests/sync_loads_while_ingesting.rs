//! `tenant-job sync` loads each resource's manifest into the raw dataset as
//! soon as ingest writes it, while ingest goes on fetching the next
//! resources. Shown here by an ingest that fails part-way (one Xero
//! endpoint down): what it fetched before is already loaded, the next sync
//! loads only what is new, and the tables are those a rebuild from the
//! bucket gives.

mod support;

use std::collections::BTreeSet;

use cloud::naming::{self, TenantId};
use cloud::ports::ObjectStore;
use job_contract::raw::{self, Loaded};
use job_contract::summary::RunOutcome;
use job_contract::RunCommand;
use tenant_job::job::{Job, JobConfig};
use xero_sandbox::FaultSettings;

async fn loaded(
    cloud: &cloud_local::LocalAdapters,
    cred: &cloud::ports::Credential,
    bucket: &str,
) -> BTreeSet<String> {
    let bytes = cloud
        .objects
        .get_object(cred, bucket, raw::LOADED_KEY)
        .await
        .expect("loaded.json");
    serde_json::from_slice::<Loaded>(&bytes)
        .expect("loaded.json parses")
        .manifests
}

async fn count(
    cloud: &cloud_local::LocalAdapters,
    cred: &cloud::ports::Credential,
    dataset: &str,
    table: &str,
) -> i64 {
    let sql = format!("SELECT count(*) AS n FROM {table}");
    support::rows(cloud, cred, dataset, sql).await[0][0]
        .as_i64()
        .expect("a number")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_loads_what_ingest_fetched_before_an_endpoint_failed_and_the_next_sync_finishes() {
    let dir = tempfile::tempdir().expect("tmp");
    let sandbox = support::sandbox(150).await;
    let cloud = support::open(dir.path());
    let id = TenantId::parse("acme").expect("id");
    let cred = support::connected(&cloud, &sandbox, &id).await;
    let bucket = naming::bucket_name(None, &id);
    let (raw_dataset, transformed) = (naming::raw_dataset(&id), naming::transformed_dataset(&id));
    let config = |run: &str| support::job_config(dir.path(), &sandbox, &id, run);

    // Payments come after contacts, invoices and credit notes; every call
    // listing them fails with a 500 until the faults are cleared.
    sandbox.set_faults(FaultSettings {
        fail_resource: Some(xero_sandbox::wire::Resource::Payments),
        fail_status: Some(500),
        ..FaultSettings::default()
    });
    let failed = Job::open(config("r1"))
        .await
        .expect("open")
        .execute(RunCommand::Sync)
        .await;
    assert_eq!(failed.outcome, RunOutcome::Failed);
    let message = failed.message.as_deref().unwrap_or_default();
    assert!(message.contains("Payments"), "{message}");
    assert!(failed.transform.is_none());

    // Every manifest the ingest wrote before it failed is loaded, though
    // no transform ran: the loading went on beside the ingest.
    let written = support::manifests(&*cloud.objects, &cred, &bucket).await;
    assert!(
        written.iter().any(|k| k.starts_with("raw/invoices/"))
            && written.iter().any(|k| k.starts_with("raw/contacts/")),
        "{written:?}"
    );
    assert!(!written.iter().any(|k| k.starts_with("raw/payments/")));
    assert_eq!(loaded(&cloud, &cred, &bucket).await, written);
    let invoices = count(&cloud, &cred, &raw_dataset, "invoices").await;
    assert!(invoices >= 150, "{invoices} raw invoices");
    assert_eq!(count(&cloud, &cred, &raw_dataset, "payments").await, 0);
    // Nothing was built or published.
    let published = support::snapshot(&cloud, &cred, &transformed).await;
    assert!(!published.contains_key("fct_invoices"), "{published:?}");

    sandbox.set_faults(FaultSettings::default());
    let job = Job::open(config("r2")).await.expect("open");
    let summary = job.execute(RunCommand::Sync).await;
    assert_eq!(
        summary.outcome,
        RunOutcome::Succeeded,
        "{:?}",
        summary.message
    );
    let report = summary.transform.expect("a transform report");
    // The second run loads only its own manifests (the first run's stay
    // loaded), and says how long it spent loading beside the ingest.
    let manifests: Vec<&str> = report["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    assert!(
        manifests.iter().all(|m| m.contains("/r2/")),
        "{manifests:?}"
    );
    assert!(
        manifests.iter().any(|m| m.starts_with("raw/payments/")),
        "{manifests:?}"
    );
    assert!(report["timings"]["preload_ms"].is_u64(), "{report}");
    assert!(
        report["loaded"]["payments"].as_u64() > Some(0),
        "{}",
        report["loaded"]
    );
    assert_eq!(
        count(&cloud, &cred, &raw_dataset, "invoices").await,
        invoices
    );

    // The same tables as loading the whole bucket again from scratch.
    let before = (
        support::snapshot(&cloud, &cred, &raw_dataset).await,
        support::snapshot(&cloud, &cred, &transformed).await,
    );
    assert!(before.1.contains_key("fct_invoices"));
    let rebuilt = Job::open(JobConfig {
        rebuild: true,
        ..config("r3")
    })
    .await
    .expect("open")
    .execute(RunCommand::Transform)
    .await;
    assert_eq!(rebuilt.outcome, RunOutcome::Succeeded);
    let after = (
        support::snapshot(&cloud, &cred, &raw_dataset).await,
        support::snapshot(&cloud, &cred, &transformed).await,
    );
    assert_eq!(after, before);
}
