//! What lets one control plane hold 10,000 tenants, on SQLite and on
//! PostgreSQL (when `LEDGERLAKE_TEST_DATABASE_URL` names a server): tenant
//! pages that follow a stable cursor (in the store, the service and
//! `GET /v1/tenants`), a scheduler tick that reads only the due tenants, the
//! token keep-alive's scan in one query, a `reconcile --all` that reads
//! tenants by page, and runs and audit rows pruned after their retention.

mod support;

use support::backends::Env;

use cloud::naming::TenantId;
use control_plane::server::{self, ServeConfig};
use control_plane::service;
use control_plane::store::{
    DueCursor, Phase, ResourceStatus, Retention, RunCommand, RunStatus, RunTrigger, Store,
    PRUNE_BATCH,
};
use serde_json::Value;

const OPERATOR_TOKEN: &str = "operator-token-for-the-scale-tests-0123";

impl Env {
    /// A plain connection pool on the same database, for seeding rows the
    /// store's API would take long to write.
    async fn raw(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        let url = self.url();
        sqlx::AnyPool::connect(&url).await.expect("raw pool")
    }
}

both_backends!(
    tenant_pages_follow_a_stable_cursor,
    the_api_lists_tenants_by_page,
    the_tick_reads_only_the_due_tenants,
    the_keepalive_scan_finds_connected_tenants_in_one_query,
    reconcile_all_reads_tenants_by_page,
    runs_and_audit_rows_are_pruned_after_their_retention,
);

fn tid(s: &str) -> TenantId {
    TenantId::parse(s).expect("tenant id")
}

fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).expect("now")
}

/// Tenants t000..t{n-1}, each with one Ready resource; t003 connected to a
/// Xero organisation, t004 needing consent (when there are that many).
async fn seed_tenants(store: &Store, n: usize) {
    for i in 0..n {
        let id = tid(&format!("t{i:03}"));
        store.want_tenant(&id).await.expect("want");
        store
            .set_resource_status(
                &id,
                "bucket",
                &format!("b-{i:03}"),
                ResourceStatus::Ready,
                None,
                None,
                1,
            )
            .await
            .expect("resource");
    }
    if n < 5 {
        return;
    }
    store
        .record_connections(&tid("t003"), &[("org-3".to_owned(), None)])
        .await
        .expect("connect");
    store
        .mark_needs_consent(&tid("t004"))
        .await
        .expect("consent");
}

fn ids(page: &service::tenants::TenantListPage) -> Vec<String> {
    page.tenants.iter().map(|t| t.id.clone()).collect()
}

async fn tenant_pages_follow_a_stable_cursor(env: Env) {
    let store = env.store();
    seed_tenants(store, 25).await;

    let first = service::tenants::list_page(store, None, 10)
        .await
        .expect("page 1");
    assert_eq!(ids(&first).first().map(String::as_str), Some("t000"));
    assert_eq!(ids(&first).len(), 10);
    assert_eq!(first.next, Some(tid("t009")));
    // Each tenant comes with its own resources and Xero state.
    let t003 = &first.tenants[3];
    assert_eq!(t003.resources.len(), 1);
    assert_eq!(t003.resources[0].name, "b-003");
    assert_eq!(t003.xero.organisations, vec!["org-3".to_owned()]);
    assert!(!t003.xero.needs_consent);
    assert!(first.tenants[4].xero.needs_consent);
    assert!(first.tenants[5].xero.organisations.is_empty());

    // Tenants created before the cursor, or deleted, shift no later page.
    store.want_tenant(&tid("a-new")).await.expect("want");
    store.want_tenant(&tid("t0055")).await.expect("want");
    store.delete_tenant(&tid("t001")).await.expect("delete");
    let second = service::tenants::list_page(store, first.next.as_ref(), 10)
        .await
        .expect("page 2");
    let want: Vec<String> = (10..20).map(|i| format!("t{i:03}")).collect();
    assert_eq!(ids(&second), want);
    let third = service::tenants::list_page(store, second.next.as_ref(), 10)
        .await
        .expect("page 3");
    assert_eq!(ids(&third).len(), 5);
    assert_eq!(third.next, None, "the last page says so");

    // A page exactly as long as what is left is the last one too.
    let exact = service::tenants::list_page(store, Some(&tid("t014")), 10)
        .await
        .expect("exact");
    assert_eq!(ids(&exact).len(), 10);
    assert_eq!(exact.next, None);

    // Out of range limits are refused.
    for limit in [0, service::tenants::PAGE_MAX + 1] {
        assert!(service::tenants::list_page(store, None, limit)
            .await
            .is_err());
    }

    // Every tenant, read page by page.
    let all = service::tenants::list(store).await.expect("all");
    assert_eq!(all.len(), 26);
    assert_eq!(all[0].id, "a-new");
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
}

