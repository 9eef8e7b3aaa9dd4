//! The service's background provisioning: one pass per tenant at a time,
//! repeated requests merged, failed tenants retried with backoff.

mod support;

use std::time::Duration;

use cloud::naming::TenantId;
use control_plane::reconciler::Reconciler;
use control_plane::server::{self, ServeConfig};
use control_plane::store::Phase;
use support::faulty::{self, Faults};

fn config(workers: usize) -> ServeConfig {
    // The periodic resync (hourly) stays out of these tests' way.
    ServeConfig {
        workers,
        query: Some(Default::default()),
        ..ServeConfig::closed("127.0.0.1:0".parse().expect("addr"), "http://127.0.0.1:0")
    }
}

/// Waits until the faulty cloud has seen no mutating call for `quiet`.
async fn settle(faults: &Faults, quiet: Duration) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last = faults.count();
    loop {
        tokio::time::sleep(quiet).await;
        let now = faults.count();
        if now == last {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cloud never went quiet"
        );
        last = now;
    }
}

/// The consent callback queues a tenant, and the periodic re-queue queues it
/// again while a slow pass is still running. Both requests share one worker
/// pool (and so one lease holder, and the store's lease is re-entrant for its
/// holder): the second must not start a second pass beside the first. It
/// merges into one more pass after the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_requested_during_its_pass_gets_one_more_pass_not_a_parallel_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let platform = support::platform(dir.path()).await;
    let id = TenantId::parse("twice").expect("id");
    platform.store.want_tenant(&id).await.expect("want");

    // Every mutating call takes 100 ms, so a pass takes over a second.
    let faults = Faults::slow(Duration::from_millis(100));
    let reconciler = Reconciler::new(
        faulty::wrap(&platform.cloud, faults.clone()),
        platform.store.clone(),
        support::fast_settings(),
    );
    let (state, _workers) = server::start(
        platform.cloud.clone(),
        platform.store.clone(),
        reconciler,
        config(4),
    );

    state.enqueue(id.clone());
    // The first pass is under way (it has made its first slow call, and has
    // a dozen more to go); three more requests arrive meanwhile. Waiting for
    // the call rather than a fixed time keeps a loaded machine from starting
    // the pass late.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while faults.count() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first pass never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..3 {
        state.enqueue(id.clone());
    }
    settle(&faults, Duration::from_millis(1500)).await;

    assert_eq!(
        faults.max_overlap(),
        1,
        "two passes over one tenant ran at once"
    );
    // The first pass, then exactly one merged pass for the three requests
    // (which finds everything in place and so calls no create).
    assert_eq!(state.controller.passes(), 2);
    assert_eq!(faults.calls("ensure_bucket"), 1);
    let tenant = platform
        .store
        .get_tenant(&id)
        .await
        .expect("read")
        .expect("tenant");
    assert_eq!(tenant.phase, Phase::Ready, "{:?}", tenant.message);
}

/// Several tenants requested at once each get exactly one pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_requested_tenant_gets_exactly_one_pass() {
    let dir = tempfile::tempdir().expect("tmp");
    let platform = support::platform(dir.path()).await;
    let faults = Faults::slow(Duration::from_millis(100));
    let reconciler = Reconciler::new(
        faulty::wrap(&platform.cloud, faults.clone()),
        platform.store.clone(),
        support::fast_settings(),
    );
    let ids: Vec<TenantId> = ["one", "two", "three"]
        .iter()
        .map(|s| TenantId::parse(s).expect("id"))
        .collect();
    for id in &ids {
        platform.store.want_tenant(id).await.expect("want");
    }
    let (state, _workers) = server::start(
        platform.cloud.clone(),
        platform.store.clone(),
        reconciler,
        config(3),
    );
    for id in &ids {
        state.enqueue(id.clone());
    }
    settle(&faults, Duration::from_millis(1500)).await;
    for id in &ids {
        let t = platform
            .store
            .get_tenant(id)
            .await
            .expect("read")
            .expect("tenant");
        assert_eq!(t.phase, Phase::Ready);
    }
    assert_eq!(faults.calls("ensure_bucket"), 3);
    assert_eq!(state.controller.passes(), 3);
    assert_eq!(faults.max_overlap(), 1);
}

