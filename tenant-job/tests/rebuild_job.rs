//! `tenant-job sync|transform --rebuild` as the job runs it: syncs against
//! the sandbox (each compacting what it superseded), then a rebuild from the
//! bucket that the run's summary records, giving the same raw and
//! transformed tables.

mod support;

use cloud::naming::{self, TenantId};
use job_contract::summary::RunOutcome;
use job_contract::RunCommand;
use serde_json::Value;
use tenant_job::job::{Job, JobConfig};
use xero_sandbox::ChangeRequest;

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
        support::snapshot(&cloud, &cred, &raw).await,
        support::snapshot(&cloud, &cred, &transformed).await,
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
        support::snapshot(&cloud, &cred, &raw).await,
        support::snapshot(&cloud, &cred, &transformed).await,
    );
    assert_eq!(after, before);
}