async fn the_api_lists_tenants_by_page(env: Env) {
    seed_tenants(env.store(), 25).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let base = format!("http://{addr}");
    let (state, workers) = server::start(
        env.platform.cloud.clone(),
        env.store().clone(),
        env.platform.reconciler(support::fast_settings()),
        ServeConfig {
            operator_token: Some(xero::secret::SecretString::new(OPERATOR_TOKEN)),
            ..ServeConfig::closed(addr, base.clone())
        },
    );
    let app = server::router(state);
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let get = |query: String| {
        http.get(format!("{base}/v1/tenants{query}"))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
    };

    let r = http
        .get(format!("{base}/v1/tenants"))
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), 401);

    // The default page holds them all; pages of 10 follow `next`.
    let body: Value = get(String::new())
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(body["tenants"].as_array().map(Vec::len), Some(25));
    assert_eq!(body["next"], Value::Null);
    assert_eq!(body["tenants"][3]["xero"]["organisations"][0], "org-3");
    assert_eq!(body["tenants"][3]["resources"][0]["name"], "b-003");

    let mut seen = Vec::new();
    let mut query = "?limit=10".to_owned();
    loop {
        let r = get(query.clone()).await.expect("page");
        assert_eq!(r.status(), 200);
        let page: Value = r.json().await.expect("json");
        for t in page["tenants"].as_array().expect("tenants") {
            seen.push(t["id"].as_str().expect("id").to_owned());
        }
        match page["next"].as_str() {
            Some(next) => query = format!("?limit=10&after={next}"),
            None => break,
        }
    }
    let want: Vec<String> = (0..25).map(|i| format!("t{i:03}")).collect();
    assert_eq!(seen, want);

    for bad in ["?limit=0", "?limit=1001", "?limit=ten", "?after=NOT_AN_ID"] {
        let r = get(bad.to_owned()).await.expect("bad");
        assert_eq!(r.status(), 400, "{bad}");
        let e: Value = r.json().await.expect("json error");
        assert!(e["code"].is_string(), "{bad}: {e}");
    }
    serving.abort();
    drop(workers);
}

async fn the_tick_reads_only_the_due_tenants(env: Env) {
    let store = env.store();
    seed_tenants(store, 20).await;
    let now = now_ms();
    // t000..t014 later, t015..t017 past (t017 the longest due), t018 and
    // t019 never computed; t016 being torn down.
    for i in 0..15 {
        store
            .set_next_run_at(&tid(&format!("t{i:03}")), now + 60_000)
            .await
            .expect("next");
    }
    for (i, ago) in [(15, 1_000), (16, 2_000), (17, 3_000)] {
        store
            .set_next_run_at(&tid(&format!("t{i:03}")), now - ago)
            .await
            .expect("next");
    }
    store
        .mark_deleting(&tid("t016"), false)
        .await
        .expect("delete");
    let due: Vec<String> = store
        .due_schedules(now, &DueCursor::Start, 100)
        .await
        .expect("due")
        .tenants
        .into_iter()
        .map(|d| d.tenant.to_string())
        .collect();
    assert_eq!(due, ["t018", "t019", "t017", "t015"]);
    // A page at a time, each starting where the last stopped, across the
    // never-scheduled tenants and the scheduled ones.
    let mut paged = Vec::new();
    let mut cursor = DueCursor::Start;
    loop {
        let page = store.due_schedules(now, &cursor, 1).await.expect("page");
        if page.tenants.is_empty() {
            break;
        }
        assert_eq!(page.tenants.len(), 1);
        paged.extend(page.tenants.iter().map(|d| d.tenant.to_string()));
        cursor = page.next;
    }
    assert_eq!(paged, due);
    assert_eq!(store.count_due(now).await.expect("count"), 4);

    // The tick starts nothing here (no tenant is Ready), and moves on the
    // schedules of the due tenants only.
    let runs = control_plane::runs::Runs::new(
        env.platform.clouds.clone(),
        store.clone(),
        None,
        Default::default(),
    );
    let at = time::OffsetDateTime::now_utc();
    let report = control_plane::scheduler::tick(&runs, &Default::default(), at)
        .await
        .expect("tick");
    assert!(report.started.is_empty());
    let skipped: Vec<&str> = report.skipped.iter().map(|s| s.tenant.as_str()).collect();
    assert_eq!(skipped, ["t018", "t019", "t017", "t015"]);
    let left = store
        .due_schedules(now_ms(), &DueCursor::Start, 100)
        .await
        .expect("due");
    assert!(left.tenants.is_empty(), "{left:?}");
    assert_eq!(store.count_due(now_ms()).await.expect("count"), 0);
}

