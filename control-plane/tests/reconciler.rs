//! The reconciler against the local cloud and a SQLite store: idempotence,
//! fault injection at every step, crashes, retries, isolation of failures,
//! concurrent reconcilers and teardown.

mod support;

use std::sync::Arc;
use std::time::Duration;

use cloud::naming::{self, TenantId};
use cloud::ports::{roles, ResourceRef};
use cloud::Cloud;
use control_plane::reconciler::Reconciler;
use control_plane::store::{Phase, ResourceStatus};
use support::faulty::{self, Faults};

fn tid(s: &str) -> TenantId {
    TenantId::parse(s).expect("valid id")
}

/// Exactly one of each of the tenant's resources, each binding once, and the
/// store agreeing that every planned resource is Ready.
async fn assert_ready_without_duplicates(cloud: &Cloud, reconciler: &Reconciler, id: &TenantId) {
    let labels = naming::tenant_labels(id);
    assert_eq!(
        cloud
            .objects
            .list_buckets(&labels)
            .await
            .expect("buckets")
            .len(),
        1
    );
    assert_eq!(
        cloud
            .warehouse
            .list_datasets(&labels)
            .await
            .expect("datasets")
            .len(),
        2
    );
    assert_eq!(
        cloud
            .secrets
            .list_secrets(&labels)
            .await
            .expect("secrets")
            .len(),
        1
    );
    let accounts = cloud
        .identity
        .list_service_accounts(&labels)
        .await
        .expect("accounts");
    assert_eq!(accounts.len(), 1);
    let member = cloud::ports::member_for(&accounts[0].email);
    let plan = reconciler.plan(cloud, id);
    for p in plan.resources() {
        if let control_plane::reconciler::plan::Planned::Binding { resource, role, .. } = p {
            let policy = cloud
                .identity
                .get_iam_policy(resource)
                .await
                .expect("policy");
            let with_role: Vec<_> = policy.bindings.iter().filter(|b| b.role == *role).collect();
            assert_eq!(with_role.len(), 1, "{resource} {role}: {policy:?}");
            assert!(with_role[0].members.contains(&member), "{resource} {role}");
        }
    }
    let tenant = reconciler
        .store()
        .get_tenant(id)
        .await
        .expect("get")
        .expect("tenant");
    assert_eq!(tenant.phase, Phase::Ready);
    let rows = reconciler.store().list_resources(id).await.expect("rows");
    assert_eq!(rows.len(), plan.resources().count());
    assert!(
        rows.iter().all(|r| r.status == ResourceStatus::Ready),
        "{rows:?}"
    );
}

/// Nothing labelled with the tenant is left, other than data kept on request.
async fn assert_gone(cloud: &Cloud, reconciler: &Reconciler, id: &TenantId, kept_data: bool) {
    let labels = naming::tenant_labels(id);
    let data = if kept_data { 1 } else { 0 };
    assert_eq!(
        cloud.objects.list_buckets(&labels).await.expect("b").len(),
        data
    );
    assert_eq!(
        cloud
            .warehouse
            .list_datasets(&labels)
            .await
            .expect("d")
            .len(),
        2 * data
    );
    assert!(cloud
        .secrets
        .list_secrets(&labels)
        .await
        .expect("s")
        .is_empty());
    assert!(cloud
        .identity
        .list_service_accounts(&labels)
        .await
        .expect("sa")
        .is_empty());
    let email = cloud.identity.email_for(&naming::service_account_id(id));
    let member = cloud::ports::member_for(&email);
    let project = cloud
        .identity
        .get_iam_policy(&ResourceRef::Project)
        .await
        .expect("project policy");
    assert!(!project.has(roles::BIGQUERY_JOB_USER, &member));
    if kept_data {
        let bucket = ResourceRef::Bucket(naming::bucket_name(None, id));
        let policy = cloud
            .identity
            .get_iam_policy(&bucket)
            .await
            .expect("bucket policy");
        assert_eq!(
            policy.roles_of(&member).count(),
            0,
            "kept data keeps no binding to a deleted account"
        );
    }
    assert!(reconciler
        .store()
        .get_tenant(id)
        .await
        .expect("get")
        .is_none());
}

