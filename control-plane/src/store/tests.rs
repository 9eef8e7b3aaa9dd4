//! The state store's test suite. Every test in `both_backends!` runs once
//! against a fresh SQLite file and once against PostgreSQL, in a schema of
//! its own, when `LEDGERLAKE_TEST_DATABASE_URL` names a database (otherwise
//! the PostgreSQL variants say loudly that they were skipped).

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use sqlx::Connection as _;

use super::opening::{percent_encode_path, POSTGRES_MIGRATOR, SQLITE_MIGRATOR};
use super::*;

/// The PostgreSQL database the tests may create schemas in, e.g.
/// `postgres://ledgerlake:ledgerlake@localhost:5432/ledgerlake_test`.
const PG_ENV: &str = "LEDGERLAKE_TEST_DATABASE_URL";

struct TestDb {
    url: String,
    /// The SQLite file, or none on PostgreSQL.
    path: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
    /// (the database URL, the schema to drop afterwards)
    pg_schema: Option<(String, String)>,
}

impl TestDb {
    fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("state").join("ledgerlake.db");
        TestDb {
            url: format!("sqlite://{}", path.display()),
            path: Some(path),
            _dir: Some(dir),
            pg_schema: None,
        }
    }

    async fn postgres(test: &str) -> Option<TestDb> {
        let admin = match std::env::var(PG_ENV) {
            Ok(url) if !url.trim().is_empty() => url,
            _ => {
                // Written past the test harness's capture so it is always seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n!!! SKIPPED PostgreSQL store test {test}: {PG_ENV} is not set. \
                     Set it to a throwaway database, e.g. \
                     postgres://ledgerlake:ledgerlake@localhost:5432/ledgerlake_test !!!"
                );
                return None;
            }
        };
        let schema = format!("llt_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::postgres::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {PG_ENV}: {e}"));
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .expect("create the test schema");
        let _ = conn.close().await;
        let sep = if admin.contains('?') { '&' } else { '?' };
        Some(TestDb {
            url: format!("{admin}{sep}options=-c%20search_path%3D{schema}"),
            path: None,
            _dir: None,
            pg_schema: Some((admin, schema)),
        })
    }

    async fn open(&self) -> Store {
        Store::open(&self.url)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.url))
    }

    async fn cleanup(self) {
        if let Some((admin, schema)) = &self.pg_schema {
            if let Ok(mut conn) = sqlx::postgres::PgConnection::connect(admin).await {
                let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&mut conn)
                    .await;
                let _ = conn.close().await;
            }
        }
    }
}

/// Declares each listed `async fn(&TestDb)` as a SQLite and a PostgreSQL test.
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = super::TestDb::sqlite();
                    super::$name(&db).await;
                    db.cleanup().await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = super::TestDb::postgres(stringify!($name)).await else {
                        return;
                    };
                    super::$name(&db).await;
                    db.cleanup().await;
                }
            )+
        }
    };
}

both_backends!(
    opens_and_pings,
    want_tenant_is_idempotent,
    want_tenant_race_creates_once,
    deleting_tenant_is_refused,
    unknown_tenant_is_reported,
    set_phase_writes_only_changes,
    resource_status_upsert_and_transition_time,
    no_op_status_update_issues_no_write,
    attempts_count_per_generation,
    delete_tenant_removes_its_resources,
    resources_are_listed_in_a_stable_order,
    tenants_are_listed_by_id,
    audit_log_records_and_filters,
    lease_is_exclusive_renewable_and_releasable,
    expired_lease_is_taken_over,
    lease_race_has_one_winner,
    waiting_for_a_lease,
    reopen_keeps_data_and_migrates_once,
    concurrent_first_opens_succeed,
    schema_from_a_newer_version_is_refused,
    one_active_run_per_tenant,
    runs_move_from_queued_to_an_end_once,
    runs_are_listed_newest_first_and_outlive_their_tenant,
    schedules_are_kept_per_tenant,
);

fn tid(s: &str) -> TenantId {
    TenantId::parse(s).expect("a valid tenant id")
}

async fn pause() {
    // Timestamps have millisecond resolution.
    tokio::time::sleep(Duration::from_millis(5)).await;
}

// ----- the shared suite ------------------------------------------------------------

async fn opens_and_pings(db: &TestDb) {
    let store = db.open().await;
    store.ping().await.expect("ping");
    let expected = if db.path.is_some() {
        Backend::Sqlite
    } else {
        Backend::Postgres
    };
    assert_eq!(store.backend(), expected);
    assert!(!store.location().contains("ledgerlake:ledgerlake@"));
    assert!(store.list_tenants().await.expect("list").is_empty());
}

async fn want_tenant_is_idempotent(db: &TestDb) {
    let store = db.open().await;
    let id = tid("acme");
    let (first, created) = store.want_tenant(&id).await.expect("want");
    assert!(created);
    assert_eq!(first.id, id);
    assert_eq!(first.desired, Desired::Present);
    assert_eq!(first.generation, 1);
    assert_eq!(first.phase, Phase::Pending);
    assert!(!first.keep_data);
    assert_eq!(first.message, None);
    assert_eq!(first.created_at, first.updated_at);

    pause().await;
    let (again, created) = store.want_tenant(&id).await.expect("want again");
    assert!(!created);
    assert_eq!(again, first, "an existing tenant is returned unchanged");
    assert_eq!(store.get_tenant(&id).await.expect("get"), Some(first));
    assert_eq!(store.list_tenants().await.expect("list").len(), 1);
}

