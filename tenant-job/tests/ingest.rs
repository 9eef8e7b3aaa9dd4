//! Ingestion against the in-process Xero sandbox and the local cloud: every
//! resource lands as pages with a manifest, incremental runs make only the
//! calls they must, faults and interruptions lose nothing, a day limit ends a
//! run cleanly and the next resumes.

mod support;

use std::time::Duration;

use cloud::naming::{self, TenantId};
use cloud::ports::{Credential, Identity, ObjectStore, SecretStore};
use job_contract::raw::{self, Cursors, Manifest};
use tenant_job::job::Job;
use xero::resources::Resource;
use xero_sandbox::{ChangeRequest, FaultSettings, SandboxLimits};

fn tid(s: &str) -> TenantId {
    TenantId::parse(s).expect("tenant id")
}

async fn manifest(
    cloud: &cloud_local::LocalAdapters,
    id: &TenantId,
    r: Resource,
    run: &str,
) -> Option<Manifest> {
    let bytes = cloud
        .objects
        .get_object(
            &Credential::Platform,
            &naming::bucket_name(None, id),
            &raw::manifest_key(r, run),
        )
        .await
        .ok()?;
    Some(serde_json::from_slice(&bytes).expect("manifest"))
}

async fn cursors(cloud: &cloud_local::LocalAdapters, id: &TenantId) -> Cursors {
    let bytes = cloud
        .objects
        .get_object(
            &Credential::Platform,
            &naming::bucket_name(None, id),
            raw::CURSORS_KEY,
        )
        .await
        .expect("cursors");
    serde_json::from_slice(&bytes).expect("cursors json")
}

#[tokio::test]
async fn a_first_ingest_takes_everything_and_later_ones_only_the_changes() {
    let dir = tempfile::tempdir().expect("tmp");
    let sandbox = support::sandbox(1_500).await;
    let cloud = support::open(dir.path());
    let id = tid("acme");
    support::connected(&cloud, &sandbox, &id).await;
    let counts = sandbox.books(None, false).expect("books")["counts"].clone();

    let job = Job::open(support::job_config(dir.path(), &sandbox, &id, "r1"))
        .await
        .expect("open");
    let first = job.ingest().await.expect("first ingest");
    assert!(first.stopped_by_day_limit.is_none());
    for r in [
        Resource::Accounts,
        Resource::Contacts,
        Resource::Invoices,
        Resource::CreditNotes,
        Resource::Payments,
        Resource::Journals,
        Resource::Items,
    ] {
        let got = first.resources.get(r.name()).map_or(0, |c| c.records);
        assert_eq!(got, counts[r.name()].as_u64().expect("count"), "{r}");
    }
    // 1,500 invoices are two pages of 1,000; every page is in the manifest
    // with its checksum, and the cursor moved.
    let m = manifest(&cloud, &id, Resource::Invoices, "r1")
        .await
        .expect("manifest");
    assert_eq!(m.pages.len(), 2);
    assert_eq!(m.records, 1_500);
    let page = cloud
        .objects
        .get_object(
            &Credential::Platform,
            &naming::bucket_name(None, &id),
            &m.pages[1].key,
        )
        .await
        .expect("page");
    assert_eq!(
        page.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        500
    );
    let c = cursors(&cloud, &id).await;
    assert!(c["Invoices"].modified_since.is_some());
    assert!(c["Journals"].journal_offset.is_some());

    // Nothing changed: one call per resource, no new invoice pages.
    let job = Job::open(support::job_config(dir.path(), &sandbox, &id, "r2"))
        .await
        .expect("open");
    let second = job.ingest().await.expect("second ingest");
    assert_eq!(second.calls, Resource::ALL.len() as u64, "{second:?}");
    assert!(
        second.resources[Resource::Invoices.name()].records <= 1,
        "{second:?}"
    );

    // Changes: only they come back, still one call per resource.
    let changes = sandbox
        .apply_changes(&ChangeRequest {
            create: 4,
            edit: 3,
            void: 2,
            pay: 2,
            ..ChangeRequest::default()
        })
        .await
        .expect("changes");
    let job = Job::open(support::job_config(dir.path(), &sandbox, &id, "r3"))
        .await
        .expect("open");
    let third = job.ingest().await.expect("third ingest");
    assert_eq!(third.calls, Resource::ALL.len() as u64, "{third:?}");
    let changed_invoices = changes
        .changed
        .iter()
        .filter(|c| c.resource == "Invoices")
        .map(|c| c.id.clone())
        .collect::<std::collections::BTreeSet<_>>();
    let got = third.resources[Resource::Invoices.name()].records;
    assert!(
        got >= changed_invoices.len() as u64 && got <= changed_invoices.len() as u64 + 1,
        "{got} invoices for {} changed",
        changed_invoices.len()
    );
    // Unpaged resources are listed in full every run (one call either way):
    // every item and account is in this run's manifests, with no
    // If-Modified-Since and no change stamp in the cursor.
    for r in [Resource::Items, Resource::Accounts, Resource::Currencies] {
        let m = manifest(&cloud, &id, r, "r3").await.expect("manifest");
        assert_eq!(m.records, counts[r.name()].as_u64().expect("count"), "{r}");
        assert_eq!(m.modified_since, None, "{r}");
        assert_eq!(cursors(&cloud, &id).await[r.name()].modified_since, None);
    }

    // Every item deleted: the complete listing is empty, and its manifest
    // says so (no pages, no records); still one call per resource.
    let deleted = sandbox
        .apply_changes(&ChangeRequest {
            delete_items: 1_000,
            ..ChangeRequest::default()
        })
        .await
        .expect("changes");
    assert_eq!(
        deleted.changed.len() as u64,
        counts["Items"].as_u64().expect("count")
    );
    let job = Job::open(support::job_config(dir.path(), &sandbox, &id, "r4"))
        .await
        .expect("open");
    let fourth = job.ingest().await.expect("fourth ingest");
    assert_eq!(fourth.calls, Resource::ALL.len() as u64, "{fourth:?}");
    let m = manifest(&cloud, &id, Resource::Items, "r4")
        .await
        .expect("an empty listing's manifest");
    assert!(m.pages.is_empty() && m.records == 0, "{m:?}");
}