#[tokio::test]
async fn provisioning_makes_every_resource_ready_and_a_second_pass_changes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let platform = support::platform(dir.path()).await;
    let r = support::reconciler(&platform);
    let id = tid("acme");
    let first = r.provision(&id, "test").await.expect("provision");
    assert!(first.is_success(), "{first:?}");
    assert_eq!(first.changed, r.plan_size(&id));
    assert_ready_without_duplicates(&platform.cloud, &r, &id).await;
    let before = r.store().list_resources(&id).await.expect("rows");
    let tenant_before = r.store().get_tenant(&id).await.expect("t").expect("t");

    let second = r.provision(&id, "test").await.expect("again");
    assert_eq!(second.changed, 0);
    let third = r.reconcile(&id).await.expect("reconcile");
    assert_eq!(third.changed, 0);
    let after = r.store().list_resources(&id).await.expect("rows");
    let tenant_after = r.store().get_tenant(&id).await.expect("t").expect("t");
    assert_eq!(
        before
            .iter()
            .map(|r| (r.attempts, r.last_transition))
            .collect::<Vec<_>>(),
        after
            .iter()
            .map(|r| (r.attempts, r.last_transition))
            .collect::<Vec<_>>(),
        "a no-op pass writes nothing"
    );
    assert_eq!(tenant_before.updated_at, tenant_after.updated_at);
    let audit = r.store().list_audit(Some(&id), 10).await.expect("audit");
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.action == "tenant.provision")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_crash_after_any_step_resumes_to_ready_without_duplicates() {
    // Count the mutating calls of a clean provisioning first.
    let probe_dir = tempfile::tempdir().expect("tmp");
    let probe = support::platform(probe_dir.path()).await;
    let counter = Faults::crash_after(usize::MAX);
    let counting = Reconciler::new(
        faulty::wrap(&probe.cloud, counter.clone()),
        probe.store.clone(),
        support::fast_settings(),
    );
    counting
        .provision(&tid("acme"), "test")
        .await
        .expect("clean run");
    let steps = counter.count();
    assert!(steps >= 11, "every resource is a mutating call: {steps}");

    for crash_at in 1..=steps {
        let dir = tempfile::tempdir().expect("tmp");
        let platform = support::platform(dir.path()).await;
        let id = tid("acme");
        let faults = Faults::crash_after(crash_at);
        let crashing = Reconciler::new(
            faulty::wrap(&platform.cloud, faults.clone()),
            platform.store.clone(),
            support::fast_settings(),
        );
        tokio::select! {
            result = crashing.provision(&id, "test") => {
                // Two grants on one policy may meet an etag conflict and
                // retry, so runs differ by a step or two: a run with fewer
                // steps than `crash_at` simply finishes.
                assert!(faults.count() < crash_at, "step {crash_at}: the run should have crashed: {result:?}");
                assert!(result.expect("finished").is_success());
            }
            _ = faults.crashed.notified() => {}
        }
        // The crashed run's lease expires; a new process takes over and finishes.
        let resumed = support::reconciler(&platform);
        let report = resumed
            .reconcile(&id)
            .await
            .unwrap_or_else(|e| panic!("step {crash_at}: {e}"));
        assert!(report.is_success(), "step {crash_at}: {report:?}");
        assert_ready_without_duplicates(&platform.cloud, &resumed, &id).await;
        assert_eq!(
            resumed.reconcile(&id).await.expect("again").changed,
            0,
            "step {crash_at}"
        );
    }
}