/// Another process takes a tenant's lease while a pass runs (here: written
/// straight into the store's database, as a holder whose renewal raced ours
/// would): the pass stops at once instead of carrying on beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pass_that_loses_its_lease_stops() {
    use sqlx::Connection;

    let dir = tempfile::tempdir().expect("tmp");
    let platform = support::platform(dir.path()).await;
    let id = TenantId::parse("stolen").expect("id");
    platform.store.want_tenant(&id).await.expect("want");
    let faults = Faults::slow(Duration::from_millis(100));
    let reconciler = Reconciler::new(
        faulty::wrap(&platform.cloud, faults.clone()),
        platform.store.clone(),
        support::fast_settings(),
    );
    let pass = {
        let id = id.clone();
        tokio::spawn(async move { reconciler.reconcile(&id).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.expect("db");
    let far = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 3_600_000;
    let stolen = sqlx::query("UPDATE leases SET holder = 'thief', expires_at = $1 WHERE name = $2")
        .bind(far)
        .bind(format!("tenant:{id}"))
        .execute(&mut db)
        .await
        .expect("steal");
    assert_eq!(stolen.rows_affected(), 1, "the pass holds the lease");

    let result = tokio::time::timeout(Duration::from_secs(10), pass)
        .await
        .expect("the pass stops")
        .expect("join");
    assert!(
        matches!(
            result,
            Err(control_plane::reconciler::ReconcileError::LeaseLost(_))
        ),
        "{result:?}"
    );
    // Nothing more happens after the stop.
    let after = faults.count();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(faults.count(), after);
    let tenant = platform
        .store
        .get_tenant(&id)
        .await
        .expect("read")
        .expect("tenant");
    assert_ne!(tenant.phase, Phase::Ready);
}

/// A pass that fails puts the tenant in backoff (recorded, shown by
/// `tenants show`); the controller tries again after it, and the tenant
/// settles once the cloud recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_tenant_is_retried_after_a_backoff_until_it_settles() {
    use control_plane::controller::{Backoff, Controller};
    use control_plane::output::TenantView;

    let dir = tempfile::tempdir().expect("tmp");
    let platform = support::platform(dir.path()).await;
    let id = TenantId::parse("flaky").expect("id");
    platform.store.want_tenant(&id).await.expect("want");
    // Each kind of create fails 8 times: more than one pass's retries (1 + 4),
    // fewer than two passes' worth.
    let faults = Faults::transient(8);
    let reconciler = Reconciler::new(
        faulty::wrap(&platform.cloud, faults.clone()),
        platform.store.clone(),
        support::fast_settings(),
    );
    let backoff = Backoff {
        base: Duration::from_millis(300),
        max: Duration::from_secs(2),
        jitter: 0.0,
    };
    let (controller, _guard) = Controller::start(reconciler, 2, backoff);
    controller.request(&id);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !controller.is_backing_off(&id) {
        assert!(tokio::time::Instant::now() < deadline, "never backed off");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let view = TenantView::load(&platform.store, &id)
        .await
        .expect("read")
        .expect("tenant");
    assert_eq!(view.phase, "Failed");
    let retry = view.retry.expect("a failed tenant shows its next attempt");
    assert!(retry.attempts >= 1, "{retry:?}");

    loop {
        let t = platform
            .store
            .get_tenant(&id)
            .await
            .expect("read")
            .expect("tenant");
        if t.phase == Phase::Ready {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never settled: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(controller.passes() >= 2, "{}", controller.passes());
    let view = TenantView::load(&platform.store, &id)
        .await
        .expect("read")
        .expect("tenant");
    assert!(view.retry.is_none());
}