async fn want_tenant_race_creates_once(db: &TestDb) {
    // Two pools stand for two processes.
    let a = db.open().await;
    let b = db.open().await;
    for n in 0..10 {
        let id = tid(&format!("race-{n}"));
        let (ra, rb) = tokio::join!(
            tokio::spawn({
                let (a, id) = (a.clone(), id.clone());
                async move { a.want_tenant(&id).await }
            }),
            tokio::spawn({
                let (b, id) = (b.clone(), id.clone());
                async move { b.want_tenant(&id).await }
            }),
        );
        let (ta, ca) = ra.expect("task a").expect("want a");
        let (tb, cb) = rb.expect("task b").expect("want b");
        assert!(ca ^ cb, "exactly one creates {id}: {ca} {cb}");
        assert_eq!(ta, tb);
    }
    assert_eq!(a.list_tenants().await.expect("list").len(), 10);
}

async fn deleting_tenant_is_refused(db: &TestDb) {
    let store = db.open().await;
    let id = tid("gone");
    let (t, _) = store.want_tenant(&id).await.expect("want");
    store
        .set_phase(&id, Phase::Ready, Some("all good"))
        .await
        .expect("ready");

    pause().await;
    let d = store.mark_deleting(&id, false).await.expect("mark");
    assert_eq!(d.desired, Desired::Absent);
    assert_eq!(d.phase, Phase::Deleting);
    assert_eq!(d.generation, t.generation + 1);
    assert!(!d.keep_data);
    assert_eq!(d.message, None, "the Ready message no longer applies");
    assert!(d.updated_at > t.updated_at);

    match store.want_tenant(&id).await {
        Err(StoreError::TenantDeleting(got)) => assert_eq!(got, id),
        other => panic!("expected TenantDeleting, got {other:?}"),
    }

    // Marking again does not bump the generation, but may change keep_data.
    pause().await;
    let d2 = store.mark_deleting(&id, true).await.expect("mark again");
    assert_eq!(d2.generation, d.generation);
    assert!(d2.keep_data);
    pause().await;
    let d3 = store
        .mark_deleting(&id, true)
        .await
        .expect("mark a third time");
    assert_eq!(d3, d2, "an unchanged mark writes nothing");

    // A teardown that failed can be restarted.
    store
        .set_phase(&id, Phase::Failed, Some("bucket not empty"))
        .await
        .expect("fail");
    let d4 = store.mark_deleting(&id, true).await.expect("restart");
    assert_eq!(d4.phase, Phase::Deleting);
    assert_eq!(d4.generation, d.generation);
}

async fn unknown_tenant_is_reported(db: &TestDb) {
    let store = db.open().await;
    let id = tid("nobody");
    assert!(matches!(
        store.mark_deleting(&id, false).await,
        Err(StoreError::TenantNotFound(ref got)) if *got == id
    ));
    assert!(matches!(
        store.set_phase(&id, Phase::Ready, None).await,
        Err(StoreError::TenantNotFound(_))
    ));
    assert!(matches!(
        store.record_attempt(&id, "bucket", "b", 1).await,
        Err(StoreError::TenantNotFound(_))
    ));
    assert!(matches!(
        store
            .set_resource_status(&id, "bucket", "b", ResourceStatus::Ready, None, None, 1)
            .await,
        Err(StoreError::TenantNotFound(_))
    ));
    assert_eq!(store.get_tenant(&id).await.expect("get"), None);
    assert!(store.list_resources(&id).await.expect("list").is_empty());
    assert!(!store.delete_tenant(&id).await.expect("delete"));
    let msg = StoreError::TenantNotFound(id).to_string();
    assert_eq!(msg, "tenant nobody not found");
}

async fn set_phase_writes_only_changes(db: &TestDb) {
    let store = db.open().await;
    let id = tid("phases");
    let (t, _) = store.want_tenant(&id).await.expect("want");
    pause().await;
    assert!(store
        .set_phase(&id, Phase::Provisioning, None)
        .await
        .expect("set"));
    let p = store.get_tenant(&id).await.expect("get").expect("exists");
    assert_eq!(p.phase, Phase::Provisioning);
    assert!(p.updated_at > t.updated_at);
    assert_eq!(p.created_at, t.created_at);

    pause().await;
    assert!(!store
        .set_phase(&id, Phase::Provisioning, None)
        .await
        .expect("set same"));
    let same = store.get_tenant(&id).await.expect("get").expect("exists");
    assert_eq!(same.updated_at, p.updated_at, "no change, no touch");

    assert!(store
        .set_phase(&id, Phase::Failed, Some("quota exceeded"))
        .await
        .expect("fail"));
    let f = store.get_tenant(&id).await.expect("get").expect("exists");
    assert_eq!(f.phase, Phase::Failed);
    assert_eq!(f.message.as_deref(), Some("quota exceeded"));
    assert_eq!(f.generation, 1, "the phase is not the desired state");
}