#[tokio::test]
async fn a_crash_during_teardown_resumes_and_leaves_no_orphan() {
    let probe_dir = tempfile::tempdir().expect("tmp");
    let probe = support::platform(probe_dir.path()).await;
    let id = tid("gone");
    support::reconciler(&probe)
        .provision(&id, "test")
        .await
        .expect("provision");
    let counter = Faults::crash_after(usize::MAX);
    Reconciler::new(
        faulty::wrap(&probe.cloud, counter.clone()),
        probe.store.clone(),
        support::fast_settings(),
    )
    .teardown(&id, false, "test")
    .await
    .expect("clean teardown");
    let steps = counter.count();
    assert!(steps >= 11, "{steps}");

    for crash_at in 1..=steps {
        let dir = tempfile::tempdir().expect("tmp");
        let platform = support::platform(dir.path()).await;
        support::reconciler(&platform)
            .provision(&id, "test")
            .await
            .expect("provision");
        let faults = Faults::crash_after(crash_at);
        let crashing = Reconciler::new(
            faulty::wrap(&platform.cloud, faults.clone()),
            platform.store.clone(),
            support::fast_settings(),
        );
        tokio::select! {
            result = crashing.teardown(&id, false, "test") => {
                // As above: concurrent revokes on one policy may retry, so a
                // run may have fewer steps than the probe's.
                assert!(faults.count() < crash_at, "step {crash_at}: should have crashed: {result:?}");
                assert!(result.expect("finished").is_success());
                assert_gone(&platform.cloud, &support::reconciler(&platform), &id, false).await;
                continue;
            }
            _ = faults.crashed.notified() => {}
        }
        let tenant = platform
            .store
            .get_tenant(&id)
            .await
            .expect("get")
            .expect("still recorded");
        assert_eq!(
            tenant.phase,
            Phase::Deleting,
            "step {crash_at}: the record stays until all is gone"
        );
        let resumed = support::reconciler(&platform);
        let report = resumed
            .reconcile(&id)
            .await
            .unwrap_or_else(|e| panic!("step {crash_at}: {e}"));
        assert!(report.is_success(), "step {crash_at}: {report:?}");
        assert_gone(&platform.cloud, &resumed, &id, false).await;
    }
}

#[tokio::test]
async fn transient_errors_are_retried_until_ready() {
    let dir = tempfile::tempdir().expect("tmp");
    let platform = support::platform(dir.path()).await;
    let id = tid("flaky");
    let faults = Faults::transient(2);
    let r = Reconciler::new(
        faulty::wrap(&platform.cloud, faults),
        platform.store.clone(),
        support::fast_settings(),
    );
    let report = r.provision(&id, "test").await.expect("provision");
    assert!(report.is_success(), "{report:?}");
    assert_ready_without_duplicates(&platform.cloud, &r, &id).await;
}

#[tokio::test]
async fn retries_give_up_and_the_tenant_fails_with_the_cause() {
    let dir = tempfile::tempdir().expect("tmp");
    let platform = support::platform(dir.path()).await;
    let id = tid("down");
    // More consecutive failures per call than the retry budget allows.
    let faults = Faults::transient(50);
    let r = Reconciler::new(
        faulty::wrap(&platform.cloud, faults),
        platform.store.clone(),
        support::fast_settings(),
    );
    let report = r.provision(&id, "test").await.expect("pass runs");
    assert!(!report.is_success());
    assert_eq!(report.phase, Some(Phase::Failed));
    let failure = &report.failures[0];
    assert_eq!(failure.kind, "service_account");
    assert!(failure.retryable);
    assert!(
        failure.message.contains("injected transient failure"),
        "{}",
        failure.message
    );
    let rows = platform.store.list_resources(&id).await.expect("rows");
    let sa = rows
        .iter()
        .find(|r| r.kind == "service_account")
        .expect("sa row");
    assert_eq!(sa.status, ResourceStatus::Failed);
    assert!(sa.attempts >= 1);
    // Dependents wait, naming what they wait for.
    let bucket = rows
        .iter()
        .find(|r| r.kind == "bucket")
        .expect("bucket row");
    assert_eq!(bucket.status, ResourceStatus::Pending);
    assert!(
        bucket
            .message
            .as_deref()
            .unwrap_or("")
            .contains("waiting for service_account"),
        "{bucket:?}"
    );
    let tenant = platform
        .store
        .get_tenant(&id)
        .await
        .expect("get")
        .expect("t");
    assert!(
        tenant
            .message
            .as_deref()
            .unwrap_or("")
            .contains("tenant down: service_account"),
        "{tenant:?}"
    );

    // Once the cloud recovers, a reconcile finishes the job.
    let healthy = support::reconciler(&platform);
    assert!(healthy
        .reconcile(&id)
        .await
        .expect("reconcile")
        .is_success());
    assert_ready_without_duplicates(&platform.cloud, &healthy, &id).await;
}