async fn the_keepalive_scan_finds_connected_tenants_in_one_query(env: Env) {
    let store = env.store();
    seed_tenants(store, 8).await;
    for i in [1, 4, 5, 6] {
        store
            .record_connections(&tid(&format!("t{i:03}")), &[(format!("org-{i}"), None)])
            .await
            .expect("connect");
    }
    // t004 needed consent and connected again (which clears it); t005 now
    // needs it; t006 is being torn down.
    store
        .mark_needs_consent(&tid("t005"))
        .await
        .expect("consent");
    store
        .mark_deleting(&tid("t006"), false)
        .await
        .expect("delete");
    let found: Vec<String> = store
        .tenants_to_keep_alive()
        .await
        .expect("scan")
        .into_iter()
        .map(|t| t.id.to_string())
        .collect();
    assert_eq!(found, ["t001", "t003", "t004"]);
}

async fn reconcile_all_reads_tenants_by_page(env: Env) {
    // More tenants than a page: the pass reads two pages and reports each
    // tenant once. Recorded tenants need no cloud to be reported: the pass
    // provisions the Pending ones, so they are placed as Ready first.
    let store = env.store();
    let n = control_plane::reconciler::PASS_PAGE as usize + 3;
    let raw = env.raw().await;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         INSERT INTO tenants (id, desired, generation, phase, keep_data, message, created_at, updated_at) \
         SELECT 'p' || (10000 + i), 'absent', 1, 'Deleting', FALSE, NULL, 0, 0 FROM n",
    )
    .bind(n as i64)
    .execute(&raw)
    .await
    .expect("seed");
    raw.close().await;
    assert_eq!(store.list_tenants().await.expect("list").len(), n);
    // Each is torn down: nothing of them is in the cloud, so the pass ends
    // every one (the teardown of a tenant never provisioned is quick).
    let reconciler = support::reconciler(&env.platform);
    let reports = reconciler.reconcile_all().await.expect("pass");
    assert_eq!(reports.len(), n);
    let mut tenants: Vec<String> = reports
        .into_iter()
        .map(|r| r.expect("report").tenant.to_string())
        .collect();
    tenants.sort();
    tenants.dedup();
    assert_eq!(tenants.len(), n, "each tenant reported once");
    assert!(store.list_tenants().await.expect("list").is_empty());
}