async fn resource_status_upsert_and_transition_time(db: &TestDb) {
    let store = db.open().await;
    let id = tid("res");
    store.want_tenant(&id).await.expect("want");
    let bucket = "client-res-bucket";

    assert!(store
        .set_resource_status(
            &id,
            "bucket",
            bucket,
            ResourceStatus::Pending,
            Some("creating"),
            None,
            1
        )
        .await
        .expect("insert"));
    let list = store.list_resources(&id).await.expect("list");
    assert_eq!(list.len(), 1);
    let r0 = list[0].clone();
    assert_eq!(r0.kind, "bucket");
    assert_eq!(r0.name, bucket);
    assert_eq!(r0.status, ResourceStatus::Pending);
    assert_eq!(r0.message.as_deref(), Some("creating"));
    assert_eq!(r0.observed_generation, 1);
    assert_eq!(r0.attempts, 0);
    assert_eq!(r0.last_error, None);

    pause().await;
    assert!(!store
        .set_resource_status(
            &id,
            "bucket",
            bucket,
            ResourceStatus::Pending,
            Some("creating"),
            None,
            1
        )
        .await
        .expect("same again"));
    assert_eq!(
        store
            .get_resource(&id, "bucket", bucket)
            .await
            .expect("get"),
        Some(r0.clone())
    );

    // Same status, new message: changed, but no transition.
    pause().await;
    assert!(store
        .set_resource_status(
            &id,
            "bucket",
            bucket,
            ResourceStatus::Pending,
            Some("still creating"),
            Some("rate limited"),
            1
        )
        .await
        .expect("message"));
    let r1 = store
        .get_resource(&id, "bucket", bucket)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(r1.message.as_deref(), Some("still creating"));
    assert_eq!(r1.last_error.as_deref(), Some("rate limited"));
    assert_eq!(r1.last_transition, r0.last_transition);

    // New status: a transition.
    pause().await;
    assert!(store
        .set_resource_status(&id, "bucket", bucket, ResourceStatus::Ready, None, None, 1)
        .await
        .expect("ready"));
    let r2 = store
        .get_resource(&id, "bucket", bucket)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(r2.status, ResourceStatus::Ready);
    assert_eq!(r2.message, None);
    assert_eq!(r2.last_error, None);
    assert!(r2.last_transition > r1.last_transition);

    // A new generation observed without a status change: no transition.
    pause().await;
    assert!(store
        .set_resource_status(&id, "bucket", bucket, ResourceStatus::Ready, None, None, 2)
        .await
        .expect("observe 2"));
    let r3 = store
        .get_resource(&id, "bucket", bucket)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(r3.observed_generation, 2);
    assert_eq!(r3.last_transition, r2.last_transition);

    assert!(store
        .set_resource_status(
            &id,
            "bucket",
            bucket,
            ResourceStatus::Failed,
            Some("permission denied"),
            Some("403 on storage.buckets.create"),
            2
        )
        .await
        .expect("failed"));
    let r4 = store
        .get_resource(&id, "bucket", bucket)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(r4.status, ResourceStatus::Failed);
    assert_eq!(
        r4.last_error.as_deref(),
        Some("403 on storage.buckets.create")
    );
}

async fn no_op_status_update_issues_no_write(db: &TestDb) {
    let store = db.open().await;
    let id = tid("quiet");
    store.want_tenant(&id).await.expect("want");
    store
        .set_phase(&id, Phase::Ready, None)
        .await
        .expect("ready");
    store
        .set_resource_status(&id, "bucket", "b", ResourceStatus::Ready, None, None, 1)
        .await
        .expect("insert");

    // Another "process" holds a write lock on the row (PostgreSQL) or the
    // whole database (SQLite). A call that writes would wait for it.
    let blocker = db.open().await;
    let mut tx = blocker.pool.begin().await.expect("begin");
    sqlx::query("UPDATE resources SET attempts = attempts WHERE tenant_id = $1")
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .expect("lock");
    sqlx::query("UPDATE tenants SET generation = generation WHERE id = $1")
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .expect("lock");

    let quick = Duration::from_secs(3);
    let no_op = tokio::time::timeout(
        quick,
        store.set_resource_status(&id, "bucket", "b", ResourceStatus::Ready, None, None, 1),
    )
    .await;
    assert!(
        matches!(no_op, Ok(Ok(false))),
        "a no-op status update must not write: {no_op:?}"
    );
    let no_op_phase = tokio::time::timeout(quick, store.set_phase(&id, Phase::Ready, None)).await;
    assert!(
        matches!(no_op_phase, Ok(Ok(false))),
        "a no-op phase update must not write: {no_op_phase:?}"
    );

    // A timed reconcile-style pass over many unchanged resources.
    let started = std::time::Instant::now();
    for _ in 0..200 {
        let changed = store
            .set_resource_status(&id, "bucket", "b", ResourceStatus::Ready, None, None, 1)
            .await
            .expect("no-op");
        assert!(!changed);
    }
    assert!(
        started.elapsed() < quick,
        "200 no-op updates took {:?}",
        started.elapsed()
    );

    // The blocker really blocks writes (otherwise this test proves nothing).
    // The abandoned write may still land once the lock goes, so this is last.
    let write = tokio::time::timeout(
        Duration::from_millis(300),
        store.set_resource_status(&id, "bucket", "b", ResourceStatus::Failed, None, None, 1),
    )
    .await;
    assert!(write.is_err(), "a real write should wait: {write:?}");
    tx.rollback().await.expect("rollback");
}