#[tokio::test]
async fn without_the_cells_copy_of_the_app_secret_provisioning_says_how_to_write_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let platform = support::platform(dir.path()).await;
    let mut settings = support::fast_settings();
    settings.jobs.app_secret = Some(job_contract::plan::XERO_APP_SECRET.into());
    let r = Reconciler::new(platform.cloud.clone(), platform.store.clone(), settings);
    let id = tid("acme");
    let report = r.provision(&id, "test").await.expect("pass");
    assert_eq!(report.failures.len(), 1, "{}", report.failure_summary());
    assert_eq!(report.failures[0].kind, "iam_binding");
    assert!(
        report.failures[0].message.contains("cells sync-secret"),
        "{}",
        report.failure_summary()
    );
    // Written (as `cells sync-secret` does), the next pass finishes.
    control_plane::service::cells::write_app_secret(
        &platform.cloud,
        &xero::secret::SecretString::new("app-secret"),
    )
    .await
    .expect("write");
    let report = r.provision(&id, "test").await.expect("pass");
    assert!(report.is_success(), "{}", report.failure_summary());
    assert_ready_without_duplicates(&platform.cloud, &r, &id).await;
}

#[tokio::test]
async fn a_permanent_error_fails_that_tenant_only() {
    let dir = tempfile::tempdir().expect("tmp");
    let platform = support::platform(dir.path()).await;
    let r = support::reconciler(&platform);
    let (bad, good) = (tid("bad"), tid("good"));
    // Someone else's bucket squats on the bad tenant's bucket name.
    platform
        .cloud
        .objects
        .ensure_bucket(&cloud::ports::BucketSpec {
            name: naming::bucket_name(None, &bad),
            labels: naming::tenant_labels(&tid("squatter")),
        })
        .await
        .expect("squat");
    platform.store.want_tenant(&bad).await.expect("want");
    platform.store.want_tenant(&good).await.expect("want");
    let results = r.reconcile_all().await.expect("all");
    assert_eq!(results.len(), 2);
    let reports: Vec<_> = results.into_iter().map(|r| r.expect("report")).collect();
    let bad_report = reports.iter().find(|r| r.tenant == bad).expect("bad");
    assert_eq!(bad_report.phase, Some(Phase::Failed));
    assert_eq!(bad_report.failures.len(), 1);
    assert_eq!(bad_report.failures[0].kind, "bucket");
    assert!(!bad_report.failures[0].retryable);
    assert!(
        bad_report.failures[0].message.contains("squatter"),
        "{:?}",
        bad_report.failures
    );
    // The other level-1 resources of the bad tenant were still made.
    assert_eq!(
        platform
            .cloud
            .warehouse
            .list_datasets(&naming::tenant_labels(&bad))
            .await
            .expect("d")
            .len(),
        2
    );
    assert_ready_without_duplicates(&platform.cloud, &r, &good).await;
}