async fn runs_and_audit_rows_are_pruned_after_their_retention(env: Env) {
    let store = env.store();
    seed_tenants(store, 3).await;
    let keep = Retention::default();
    let day = 86_400_000_i64;
    let now = now_ms();
    let old = now - 100 * day;
    let raw = env.raw().await;
    // More old ended runs than one batch, an old run still running, recent
    // ended runs; old and recent audit lines and questions.
    let many = PRUNE_BATCH * 2 + 7;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         INSERT INTO runs (id, tenant_id, command, trigger, status, created_at, started_at, finished_at) \
         SELECT 'run-old-' || i, 't000', 'sync', 'schedule', 'succeeded', $2, $2, $2 + i FROM n",
    )
    .bind(many)
    .bind(old)
    .execute(&raw)
    .await
    .expect("old runs");
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         INSERT INTO audit_log (at, actor, action, tenant_id, detail) \
         SELECT $2 + i, 'test', 'tenant.old', 't000', '{}' FROM n",
    )
    .bind(30_i64)
    .bind(now - 400 * day)
    .execute(&raw)
    .await
    .expect("old audit");
    sqlx::query(
        "INSERT INTO query_audit (id, tenant_id, actor, conversation_id, question, generator, \
         outcome, created_at) VALUES ('q-old', 't000', 'test', 'c', 'how much?', 'test', 'answered', $1)",
    )
    .bind(now - 400 * day)
    .execute(&raw)
    .await
    .expect("old question");
    sqlx::query(
        "INSERT INTO runs (id, tenant_id, command, trigger, status, created_at, started_at) \
         VALUES ('run-old-running', 't001', 'sync', 'schedule', 'running', $1, $1)",
    )
    .bind(old)
    .execute(&raw)
    .await
    .expect("old running run");
    raw.close().await;
    let recent = store
        .create_run(&tid("t002"), RunCommand::Sync, RunTrigger::Operator)
        .await
        .expect("run");
    assert!(store
        .finish_run(&recent.id, RunStatus::Succeeded, None, None)
        .await
        .expect("finish"));
    store
        .audit(
            "test",
            "tenant.recent",
            Some(&tid("t000")),
            &serde_json::json!({}),
        )
        .await
        .expect("audit");

    let pruned = store.prune_at(&keep, now).await.expect("prune");
    assert_eq!(pruned.runs, many as u64, "{pruned:?}");
    assert_eq!(pruned.audit_log, 30);
    assert_eq!(pruned.query_audit, 1);
    let left: Vec<String> = store
        .list_runs(None, 100)
        .await
        .expect("runs")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&recent.id));
    assert!(
        left.contains(&"run-old-running".to_owned()),
        "an active run is kept"
    );
    let audit = store.list_audit(None, 100).await.expect("audit");
    assert!(audit.iter().any(|a| a.action == "tenant.recent"));
    assert!(audit.iter().all(|a| a.action != "tenant.old"));

    // Nothing more to prune; later, the recent run goes too (the running
    // one never does).
    assert_eq!(store.prune_at(&keep, now).await.expect("again").total(), 0);
    let later = store.prune_at(&keep, now + 91 * day).await.expect("later");
    assert_eq!(later.runs, 1);
    assert_eq!(
        store.list_runs(None, 10).await.expect("runs")[0].id,
        "run-old-running"
    );
    assert_eq!(
        store
            .get_tenant(&tid("t000"))
            .await
            .expect("t")
            .map(|t| t.phase),
        Some(Phase::Pending)
    );
}