async fn attempts_count_per_generation(db: &TestDb) {
    let store = db.open().await;
    let id = tid("tries");
    store.want_tenant(&id).await.expect("want");

    assert_eq!(
        store
            .record_attempt(&id, "dataset", "raw_tries", 1)
            .await
            .expect("attempt"),
        1
    );
    let r = store
        .get_resource(&id, "dataset", "raw_tries")
        .await
        .expect("get")
        .expect("created by the attempt");
    assert_eq!(r.status, ResourceStatus::Pending);
    assert_eq!(r.attempts, 1);
    assert_eq!(r.observed_generation, 0);

    assert_eq!(
        store
            .record_attempt(&id, "dataset", "raw_tries", 1)
            .await
            .expect("attempt"),
        2
    );
    store
        .set_resource_status(
            &id,
            "dataset",
            "raw_tries",
            ResourceStatus::Failed,
            Some("transient"),
            Some("503"),
            1,
        )
        .await
        .expect("fail");
    assert_eq!(
        store
            .record_attempt(&id, "dataset", "raw_tries", 1)
            .await
            .expect("attempt"),
        3
    );
    let r = store
        .get_resource(&id, "dataset", "raw_tries")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(r.attempts, 3);
    assert_eq!(
        r.status,
        ResourceStatus::Failed,
        "an attempt leaves the status alone"
    );
    assert_eq!(r.last_error.as_deref(), Some("503"));

    // A new generation starts counting again.
    assert_eq!(
        store
            .record_attempt(&id, "dataset", "raw_tries", 2)
            .await
            .expect("attempt"),
        1
    );
    // Other resources count on their own.
    assert_eq!(
        store
            .record_attempt(&id, "dataset", "transformed_tries", 2)
            .await
            .expect("attempt"),
        1
    );
}

async fn delete_tenant_removes_its_resources(db: &TestDb) {
    let store = db.open().await;
    let (a, b) = (tid("tenant-a"), tid("tenant-b"));
    for id in [&a, &b] {
        store.want_tenant(id).await.expect("want");
        for kind in ["bucket", "dataset", "secret"] {
            store
                .set_resource_status(id, kind, id.as_str(), ResourceStatus::Ready, None, None, 1)
                .await
                .expect("resource");
        }
    }
    assert!(store
        .delete_resource(&a, "secret", a.as_str())
        .await
        .expect("delete one"));
    assert!(!store
        .delete_resource(&a, "secret", a.as_str())
        .await
        .expect("delete again"));
    assert_eq!(store.list_resources(&a).await.expect("list").len(), 2);

    assert!(store.delete_tenant(&a).await.expect("delete"));
    assert_eq!(store.get_tenant(&a).await.expect("get"), None);
    assert!(store.list_resources(&a).await.expect("list").is_empty());
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM resources WHERE tenant_id = $1")
        .bind(a.as_str())
        .fetch_one(&store.pool)
        .await
        .expect("count");
    assert_eq!(left, 0);
    assert!(!store.delete_tenant(&a).await.expect("delete again"));

    assert!(store.get_tenant(&b).await.expect("get").is_some());
    assert_eq!(store.list_resources(&b).await.expect("list").len(), 3);

    // The id can be wanted again once gone.
    let (fresh, created) = store.want_tenant(&a).await.expect("want again");
    assert!(created);
    assert_eq!(fresh.generation, 1);
}

async fn resources_are_listed_in_a_stable_order(db: &TestDb) {
    let store = db.open().await;
    let id = tid("order");
    store.want_tenant(&id).await.expect("want");
    for (kind, name) in [
        ("service_account", "client-order-sa"),
        ("bucket", "client-order-bucket"),
        ("dataset", "transformed_order"),
        ("dataset", "raw_order"),
    ] {
        store
            .record_attempt(&id, kind, name, 1)
            .await
            .expect("attempt");
        pause().await;
    }
    let names = |list: Vec<ResourceRecord>| -> Vec<String> {
        list.into_iter()
            .map(|r| format!("{}/{}", r.kind, r.name))
            .collect()
    };
    let first = names(store.list_resources(&id).await.expect("list"));
    assert_eq!(
        first,
        [
            "service_account/client-order-sa",
            "bucket/client-order-bucket",
            "dataset/transformed_order",
            "dataset/raw_order"
        ],
        "in the order first recorded"
    );
    // Updates do not reorder.
    store
        .set_resource_status(
            &id,
            "service_account",
            "client-order-sa",
            ResourceStatus::Ready,
            None,
            None,
            1,
        )
        .await
        .expect("update");
    assert_eq!(names(store.list_resources(&id).await.expect("list")), first);
}