#[tokio::test]
async fn two_reconcilers_on_one_tenant_never_duplicate() {
    let dir = tempfile::tempdir().expect("tmp");
    let platform = support::platform(dir.path()).await;
    let id = tid("race");
    let a = support::reconciler(&platform);
    let b = support::reconciler(&platform);
    let (ra, rb) = tokio::join!(a.provision(&id, "a"), b.provision(&id, "b"));
    let (ra, rb) = (ra.expect("a"), rb.expect("b"));
    assert!(ra.is_success() && rb.is_success());
    // The lease serialised them: one created everything, the other found it done.
    assert_eq!(ra.changed + rb.changed, a.plan_size(&id), "{ra:?} {rb:?}");
    assert_ready_without_duplicates(&platform.cloud, &a, &id).await;
}

#[tokio::test]
async fn a_held_lease_makes_another_reconciler_wait_then_give_up_as_busy() {
    let dir = tempfile::tempdir().expect("tmp");
    let platform = support::platform(dir.path()).await;
    let id = tid("held");
    platform.store.want_tenant(&id).await.expect("want");
    assert!(platform
        .store
        .try_acquire_lease(
            &format!("tenant:{id}"),
            "someone-else",
            Duration::from_secs(60)
        )
        .await
        .expect("lease"));
    let mut settings = support::fast_settings();
    settings.lease_wait = Duration::from_millis(200);
    let r = platform.reconciler(settings);
    let err = r.reconcile(&id).await.expect_err("busy");
    assert!(
        err.to_string()
            .contains("being reconciled by another process"),
        "{err}"
    );
}

#[tokio::test]
async fn teardown_removes_everything_and_then_the_tenant() {
    let dir = tempfile::tempdir().expect("tmp");
    let platform = support::platform(dir.path()).await;
    let r = support::reconciler(&platform);
    let (id, other) = (tid("leaving"), tid("staying"));
    r.provision(&id, "test").await.expect("provision");
    r.provision(&other, "test").await.expect("provision");
    let report = r.teardown(&id, false, "test").await.expect("teardown");
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.phase, None);
    assert!(report.kept.is_empty());
    assert_gone(&platform.cloud, &r, &id, false).await;
    // The neighbour is untouched, including its grant on the shared project policy.
    assert_ready_without_duplicates(&platform.cloud, &r, &other).await;
    assert_eq!(r.reconcile(&other).await.expect("noop").changed, 0);
    let audit = platform
        .store
        .list_audit(Some(&id), 10)
        .await
        .expect("audit");
    assert!(audit.iter().any(|a| a.action == "tenant.deleted"));
}

#[tokio::test]
async fn teardown_with_keep_data_keeps_the_bucket_and_datasets_and_says_so() {
    let dir = tempfile::tempdir().expect("tmp");
    let platform = support::platform(dir.path()).await;
    let r = support::reconciler(&platform);
    let id = tid("keeper");
    r.provision(&id, "test").await.expect("provision");
    let report = r.teardown(&id, true, "test").await.expect("teardown");
    assert!(report.is_success(), "{report:?}");
    let mut kept = report.kept.clone();
    kept.sort();
    assert_eq!(
        kept,
        vec![
            "bucket client-keeper-bucket".to_owned(),
            "dataset raw_keeper".to_owned(),
            "dataset transformed_keeper".to_owned()
        ]
    );
    assert_gone(&platform.cloud, &r, &id, true).await;
    // Provisioning the same id again adopts the kept data.
    let again = r.provision(&id, "test").await.expect("again");
    assert!(again.is_success(), "{again:?}");
    assert_ready_without_duplicates(&platform.cloud, &r, &id).await;
}

#[tokio::test]
async fn teardown_of_an_unknown_tenant_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let platform = support::platform(dir.path()).await;
    let r = support::reconciler(&platform);
    let err = r
        .teardown(&tid("nobody"), false, "test")
        .await
        .expect_err("unknown");
    assert_eq!(err.to_string(), "tenant nobody does not exist");
}