#[tokio::test]
async fn an_interrupted_ingest_loses_nothing_and_the_next_run_completes() {
    let dir = tempfile::tempdir().expect("tmp");
    let sandbox = support::sandbox(2_500).await;
    let cloud = support::open(dir.path());
    let id = tid("halted");
    support::connected(&cloud, &sandbox, &id).await;
    let bucket = naming::bucket_name(None, &id);

    let job = Job::open(support::job_config(dir.path(), &sandbox, &id, "r1"))
        .await
        .expect("open");
    let task = tokio::spawn(async move { job.ingest().await });
    // Once the first invoice page is durable, slow Xero down and kill the run.
    let first_page = raw::page_key(Resource::Invoices, "r1", 1);
    loop {
        if cloud
            .objects
            .get_object(&Credential::Platform, &bucket, &first_page)
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    sandbox.set_faults(FaultSettings {
        slow_rate: 1.0,
        slow_ms: 5_000,
        ..FaultSettings::default()
    });
    task.abort();
    let _ = task.await;
    sandbox.set_faults(FaultSettings::default());

    // No manifest and no cursor for invoices: nothing will read the orphan page.
    assert!(manifest(&cloud, &id, Resource::Invoices, "r1")
        .await
        .is_none());
    assert!(!cursors(&cloud, &id).await.contains_key("Invoices"));

    let job = Job::open(support::job_config(dir.path(), &sandbox, &id, "r2"))
        .await
        .expect("open");
    let rerun = job.ingest().await.expect("rerun");
    assert_eq!(rerun.resources[Resource::Invoices.name()].records, 2_500);
    assert_eq!(
        manifest(&cloud, &id, Resource::Invoices, "r2")
            .await
            .expect("manifest")
            .records,
        2_500
    );
}

#[tokio::test]
async fn server_errors_and_broken_connections_are_retried_without_duplicates() {
    // (Minute-limit 429s and Retry-After are the xero client's tests: the
    // client reads Xero's remaining-calls headers and waits before a 429.)
    let dir = tempfile::tempdir().expect("tmp");
    let sandbox = support::sandbox(1_200).await;
    let cloud = support::open(dir.path());
    let id = tid("bumpy");
    support::connected(&cloud, &sandbox, &id).await;
    sandbox.set_faults(FaultSettings {
        fail_rate: 0.2,
        fail_status: Some(503),
        drop_rate: 0.1,
        ..FaultSettings::default()
    });
    let job = Job::open(support::job_config(dir.path(), &sandbox, &id, "r1"))
        .await
        .expect("open");
    let report = job.ingest().await.expect("ingest despite 503s and drops");
    sandbox.set_faults(FaultSettings::default());
    assert_eq!(report.resources[Resource::Invoices.name()].records, 1_200);
    let m = manifest(&cloud, &id, Resource::Invoices, "r1")
        .await
        .expect("manifest");
    assert_eq!(m.pages.len(), 2, "each page once, retries included");
    let stats: serde_json::Value = reqwest::get(format!("{}/sandbox/stats", sandbox.base_url()))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    let faults = &stats["faults"];
    assert!(
        faults["failed"].as_u64().unwrap_or(0) + faults["dropped"].as_u64().unwrap_or(0) > 0,
        "the test must meet faults: {stats}"
    );
}

#[tokio::test]
async fn a_day_limit_ends_the_run_cleanly_and_the_next_run_resumes() {
    let dir = tempfile::tempdir().expect("tmp");
    let sandbox = support::sandbox(50).await;
    sandbox.set_limits(SandboxLimits {
        enabled: true,
        per_day: 6,
        day_window: Duration::from_secs(2),
        ..SandboxLimits::default()
    });
    let cloud = support::open(dir.path());
    let id = tid("capped");
    support::connected(&cloud, &sandbox, &id).await;
    let job = Job::open(support::job_config(dir.path(), &sandbox, &id, "r1"))
        .await
        .expect("open");
    let first = job.ingest().await.expect("a day limit is not a failure");
    let stop = first
        .stopped_by_day_limit
        .clone()
        .expect("stopped by the day limit");
    assert!(first.resources.len() < Resource::ALL.len(), "{first:?}");
    assert!(!first.resources.contains_key(&stop.resource));
    // What the summary tells the control plane's metrics: the day's calls
    // are spent, and they were all this run's.
    assert_eq!(first.day_remaining, Some(0), "{first:?}");
    assert!(first.calls <= 6, "{first:?}");

    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let job = Job::open(support::job_config(dir.path(), &sandbox, &id, "r2"))
        .await
        .expect("open");
    let second = job.ingest().await.expect("second");
    let remaining: Vec<&str> = Resource::ALL
        .iter()
        .map(|r| r.name())
        .filter(|r| !first.resources.contains_key(*r))
        .collect();
    if second.stopped_by_day_limit.is_none() {
        for r in &remaining {
            assert!(second.resources.contains_key(*r), "{r} in {second:?}");
        }
    }
    assert!(second.resources.contains_key(&stop.resource), "{second:?}");
}

#[tokio::test]
async fn the_job_refuses_any_identity_but_the_tenants_own() {
    let dir = tempfile::tempdir().expect("tmp");
    let sandbox = support::sandbox(5).await;
    let cloud = support::open(dir.path());
    let (a, b) = (tid("tenant-a"), tid("tenant-b"));
    support::connected(&cloud, &sandbox, &a).await;
    support::connected(&cloud, &sandbox, &b).await;
    let mut config = support::job_config(dir.path(), &sandbox, &a, "r1");
    config.service_account = Some(cloud.identity.email_for(&naming::service_account_id(&b)));
    let err = Job::open(config).await.err().expect("refused");
    assert!(err.to_string().contains("tenant-a"), "{err}");
    // And A's own identity cannot touch B's bucket or secret.
    let job = Job::open(support::job_config(dir.path(), &sandbox, &a, "r1"))
        .await
        .expect("open");
    let theirs = cloud
        .objects
        .list_objects(&job.cred, &naming::bucket_name(None, &b), "")
        .await;
    assert!(
        matches!(theirs, Err(cloud::CloudError::PermissionDenied { .. })),
        "{theirs:?}"
    );
    let secret = cloud
        .secrets
        .access_latest(&job.cred, &naming::secret_name(&b))
        .await;
    assert!(matches!(
        secret,
        Err(cloud::CloudError::PermissionDenied { .. })
    ));
}