async fn tenants_are_listed_by_id(db: &TestDb) {
    let store = db.open().await;
    // Byte order on both backends, hyphens included.
    for id in ["b-b", "a-z", "az0", "a-b", "abc"] {
        store.want_tenant(&tid(id)).await.expect("want");
    }
    let ids: Vec<String> = store
        .list_tenants()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.id.to_string())
        .collect();
    assert_eq!(ids, ["a-b", "a-z", "abc", "az0", "b-b"]);
}

async fn audit_log_records_and_filters(db: &TestDb) {
    let store = db.open().await;
    let (a, b) = (tid("audited"), tid("other"));
    let d1 = serde_json::json!({"keep_data": true, "resources": ["bucket", "dataset"]});
    store
        .audit("operator:alice", "tenants.provision", Some(&a), &d1)
        .await
        .expect("audit");
    store
        .audit("operator:bob", "tokens.issue", None, &serde_json::json!({}))
        .await
        .expect("audit");
    store
        .audit(
            "operator:alice",
            "tenants.teardown",
            Some(&a),
            &serde_json::json!({"note": "ünïcode \"quoted\""}),
        )
        .await
        .expect("audit");
    store
        .audit(
            "system",
            "tenants.provision",
            Some(&b),
            &serde_json::Value::Null,
        )
        .await
        .expect("audit");

    let all = store.list_audit(None, 100).await.expect("list");
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert!(all.windows(2).all(|w| w[0].at >= w[1].at));
    assert_eq!(all[0].tenant, Some(b.clone()));
    assert_eq!(all[2].actor, "operator:bob");
    assert_eq!(all[2].tenant, None);

    let for_a = store.list_audit(Some(&a), 100).await.expect("list a");
    assert_eq!(
        for_a.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["tenants.teardown", "tenants.provision"]
    );
    assert_eq!(for_a[1].detail, d1);
    assert_eq!(for_a[0].detail["note"], "ünïcode \"quoted\"");

    let latest = store.list_audit(None, 1).await.expect("limit");
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].id, all[0].id);
    assert!(store.list_audit(None, 0).await.expect("zero").is_empty());
    assert!(store
        .list_audit(None, -5)
        .await
        .expect("negative")
        .is_empty());

    // The audit trail outlives the tenant.
    store.want_tenant(&a).await.expect("want");
    store.delete_tenant(&a).await.expect("delete");
    assert_eq!(store.list_audit(Some(&a), 10).await.expect("list").len(), 2);
}

async fn lease_is_exclusive_renewable_and_releasable(db: &TestDb) {
    let store = db.open().await;
    let ttl = Duration::from_secs(30);
    assert!(store
        .try_acquire_lease("tenant/acme", "proc-a", ttl)
        .await
        .expect("a"));
    assert!(!store
        .try_acquire_lease("tenant/acme", "proc-b", ttl)
        .await
        .expect("b"));
    // The holder renews.
    assert!(store
        .try_acquire_lease("tenant/acme", "proc-a", ttl)
        .await
        .expect("renew"));
    // Other leases are independent.
    assert!(store
        .try_acquire_lease("tenant/other", "proc-b", ttl)
        .await
        .expect("other"));
    // Only the holder releases.
    assert!(!store
        .release_lease("tenant/acme", "proc-b")
        .await
        .expect("wrong holder"));
    assert!(!store
        .try_acquire_lease("tenant/acme", "proc-b", ttl)
        .await
        .expect("still held"));
    assert!(store
        .release_lease("tenant/acme", "proc-a")
        .await
        .expect("release"));
    assert!(!store
        .release_lease("tenant/acme", "proc-a")
        .await
        .expect("release twice"));
    assert!(store
        .try_acquire_lease("tenant/acme", "proc-b", ttl)
        .await
        .expect("free now"));
}

async fn expired_lease_is_taken_over(db: &TestDb) {
    let store = db.open().await;
    // Long enough that a loaded machine still asks again before it expires.
    assert!(store
        .try_acquire_lease("tenant/x", "crashed", Duration::from_secs(1))
        .await
        .expect("a"));
    assert!(!store
        .try_acquire_lease("tenant/x", "next", Duration::from_secs(30))
        .await
        .expect("not yet"));
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(store
        .try_acquire_lease("tenant/x", "next", Duration::from_secs(30))
        .await
        .expect("expired"));
    // The old holder has lost it and cannot release the new holder's lease.
    assert!(!store
        .try_acquire_lease("tenant/x", "crashed", Duration::from_secs(30))
        .await
        .expect("lost"));
    assert!(!store
        .release_lease("tenant/x", "crashed")
        .await
        .expect("release"));
}

async fn lease_race_has_one_winner(db: &TestDb) {
    let stores = [db.open().await, db.open().await];
    for round in 0..5 {
        let name = format!("tenant/race-{round}");
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = stores[i % 2].clone();
                let name = name.clone();
                tokio::spawn(async move {
                    store
                        .try_acquire_lease(&name, &format!("holder-{i}"), Duration::from_secs(30))
                        .await
                })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            if t.await.expect("task").expect("acquire") {
                winners += 1;
            }
        }
        assert_eq!(winners, 1, "round {round}");
    }
}