/// The pass over all tenants looks a settled tenant up in its cell's
/// listings instead of reading each resource: it still finds a deleted
/// bucket, a deleted service account and a removed project grant, repairs
/// those tenants, and leaves the others unwritten.
#[tokio::test]
async fn the_pass_over_all_tenants_finds_drift_in_its_listings() {
    use cloud::naming;
    use cloud::ports::{roles, ResourceRef};

    let dir = tempfile::tempdir().expect("tmp");
    let platform = support::platform(dir.path()).await;
    let r = support::reconciler(&platform);
    let ids: Vec<TenantId> = ["calm", "nobucket", "noaccount", "nogrant"]
        .iter()
        .map(|s| tid(s))
        .collect();
    for id in &ids {
        assert!(r
            .provision(id, "test")
            .await
            .expect("provision")
            .is_success());
    }
    let cloud = &platform.cloud;
    cloud
        .objects
        .delete_bucket(&naming::bucket_name(None, &ids[1]))
        .await
        .expect("delete bucket");
    let email = |id: &TenantId| cloud.identity.email_for(&naming::service_account_id(id));
    cloud::ports::identity::revoke(
        cloud.identity.as_ref(),
        &ResourceRef::Project,
        roles::BIGQUERY_JOB_USER,
        &cloud::ports::member_for(&email(&ids[3])),
    )
    .await
    .expect("revoke");
    cloud
        .identity
        .delete_service_account(&email(&ids[2]))
        .await
        .expect("delete account");
    let calm_before = platform
        .store
        .get_tenant(&ids[0])
        .await
        .expect("read")
        .expect("calm");

    let mut changed = std::collections::BTreeMap::new();
    for result in r.reconcile_all().await.expect("all") {
        let report = result.expect("report");
        assert!(report.is_success(), "{report:?}");
        changed.insert(report.tenant.to_string(), report.changed);
    }
    assert_eq!(changed.get("calm"), Some(&0), "{changed:?}");
    for drifted in ["nobucket", "noaccount", "nogrant"] {
        assert!(
            changed.get(drifted).is_some_and(|n| *n > 0),
            "{drifted}: {changed:?}"
        );
    }
    let calm_after = platform
        .store
        .get_tenant(&ids[0])
        .await
        .expect("read")
        .expect("calm");
    assert_eq!(calm_before.updated_at, calm_after.updated_at);
    // A second pass finds nothing left to do.
    for result in r.reconcile_all().await.expect("all") {
        assert_eq!(result.expect("report").changed, 0);
    }
}

/// A full pass marks the tenant settled at its generation and plan; a pass
/// over all tenants then needs none of its resource rows. A tenant without
/// a mark (settled before marks existed) or with a stale one is checked by
/// its rows as before and marked, once.
#[tokio::test]
async fn settled_tenants_are_marked_and_need_no_rows() {
    let dir = tempfile::tempdir().expect("tmp");
    let platform = support::platform(dir.path()).await;
    let r = support::reconciler(&platform);
    let (a, b) = (tid("marked"), tid("unmarked"));
    for id in [&a, &b] {
        assert!(r
            .provision(id, "test")
            .await
            .expect("provision")
            .is_success());
    }
    let marks = |store: Store| async move {
        store
            .pass_page(None, 10)
            .await
            .expect("page")
            .into_iter()
            .map(|(t, m)| (t.id.to_string(), m))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let before = marks(platform.store.clone()).await;
    let mark = before["marked"].clone().expect("a full pass marks");
    assert!(mark.starts_with("1:"), "{mark}");

    // Forget one mark, make the other stale.
    let raw = sqlx::SqlitePool::connect(&control_plane::store::sqlite_url(
        &dir.path().join("state.db"),
    ))
    .await
    .expect("raw");
    sqlx::query("UPDATE tenants SET settled = NULL WHERE id = 'unmarked'")
        .execute(&raw)
        .await
        .expect("forget");
    sqlx::query("UPDATE tenants SET settled = '1:stale' WHERE id = 'marked'")
        .execute(&raw)
        .await
        .expect("stale");
    raw.close().await;
    for result in r.reconcile_all().await.expect("all") {
        assert_eq!(result.expect("report").changed, 0);
    }
    let after = marks(platform.store.clone()).await;
    assert_eq!(after["marked"], Some(mark.clone()));
    assert_eq!(after["unmarked"], before["unmarked"]);

    // Marked, the rows are not needed: with the marked tenant's rows gone
    // the pass still takes it as settled (by its mark and the cloud's
    // listings), and no full pass records them again.
    let raw = sqlx::SqlitePool::connect(&control_plane::store::sqlite_url(
        &dir.path().join("state.db"),
    ))
    .await
    .expect("raw");
    sqlx::query("DELETE FROM resources WHERE tenant_id = 'marked'")
        .execute(&raw)
        .await
        .expect("drop rows");
    raw.close().await;
    for result in r.reconcile_all().await.expect("all") {
        assert_eq!(result.expect("report").changed, 0);
    }
    assert!(platform
        .store
        .list_resources(&a)
        .await
        .expect("rows")
        .is_empty());
    assert_eq!(
        platform.store.list_resources(&b).await.expect("rows").len(),
        13
    );
}