#[tokio::test]
async fn drift_is_repaired_by_reconcile() {
    let dir = tempfile::tempdir().expect("tmp");
    let platform = support::platform(dir.path()).await;
    let r = support::reconciler(&platform);
    let id = tid("drift");
    r.provision(&id, "test").await.expect("provision");
    // Someone deletes the bucket and a grant behind our back.
    platform
        .cloud
        .objects
        .delete_bucket(&naming::bucket_name(None, &id))
        .await
        .expect("delete");
    let email = platform
        .cloud
        .identity
        .email_for(&naming::service_account_id(&id));
    cloud::ports::identity::revoke(
        platform.cloud.identity.as_ref(),
        &ResourceRef::Project,
        roles::BIGQUERY_JOB_USER,
        &cloud::ports::member_for(&email),
    )
    .await
    .expect("revoke");
    let report = r.reconcile(&id).await.expect("reconcile");
    // The bucket, the grant on the new bucket and the project grant.
    assert_eq!(report.changed, 3, "{report:?}");
    assert_ready_without_duplicates(&platform.cloud, &r, &id).await;
}

#[tokio::test]
async fn many_tenants_share_the_project_policy_without_losing_a_grant() {
    let dir = tempfile::tempdir().expect("tmp");
    let platform = Arc::new(support::platform(dir.path()).await);
    let ids: Vec<TenantId> = (0..12).map(|i| tid(&format!("t{i:02}"))).collect();
    for id in &ids {
        platform.store.want_tenant(id).await.expect("want");
    }
    // Eight tenants at once write the one project policy: etags must keep every grant.
    let r = support::reconciler(&platform);
    for result in r.reconcile_all().await.expect("all") {
        assert!(result.expect("report").is_success());
    }
    let project = platform
        .cloud
        .identity
        .get_iam_policy(&ResourceRef::Project)
        .await
        .expect("policy");
    for id in &ids {
        let email = platform
            .cloud
            .identity
            .email_for(&naming::service_account_id(id));
        assert!(
            project.has(roles::BIGQUERY_JOB_USER, &cloud::ports::member_for(&email)),
            "{id}"
        );
    }
}

#[tokio::test]
async fn a_pass_over_all_tenants_leaves_settled_ones_alone_and_repairs_drift() {
    let dir = tempfile::tempdir().expect("tmp");
    let platform = support::platform(dir.path()).await;
    let r = support::reconciler(&platform);
    let (calm, drifted) = (tid("calm"), tid("drifted"));
    for id in [&calm, &drifted] {
        r.provision(id, "test").await.expect("provision");
    }
    let before = platform
        .store
        .get_tenant(&calm)
        .await
        .expect("read")
        .expect("calm");
    // Out of band: the drifted tenant's raw dataset goes, and so does its grant
    // on the secret.
    platform
        .cloud
        .warehouse
        .delete_dataset(&naming::raw_dataset(&drifted))
        .await
        .expect("delete dataset");
    let email = platform
        .cloud
        .identity
        .email_for(&naming::service_account_id(&drifted));
    cloud::ports::identity::revoke(
        platform.cloud.identity.as_ref(),
        &ResourceRef::Secret(naming::secret_name(&drifted)),
        roles::SECRET_ACCESSOR,
        &cloud::ports::member_for(&email),
    )
    .await
    .expect("revoke");

    let mut changed = std::collections::BTreeMap::new();
    for result in r.reconcile_all().await.expect("all") {
        let report = result.expect("report");
        assert!(report.is_success(), "{report:?}");
        changed.insert(report.tenant.to_string(), report.changed);
    }
    // The dataset, the grant on the new dataset, and the secret grant.
    assert_eq!(changed.get("drifted"), Some(&3), "{changed:?}");
    assert_eq!(changed.get("calm"), Some(&0), "{changed:?}");
    assert_ready_without_duplicates(&platform.cloud, &r, &drifted).await;
    // The settled tenant was not written to at all.
    let after = platform
        .store
        .get_tenant(&calm)
        .await
        .expect("read")
        .expect("calm");
    assert_eq!(after.updated_at, before.updated_at);
}