async fn waiting_for_a_lease(db: &TestDb) {
    let store = db.open().await;
    assert!(store
        .try_acquire_lease("tenant/w", "first", Duration::from_millis(200))
        .await
        .expect("first"));
    let started = std::time::Instant::now();
    assert!(!store
        .acquire_lease_waiting(
            "tenant/w",
            "second",
            Duration::from_secs(30),
            Duration::from_millis(60)
        )
        .await
        .expect("gives up"));
    assert!(started.elapsed() >= Duration::from_millis(60));
    assert!(store
        .acquire_lease_waiting(
            "tenant/w",
            "second",
            Duration::from_secs(30),
            Duration::from_secs(5)
        )
        .await
        .expect("waits for expiry"));
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(started.elapsed() < Duration::from_secs(4));
    // Released leases are taken at once.
    assert!(store
        .release_lease("tenant/w", "second")
        .await
        .expect("release"));
    assert!(store
        .acquire_lease_waiting("tenant/w", "third", Duration::from_secs(30), Duration::ZERO)
        .await
        .expect("free"));
    // A wait past what an Instant holds is a wait like any other (a
    // deadline computed from it once panicked).
    assert!(store
        .acquire_lease_waiting(
            "tenant/max",
            "first",
            Duration::from_secs(30),
            Duration::MAX
        )
        .await
        .expect("free"));
}

async fn reopen_keeps_data_and_migrates_once(db: &TestDb) {
    let store = db.open().await;
    let id = tid("durable");
    store.want_tenant(&id).await.expect("want");
    store
        .record_attempt(&id, "bucket", "b", 1)
        .await
        .expect("attempt");
    store.close().await;

    for _ in 0..2 {
        let store = db.open().await;
        let t = store.get_tenant(&id).await.expect("get").expect("kept");
        assert_eq!(t.phase, Phase::Pending);
        assert_eq!(store.list_resources(&id).await.expect("list").len(), 1);
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&store.pool)
            .await
            .expect("count");
        let known = match store.backend() {
            Backend::Sqlite => SQLITE_MIGRATOR.iter().count(),
            Backend::Postgres => POSTGRES_MIGRATOR.iter().count(),
        };
        assert_eq!(applied, i64::try_from(known).expect("small"));
        store.close().await;
    }
}

async fn concurrent_first_opens_succeed(db: &TestDb) {
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { Store::open(&url).await })
        })
        .collect();
    for o in opens {
        let store = o.await.expect("task").expect("open");
        store.ping().await.expect("ping");
    }
}

async fn schema_from_a_newer_version_is_refused(db: &TestDb) {
    let store = db.open().await;
    store.want_tenant(&tid("kept")).await.expect("want");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99999, 'from the future', TRUE, $1, 0)",
    )
    .bind(vec![0u8; 48])
    .execute(&store.pool)
    .await
    .expect("fake a newer migration");
    store.close().await;

    match Store::open(&db.url).await {
        Err(e @ StoreError::Migrate { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("99999"), "{msg}");
            assert!(msg.contains("newer version"), "{msg}");
        }
        Err(e) => panic!("expected a migration error, got {e:?}"),
        Ok(_) => panic!("opened a store with an unknown migration"),
    }
    // Nothing was lost: with the marker gone it opens again, data intact.
    let mut conn = sqlx::AnyConnection::connect(&db.url)
        .await
        .expect("connect");
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 99999")
        .execute(&mut conn)
        .await
        .expect("remove the marker");
    let _ = conn.close().await;
    let store = db.open().await;
    assert!(store.get_tenant(&tid("kept")).await.expect("get").is_some());
}

// ----- SQLite only ------------------------------------------------------------------

fn snapshot_dir(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let e = e.expect("entry");
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    files
}

fn expect_refused(result: Result<Store, StoreError>, path: &std::path::Path) -> String {
    match result {
        Err(e @ StoreError::NotAStateStore { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains("nothing was changed"), "{msg}");
            msg
        }
        Err(e) => panic!("expected NotAStateStore, got {e:?}"),
        Ok(_) => panic!("a bad state file was opened"),
    }
}

#[tokio::test]
async fn sqlite_garbage_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let garbage: Vec<u8> = b"this is not a database, it is a shopping list\n"
        .iter()
        .copied()
        .cycle()
        .take(8192)
        .collect();
    std::fs::write(&path, &garbage).expect("write garbage");
    let before = snapshot_dir(dir.path());

    let msg = expect_refused(
        Store::open(&format!("sqlite://{}", path.display())).await,
        &path,
    );
    assert!(msg.contains("not a SQLite database"), "{msg}");
    assert_eq!(snapshot_dir(dir.path()), before, "no byte or file changed");
    assert_eq!(std::fs::read(&path).expect("read"), garbage);
}

