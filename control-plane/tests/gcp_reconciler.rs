//! The reconciler driving a tenant's whole plan through the gcp adapter: the
//! Cloud Storage and BigQuery emulators, and a contract server (checking every
//! request against Google's discovery documents) for IAM, IAM Credentials,
//! Secret Manager, Cloud Run and Resource Manager. Skipped, saying so, when
//! the emulators are not running (`.ci/run` starts them).

#[path = "../../cloud-gcp/tests/support.rs"]
mod gcp;
mod support;

use cloud::naming::{self, tenant_labels, TenantId};
use cloud::ports::{member_for, roles, ResourceRef};
use control_plane::reconciler::JobTemplate;
use control_plane::reconciler::{Reconciler, Settings};
use control_plane::store::{NewCell, WithoutCells};

fn unique_tenant() -> TenantId {
    let id = format!("g{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    TenantId::parse(&id).expect("id")
}

/// A contract server started with `server_args`, the gcp adapter on it, a
/// store with one cell (its project, room for `capacity`), and settings that
/// keep tenants in cells with jobs from the adapter's image.
struct World {
    server: gcp::ContractServer,
    gcp_adapter: cloud_gcp::Gcp,
    cloud: cloud::Cloud,
    store: control_plane::store::Store,
    settings: Settings,
    _platform: control_plane::platform::Platform,
    _dir: tempfile::TempDir,
}

async fn world(server_args: &[&str], capacity: i64) -> World {
    let server = gcp::ContractServer::start(server_args);
    let gcp_adapter = server.gcp().await;
    let cloud = gcp_adapter.cloud_for(&gcp::cell());
    let dir = tempfile::tempdir().expect("tmp");
    let platform = support::platform(dir.path()).await;
    let store = platform.store.clone();
    store
        .add_cell(&NewCell {
            id: "cell-001".into(),
            project: gcp::CELL_PROJECT.into(),
            region: "europe-west1".into(),
            capacity,
        })
        .await
        .expect("cell");
    // The cell's copy of the Xero app's client secret, which every tenant's
    // plan grants its account to read (as `cells add` writes it).
    control_plane::service::cells::write_app_secret(
        &cloud,
        &xero::secret::SecretString::new("test-client-secret"),
    )
    .await
    .expect("the app's secret");
    let settings = Settings {
        without_cells: WithoutCells::Refuse,
        jobs: JobTemplate {
            image: gcp_adapter.config().tenant_job_image.clone(),
            app_secret: Some(job_contract::plan::XERO_APP_SECRET.into()),
            ..JobTemplate::beside_current_exe()
        },
        ..support::fast_settings()
    };
    World {
        server,
        gcp_adapter,
        cloud,
        store,
        settings,
        _platform: platform,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_emulators_and_contract_server_provision_resume_after_failures_and_teardown_leave_nothing(
) {
    if !gcp::emulators() {
        return;
    }
    let World {
        server,
        cloud,
        store,
        settings,
        // Kept alive: the store lives in this directory.
        _platform,
        _dir,
        ..
    } = world(&["--sa-visibility-delay", "0.5", "--lro-delay", "0.1"], 100).await;
    let reconciler = Reconciler::new(cloud.clone(), store.clone(), settings);
    let id = unique_tenant();
    let labels = tenant_labels(&id);

    // Cloud Run fails every job creation of the first pass (both jobs, each
    // tried once and retried by the reconciler's policy; a 500 is not paced
    // away as a 503 or 429 would be): the pass fails part-way, with
    // everything before the jobs in place.
    let attempts = (support::fast_settings().retry.max_retries + 1) as u32;
    server
        .fault(
            "run",
            "run.projects.locations.jobs.create",
            500,
            2 * attempts,
            0,
        )
        .await;
    let failed = reconciler.provision(&id, "test").await.expect("pass");
    assert!(!failed.is_success(), "{failed:?}");
    assert_eq!(failed.failures.len(), 2, "{}", failed.failure_summary());
    assert!(
        failed.failures.iter().all(|f| f.kind == "job"),
        "{}",
        failed.failure_summary()
    );
    // Run again: it finishes, and nothing is made twice.
    let report = reconciler.provision(&id, "test").await.expect("pass");
    assert!(report.is_success(), "{}", report.failure_summary());
    let again = reconciler.provision(&id, "test").await.expect("pass");
    assert!(again.is_success());
    let created = |method: &'static str| {
        let server = &server;
        async move {
            let api = method.split('.').next().unwrap_or_default();
            server
                .requests(api)
                .await
                .into_iter()
                .filter(|r| r["method"] == method && r["status"] == 200)
                .count()
        }
    };
    assert_eq!(created("iam.projects.serviceAccounts.create").await, 1);
    assert_eq!(
        created("secretmanager.projects.secrets.create").await,
        2,
        "the tenant's, once, and the cell's copy of the app's secret at set-up"
    );
    assert_eq!(
        created("run.projects.locations.jobs.create").await,
        2,
        "ingest and transform, once each"
    );

    // What a tenant is made of, each with its labels and its own grants.
    let sa = cloud
        .identity
        .list_service_accounts(&labels)
        .await
        .expect("accounts");
    assert_eq!(sa.len(), 1);
    let member = member_for(&sa[0].email);
    let bucket = naming::bucket_name(None, &id);
    assert_eq!(
        cloud
            .objects
            .get_bucket(&bucket)
            .await
            .expect("bucket")
            .labels,
        labels
    );
    for dataset in [naming::raw_dataset(&id), naming::transformed_dataset(&id)] {
        assert_eq!(
            cloud
                .warehouse
                .get_dataset(&dataset)
                .await
                .expect("dataset")
                .labels,
            labels
        );
        let policy = cloud
            .identity
            .get_iam_policy(&ResourceRef::Dataset(dataset))
            .await
            .expect("policy");
        assert!(policy.has(roles::BIGQUERY_DATA_EDITOR, &member));
    }
    let bucket_policy = cloud
        .identity
        .get_iam_policy(&ResourceRef::Bucket(bucket.clone()))
        .await
        .expect("policy");
    assert!(bucket_policy.has(roles::STORAGE_OBJECT_ADMIN, &member));
    let secret_policy = cloud
        .identity
        .get_iam_policy(&ResourceRef::Secret(naming::secret_name(&id)))
        .await
        .expect("policy");
    assert!(secret_policy.has(roles::SECRET_ACCESSOR, &member));
    assert!(secret_policy.has(roles::SECRET_VERSION_ADDER, &member));
    // The cell's copy of the Xero app's secret: read only.
    let app_policy = cloud
        .identity
        .get_iam_policy(&ResourceRef::Secret(
            job_contract::plan::XERO_APP_SECRET.into(),
        ))
        .await
        .expect("policy");
    assert_eq!(
        app_policy.roles_of(&member).collect::<Vec<_>>(),
        [roles::SECRET_ACCESSOR]
    );
    let project = cloud
        .identity
        .get_iam_policy(&ResourceRef::Project)
        .await
        .expect("policy");
    assert_eq!(
        project.roles_of(&member).collect::<Vec<_>>(),
        [roles::BIGQUERY_JOB_USER],
        "the only project-level grant"
    );
    let jobs = cloud.jobs.list_jobs(&labels).await.expect("jobs");
    assert_eq!(jobs.len(), 2);
    assert!(
        jobs.iter().all(|j| j.spec.service_account == sa[0].email),
        "jobs run as the tenant"
    );

    // Teardown, then every API listed by the tenant's labels: nothing left.
    let report = reconciler
        .teardown(&id, false, "test")
        .await
        .expect("teardown");
    assert!(report.is_success(), "{}", report.failure_summary());
    assert_eq!(
        gcp::labelled(&cloud, &labels).await,
        [0; 5],
        "nothing labelled with the tenant is left"
    );
    let project = cloud
        .identity
        .get_iam_policy(&ResourceRef::Project)
        .await
        .expect("policy");
    assert_eq!(
        project.roles_of(&member).count(),
        0,
        "the project grant is revoked"
    );
    let app_policy = cloud
        .identity
        .get_iam_policy(&ResourceRef::Secret(
            job_contract::plan::XERO_APP_SECRET.into(),
        ))
        .await
        .expect("policy");
    assert_eq!(
        app_policy.roles_of(&member).count(),
        0,
        "the grant on the app's secret is revoked; the secret stays"
    );
    server.assert_on_contract().await;
}

/// A process killed right after any one of provisioning's mutating calls took
/// effect (before the store recorded it): a new process resumes, and the
/// tenant ends with each resource exactly once in Google's APIs; a teardown
/// then leaves nothing labelled with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_emulators_and_contract_server_a_crash_after_any_provisioning_step_resumes_without_duplicates_or_orphans(
) {
    use cloud::faulty::{self, Faults};
    use std::sync::Arc;

    if !gcp::emulators() {
        return;
    }
    let World {
        server,
        gcp_adapter,
        cloud,
        store,
        settings,
        // Kept alive: the store lives in this directory.
        _platform,
        _dir,
        ..
    } = world(&["--lro-delay", "0.05"], 1_000).await;
    let clouds = cloud::Clouds::PerCell(Arc::new(gcp_adapter));
    let settings = Settings {
        // One call at a time, so that the crash falls between two calls, as
        // the scenario says. With calls side by side the crash would also
        // cut one short half-way, which Google's calls do not suffer (each is
        // atomic) but the Storage emulator's does: it drops a new bucket's
        // labels on insert, and the adapter's label patch after it is a
        // second call (see infra/local/gcp/EMULATORS.md).
        resource_concurrency: 1,
        ..settings
    };

    // The mutating calls of one clean provisioning.
    let counter = Faults::crash_after(usize::MAX);
    let probe = unique_tenant();
    let report = Reconciler::new(
        faulty::wrap(&cloud, counter.clone()),
        store.clone(),
        settings.clone(),
    )
    .provision(&probe, "test")
    .await
    .expect("clean run");
    assert!(report.is_success(), "{}", report.failure_summary());
    let steps = counter.count();
    assert!(steps >= 13, "every resource is a mutating call: {steps}");

    for crash_at in 1..=steps {
        let id = unique_tenant();
        let labels = tenant_labels(&id);
        let faults = Faults::crash_after(crash_at);
        let crashing = Reconciler::new(
            faulty::wrap(&cloud, faults.clone()),
            store.clone(),
            settings.clone(),
        );
        tokio::select! {
            result = crashing.provision(&id, "test") => {
                assert!(faults.count() < crash_at, "step {crash_at}: the run should have crashed: {result:?}");
            }
            _ = faults.crashed.notified() => {}
        }
        // The crashed holder's lease expires; another process finishes.
        let resumed = Reconciler::new(clouds.clone(), store.clone(), settings.clone());
        let report = resumed
            .reconcile(&id)
            .await
            .unwrap_or_else(|e| panic!("step {crash_at}: {e}"));
        assert!(
            report.is_success(),
            "step {crash_at}: {}",
            report.failure_summary()
        );
        assert_eq!(
            gcp::labelled(&cloud, &labels).await,
            gcp::ONE_TENANT,
            "step {crash_at}: each resource exactly once"
        );
        let member = member_for(&cloud.identity.email_for(&naming::service_account_id(&id)));
        let project = cloud
            .identity
            .get_iam_policy(&ResourceRef::Project)
            .await
            .expect("policy");
        assert_eq!(
            project.roles_of(&member).count(),
            1,
            "step {crash_at}: one grant, once"
        );
        assert_eq!(
            resumed.reconcile(&id).await.expect("again").changed,
            0,
            "step {crash_at}"
        );

        let report = resumed
            .teardown(&id, false, "test")
            .await
            .expect("teardown");
        assert!(
            report.is_success(),
            "step {crash_at}: {}",
            report.failure_summary()
        );
        assert_eq!(
            gcp::labelled(&cloud, &labels).await,
            [0; 5],
            "step {crash_at}: nothing left"
        );
    }
    server.assert_on_contract().await;
}
