//! `tenant-job sync|transform --rebuild` as the job runs it: syncs against
//! the sandbox (each compacting what it superseded), then a rebuild from the
//! bucket that the run's summary records, giving the same raw and
//! transformed tables.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use cloud::naming::{self, TenantId};
use cloud::ports::{Credential, QueryRequest, Warehouse};
use job_contract::summary::RunOutcome;
use job_contract::RunCommand;
use serde_json::Value;
use tenant_job::job::{Job, JobConfig};
use xero_sandbox::ChangeRequest;

/// Every table of `dataset` with every row, sorted.
async fn snapshot(
    cloud: &cloud_local::LocalAdapters,
    cred: &Credential,
    dataset: &str,
) -> BTreeMap<String, Vec<Vec<Value>>> {
    let mut out = BTreeMap::new();
    for table in cloud
        .warehouse
        .list_tables(cred, dataset)
        .await
        .expect("tables")
    {
        let rows = cloud
            .warehouse
            .query(
                cred,
                &QueryRequest {
                    dataset: dataset.to_owned(),
                    sql: format!("SELECT * FROM {} ORDER BY ALL", table.name),
                    max_rows: 10_000_000,
                    timeout: Duration::from_secs(120),
                    max_bytes: None,
                },
            )
            .await
            .expect("rows");
        out.insert(table.name, rows.rows);
    }
    out
}

async fn run(config: JobConfig, command: RunCommand) -> Value {
    let job = Job::open(config).await.expect("open");
    let summary = job.execute(command).await;
    assert_eq!(
        summary.outcome,
        RunOutcome::Succeeded,
        "{:?}",
        summary.message
    );
    summary.transform.expect("a transform report")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_run_reloads_the_bucket_to_the_same_tables() {
    let dir = tempfile::tempdir().expect("tmp");
    let sandbox = support::sandbox(200).await;
    let cloud = support::open(dir.path());
    let id = TenantId::parse("acme").expect("id");
    let cred = support::connected(&cloud, &sandbox, &id).await;
    let config = |run: &str| support::job_config(dir.path(), &sandbox, &id, run);

    let first = run(config("r1"), RunCommand::Sync).await;
    assert_eq!(first["rebuilt"], false);
    sandbox
        .apply_changes(&ChangeRequest {
            edit: 5,
            void: 3,
            pay: 4,
            contacts: 5,
            ..Default::default()
        })
        .await
        .expect("changes");
    let second = run(config("r2"), RunCommand::Sync).await;
    // The organisation and currencies are listed again in full: the first
    // run's copies are superseded.
    assert!(
        second["compaction"]["manifests"].as_u64() > Some(0),
        "{}",
        second["compaction"]
    );

    let (raw, transformed) = (naming::raw_dataset(&id), naming::transformed_dataset(&id));
    let before = (
        snapshot(&cloud, &cred, &raw).await,
        snapshot(&cloud, &cred, &transformed).await,
    );
    let rebuilt = run(
        JobConfig {
            rebuild: true,
            ..config("r3")
        },
        RunCommand::Transform,
    )
    .await;
    assert_eq!(rebuilt["rebuilt"], true);
    assert!(!rebuilt["manifests"]
        .as_array()
        .expect("manifests")
        .is_empty());
    let after = (
        snapshot(&cloud, &cred, &raw).await,
        snapshot(&cloud, &cred, &transformed).await,
    );
    assert_eq!(after, before);
}