#[tokio::test]
async fn sqlite_short_garbage_and_directories_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tiny.db");
    std::fs::write(&path, b"SQLite").expect("write");
    expect_refused(
        Store::open(&format!("sqlite://{}", path.display())).await,
        &path,
    );
    assert_eq!(std::fs::read(&path).expect("read"), b"SQLite");

    let sub = dir.path().join("a-directory");
    std::fs::create_dir(&sub).expect("mkdir");
    expect_refused(
        Store::open(&format!("sqlite://{}", sub.display())).await,
        &sub,
    );
}

#[tokio::test]
async fn sqlite_file_with_corrupt_pages_is_refused_and_left_untouched() {
    let db = TestDb::sqlite();
    let path = db.path.clone().expect("sqlite");
    let store = db.open().await;
    for n in 0..50 {
        let id = tid(&format!("corrupt-{n}"));
        store.want_tenant(&id).await.expect("want");
        store
            .audit(
                "t",
                "fill",
                Some(&id),
                &serde_json::json!({"pad": "x".repeat(200)}),
            )
            .await
            .expect("audit");
    }
    // Move everything from the WAL into the main file, then drop the
    // (now empty) WAL side files so that only the main file matters.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&store.pool)
        .await
        .expect("checkpoint");
    store.close().await;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.clone().into_os_string();
        side.push(suffix);
        let _ = std::fs::remove_file(side);
    }
    let mut bytes = std::fs::read(&path).expect("read");
    assert!(bytes.len() > 8192, "several pages: {}", bytes.len());
    // Keep the 100-byte header; scribble over everything after it.
    for (i, b) in bytes.iter_mut().enumerate().skip(100) {
        *b = (i % 251) as u8;
    }
    std::fs::write(&path, &bytes).expect("corrupt");
    let dir = path.parent().expect("parent");
    let before = snapshot_dir(dir);

    expect_refused(Store::open(&db.url).await, &path);
    assert_eq!(snapshot_dir(dir), before, "no byte or file changed");
}

#[tokio::test]
async fn sqlite_database_of_something_else_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("other.db");
    let mut conn =
        sqlx::sqlite::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .expect("create other db");
    sqlx::query("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        .execute(&mut conn)
        .await
        .expect("create table");
    conn.close().await.expect("close");
    let before = snapshot_dir(dir.path());

    let msg = expect_refused(
        Store::open(&format!("sqlite://{}", path.display())).await,
        &path,
    );
    assert!(msg.contains("customers"), "{msg}");
    assert_eq!(snapshot_dir(dir.path()), before);
}

#[tokio::test]
async fn sqlite_empty_file_becomes_a_store_with_wal_and_foreign_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").expect("touch");
    let store = Store::open(&format!("sqlite:{}", path.display()))
        .await
        .expect("an empty file is an empty database");
    let mut conn = store.pool.acquire().await.expect("conn");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut *conn)
        .await
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&mut *conn)
        .await
        .expect("synchronous");
    assert_eq!(sync, 1, "NORMAL");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&mut *conn)
        .await
        .expect("foreign_keys");
    assert_eq!(fk, 1);
    let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(&mut *conn)
        .await
        .expect("busy_timeout");
    assert_eq!(busy, 10_000);
}

#[tokio::test]
async fn sqlite_paths_with_odd_characters_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a dir #1").join("state 100%.db");
    let url = format!(
        "sqlite://{}",
        percent_encode_path(path.to_str().expect("utf-8"))
    );
    let store = Store::open(&url).await.expect("open");
    store.want_tenant(&tid("odd")).await.expect("want");
    assert!(path.is_file(), "created at the decoded path");
    assert_eq!(store.location(), path.display().to_string());
}

#[tokio::test]
async fn bad_urls_are_refused() {
    for url in ["mysql://root@localhost/x", "sqlite::memory:", ""] {
        assert!(
            matches!(Store::open(url).await, Err(StoreError::InvalidUrl { .. })),
            "{url}"
        );
    }
}

#[tokio::test]
async fn unreachable_postgres_is_a_connect_error_without_the_password() {
    // Port 1 on localhost: nothing listens there.
    let result = Store::open("postgres://ll:topsecret@127.0.0.1:1/ll").await;
    match result {
        Err(e @ StoreError::Connect { .. }) => {
            let msg = e.to_string();
            assert!(!msg.contains("topsecret"), "{msg}");
            assert!(msg.contains("127.0.0.1:1"), "{msg}");
        }
        Err(e) => panic!("expected a connect error, got {e:?}"),
        Ok(_) => panic!("connected to nothing"),
    }
}

async fn one_active_run_per_tenant(db: &TestDb) {
    let store = db.open().await;
    let (a, b) = (tid("alpha"), tid("bravo"));
    for t in [&a, &b] {
        store.want_tenant(t).await.expect("want");
    }
    let first = store
        .create_run(&a, RunCommand::Sync, RunTrigger::Operator)
        .await
        .expect("first");
    assert_eq!(first.status, RunStatus::Queued);
    match store
        .create_run(&a, RunCommand::Ingest, RunTrigger::Schedule)
        .await
    {
        Err(StoreError::RunActive { tenant, run }) => {
            assert_eq!(tenant, a);
            assert_eq!(run, first.id);
        }
        other => panic!("expected RunActive, got {other:?}"),
    }
    // Another tenant is not affected, and an unknown tenant is reported.
    store
        .create_run(&b, RunCommand::Ingest, RunTrigger::Api)
        .await
        .expect("other tenant");
    assert!(matches!(
        store
            .create_run(&tid("nobody"), RunCommand::Sync, RunTrigger::Api)
            .await,
        Err(StoreError::TenantNotFound(_))
    ));
    // Once the first ends, a new run may start; many racing starts give one.
    store
        .finish_run(&first.id, RunStatus::Succeeded, None, None)
        .await
        .expect("finish");
    let racers = (0..8).map(|_| store.create_run(&a, RunCommand::Sync, RunTrigger::Schedule));
    let results = futures::future::join_all(racers).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, StoreError::RunActive { .. })));
}

async fn runs_move_from_queued_to_an_end_once(db: &TestDb) {
    let store = db.open().await;
    let t = tid("alpha");
    store.want_tenant(&t).await.expect("want");
    let run = store
        .create_run(&t, RunCommand::Ingest, RunTrigger::Webhook)
        .await
        .expect("run");
    store
        .mark_run_running(&run.id, "ingest-alpha", "exec-1")
        .await
        .expect("running");
    let running = store.get_run(&run.id).await.expect("get").expect("exists");
    assert_eq!(running.status, RunStatus::Running);
    assert_eq!(running.execution_id.as_deref(), Some("exec-1"));
    assert!(running.started_at.is_some());
    let summary =
        serde_json::json!({"ingest": {"resources": {"Invoices": {"records": 3, "pages": 1}}}});
    assert!(store
        .finish_run(
            &run.id,
            RunStatus::Partial,
            Some("day limit"),
            Some(&summary)
        )
        .await
        .expect("finish"));
    // A second end (another process following the same run) changes nothing.
    assert!(!store
        .finish_run(&run.id, RunStatus::Failed, Some("late"), None)
        .await
        .expect("again"));
    let ended = store.get_run(&run.id).await.expect("get").expect("exists");
    assert_eq!(ended.status, RunStatus::Partial);
    assert_eq!(ended.message.as_deref(), Some("day limit"));
    assert_eq!(ended.summary, Some(summary));
    assert!(ended.finished_at.is_some());
    assert!(store.active_run(&t).await.expect("active").is_none());
    assert!(matches!(
        store
            .mark_run_running(&run.id, "ingest-alpha", "exec-2")
            .await,
        Err(StoreError::RunNotFound(_))
    ));
}

async fn runs_are_listed_newest_first_and_outlive_their_tenant(db: &TestDb) {
    let store = db.open().await;
    let (a, b) = (tid("alpha"), tid("bravo"));
    let mut ids = Vec::new();
    for t in [&a, &b] {
        store.want_tenant(t).await.expect("want");
    }
    for t in [&a, &b, &a] {
        let r = store
            .create_run(t, RunCommand::Transform, RunTrigger::Operator)
            .await
            .expect("run");
        store
            .finish_run(&r.id, RunStatus::Succeeded, None, None)
            .await
            .expect("finish");
        ids.push(r.id);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let all: Vec<String> = store
        .list_runs(None, 10)
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(all, [ids[2].clone(), ids[1].clone(), ids[0].clone()]);
    let of_a = store.list_runs(Some(&a), 1).await.expect("list a");
    assert_eq!(of_a.len(), 1);
    assert_eq!(of_a[0].id, ids[2]);
    store.mark_deleting(&a, false).await.expect("deleting");
    store.delete_tenant(&a).await.expect("delete");
    // Like the audit log, the runs stay (a teardown's cancelled run among
    // them); a deleted tenant gets no new one.
    let left: Vec<TenantId> = store
        .list_runs(None, 10)
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.tenant)
        .collect();
    assert_eq!(left, [a.clone(), b, a.clone()]);
    assert_eq!(
        store.list_runs(Some(&a), 10).await.expect("list a").len(),
        2
    );
    assert!(matches!(
        store
            .create_run(&a, RunCommand::Sync, RunTrigger::Operator)
            .await,
        Err(StoreError::TenantNotFound(_))
    ));
}

async fn schedules_are_kept_per_tenant(db: &TestDb) {
    let store = db.open().await;
    let (a, b) = (tid("alpha"), tid("bravo"));
    for t in [&a, &b] {
        store.want_tenant(t).await.expect("want");
    }
    store
        .set_schedule(&a, Some("0 */6 * * *"))
        .await
        .expect("set");
    store
        .set_next_run_at(&b, 1_700_000_000_000)
        .await
        .expect("next");
    let schedules = store.schedules().await.expect("schedules");
    assert_eq!(
        schedules,
        [
            (a.clone(), Some("0 */6 * * *".to_owned()), None),
            (b.clone(), None, Some(1_700_000_000_000)),
        ]
    );
    assert!(matches!(
        store.set_schedule(&tid("nobody"), None).await,
        Err(StoreError::TenantNotFound(_))
    ));
}
