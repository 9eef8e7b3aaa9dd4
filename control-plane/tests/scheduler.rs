//! The scheduler tick and the run endpoints over real HTTP: first syncs are
//! due at once, schedules move on, webhook-marked tenants go first, the
//! app-wide Xero budget defers the rest, one run per tenant, operator token
//! required.

mod support;

use std::time::Duration;

use cloud::naming::TenantId;
use control_plane::reconciler::{JobTemplate, Settings};
use control_plane::runs::RunSettings;
use control_plane::scheduler::{self, SchedulerSettings};
use control_plane::server::{self, ServeConfig};
use control_plane::store::{RunStatus, RunTrigger, WebhookEventRecord};
use time::OffsetDateTime;

const OPERATOR_TOKEN: &str = "operator-token-for-scheduler-tests";

fn tid(s: &str) -> TenantId {
    TenantId::parse(s).expect("tenant id")
}

fn settings() -> Settings {
    Settings {
        // Runs of these tests end quickly: no Xero app is configured, so
        // the job fails at once, which is all the scheduler needs.
        jobs: JobTemplate::beside_current_exe(),
        ..support::fast_settings()
    }
}

/// A platform whose master key is a file in the data directory, so the
/// jobs (child processes) open the same secrets.
async fn platform(dir: &std::path::Path) -> control_plane::platform::Platform {
    control_plane::platform::Platform::open(control_plane::platform::PlatformConfig {
        cloud: Default::default(),
        data_dir: dir.to_path_buf(),
        database_url: None,
        bucket_prefix: None,
        master_key: None,
    })
    .await
    .expect("platform")
}

async fn provisioned(platform: &control_plane::platform::Platform, ids: &[&TenantId]) {
    let r = platform.reconciler(settings());
    for id in ids {
        assert!(r
            .provision(id, "test")
            .await
            .expect("provision")
            .is_success());
    }
}

async fn settle(runs: &control_plane::runs::Runs) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !runs.store().active_runs().await.expect("active").is_empty() {
        runs.follow_active().await.expect("follow");
        assert!(tokio::time::Instant::now() < deadline, "runs did not end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Xero call budget that starts two runs a tick.
fn budget_of_two() -> SchedulerSettings {
    SchedulerSettings {
        xero_calls_per_tick: 40,
        calls_per_run: 20,
        ..SchedulerSettings::default()
    }
}

#[tokio::test]
async fn ticks_start_due_tenants_within_the_budget_and_webhooks_go_first() {
    let dir = tempfile::tempdir().expect("tmp");
    let platform = platform(dir.path()).await;
    let (a, b, c) = (tid("alpha"), tid("bravo"), tid("charlie"));
    provisioned(&platform, &[&a, &b, &c]).await;
    let runs = platform.runs(RunSettings::default());
    let budget_of_two = budget_of_two();
    let now = OffsetDateTime::now_utc();

    // Never synced: all are due; the budget lets two start, the third waits.
    let first = scheduler::tick(&runs, &budget_of_two, now)
        .await
        .expect("tick");
    assert_eq!(first.started.len(), 2, "{first:?}");
    assert_eq!(first.deferred, 1, "{first:?}");
    assert!(first
        .started
        .iter()
        .all(|s| s.trigger == RunTrigger::Schedule));
    settle(&runs).await;

    // Next tick: charlie's turn; the others are scheduled for the next hour.
    let second = scheduler::tick(&runs, &budget_of_two, now)
        .await
        .expect("tick");
    let started: Vec<&str> = second.started.iter().map(|s| s.tenant.as_str()).collect();
    assert_eq!(started, ["charlie"], "{second:?}");
    settle(&runs).await;
    let third = scheduler::tick(&runs, &budget_of_two, now)
        .await
        .expect("tick");
    assert!(third.started.is_empty(), "{third:?}");

    // A webhook marks bravo: it syncs at the next tick, ahead of its schedule.
    platform
        .store
        .record_connections(&b, &[("org-bravo".to_owned(), None)])
        .await
        .expect("connections");
    let marked = platform
        .store
        .record_webhook_events(&[WebhookEventRecord {
            xero_tenant_id: "org-bravo".into(),
            event_category: "INVOICE".into(),
            event_type: "UPDATE".into(),
            resource_id: "inv-1".into(),
            event_date: "2026-11-24T10:00:00Z".into(),
        }])
        .await
        .expect("webhook");
    assert_eq!(marked, std::slice::from_ref(&b));
    let fourth = scheduler::tick(&runs, &budget_of_two, now)
        .await
        .expect("tick");
    assert_eq!(fourth.started.len(), 1, "{fourth:?}");
    assert_eq!(fourth.started[0].tenant, "bravo");
    assert_eq!(fourth.started[0].trigger, RunTrigger::Webhook);
    settle(&runs).await;
    assert!(platform
        .store
        .tenants_with_sync_requested()
        .await
        .expect("marked")
        .is_empty());

    // An hour later everyone is due again.
    let later = now + time::Duration::minutes(61);
    let fifth = scheduler::tick(&runs, &SchedulerSettings::default(), later)
        .await
        .expect("tick");
    assert_eq!(fifth.started.len(), 3, "{fifth:?}");
    settle(&runs).await;
    // Every run ended and was recorded (these fail: no Xero app configured).
    for r in platform.store.list_runs(None, 50).await.expect("list") {
        assert_eq!(r.status, RunStatus::Failed, "{r:?}");
        assert!(r.message.is_some());
    }
}

#[tokio::test]
async fn a_tick_reads_past_due_tenants_it_cannot_start_to_spend_its_budget() {
    let dir = tempfile::tempdir().expect("tmp");
    let platform = platform(dir.path()).await;
    // Two tenants wanted but never provisioned come first in the due order
    // (never scheduled, then by id): each is skipped, and the tick reads on,
    // a page of at most the budget at a time, until two runs started.
    let (a, b) = (tid("aardvark"), tid("abacus"));
    for t in [&a, &b] {
        platform.store.want_tenant(t).await.expect("want");
    }
    let ready = [tid("mango"), tid("nectarine"), tid("olive")];
    provisioned(&platform, &ready.iter().collect::<Vec<_>>()).await;
    let runs = platform.runs(RunSettings::default());
    let budget_of_two = budget_of_two();
    let now = OffsetDateTime::now_utc();
    let report = scheduler::tick(&runs, &budget_of_two, now)
        .await
        .expect("tick");
    let started: Vec<&str> = report.started.iter().map(|s| s.tenant.as_str()).collect();
    assert_eq!(started, ["mango", "nectarine"], "{report:?}");
    let skipped: Vec<&str> = report.skipped.iter().map(|s| s.tenant.as_str()).collect();
    assert_eq!(skipped, ["aardvark", "abacus"], "{report:?}");
    // olive is left for later, counted, not read.
    assert_eq!(report.deferred, 1, "{report:?}");
    settle(&runs).await;

    // The next tick: the skipped tenants' schedules moved on, so olive is
    // the one due.
    let next = scheduler::tick(&runs, &budget_of_two, now)
        .await
        .expect("tick");
    let started: Vec<&str> = next.started.iter().map(|s| s.tenant.as_str()).collect();
    assert_eq!(started, ["olive"], "{next:?}");
    assert!(next.skipped.is_empty(), "{next:?}");
    assert_eq!(next.deferred, 0, "{next:?}");
    settle(&runs).await;
}

#[tokio::test]
async fn the_run_endpoints_start_follow_and_refuse() {
    let dir = tempfile::tempdir().expect("tmp");
    let platform = platform(dir.path()).await;
    let id = tid("http");
    provisioned(&platform, &[&id]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let config = ServeConfig {
        operator_token: Some(xero::secret::SecretString::new(OPERATOR_TOKEN)),
        query: Some(Default::default()),
        ..ServeConfig::closed(listener.local_addr().expect("addr"), base.clone())
    };
    let (state, workers) = server::start(
        platform.cloud.clone(),
        platform.store.clone(),
        platform.reconciler(settings()),
        config,
    );
    let app = server::router(state.clone());
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let post = |path: &str, token: Option<&str>| {
        let mut req = http.post(format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req
    };

    // Without the operator token: 401, nothing started.
    let r = post("/v1/scheduler/tick", None).send().await.expect("tick");
    assert_eq!(r.status(), 401);
    let r = post(&format!("/v1/tenants/{id}/runs"), Some("wrong"))
        .send()
        .await
        .expect("start");
    assert_eq!(r.status(), 401);
    assert!(platform
        .store
        .list_runs(None, 5)
        .await
        .expect("list")
        .is_empty());

    // A manual refresh: 202 with the run; a second at once: 409.
    let r = post(&format!("/v1/tenants/{id}/runs"), Some(OPERATOR_TOKEN))
        .json(&serde_json::json!({"command": "ingest"}))
        .send()
        .await
        .expect("start");
    assert_eq!(r.status(), 202);
    let run: serde_json::Value = r.json().await.expect("json");
    assert_eq!(run["trigger"], "api");
    assert_eq!(run["command"], "ingest");
    let run_id = run["id"].as_str().expect("id").to_owned();
    let r = post(&format!("/v1/tenants/{id}/runs"), Some(OPERATOR_TOKEN))
        .send()
        .await
        .expect("again");
    assert_eq!(r.status(), 409);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["code"], "run_in_progress");

    // Unknown tenant, bad id, bad command.
    for (path, body, status) in [
        ("/v1/tenants/nobody/runs", serde_json::json!({}), 404),
        ("/v1/tenants/Bad_Id/runs", serde_json::json!({}), 400),
        (
            &*format!("/v1/tenants/{id}/runs"),
            serde_json::json!({"command": "drop"}),
            400,
        ),
    ] {
        let r = post(path, Some(OPERATOR_TOKEN))
            .json(&body)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), status, "{path} {body}");
    }

    // The run ends (it fails: no Xero app), and GET shows it followed up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let shown: serde_json::Value = http
            .get(format!("{base}/v1/runs/{run_id}"))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await
            .expect("show")
            .json()
            .await
            .expect("json");
        if shown["status"] != "queued" && shown["status"] != "running" {
            assert_eq!(shown["status"], "failed", "{shown}");
            assert!(
                shown["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("LEDGERLAKE_XERO_CLIENT_ID")),
                "{shown}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "run did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed: serde_json::Value = http
        .get(format!("{base}/v1/tenants/{id}/runs"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    // The tick over HTTP starts the tenant's first scheduled sync.
    let tick: serde_json::Value = post("/v1/scheduler/tick", Some(OPERATOR_TOKEN))
        .send()
        .await
        .expect("tick")
        .json()
        .await
        .expect("json");
    assert_eq!(tick["started"].as_array().map(Vec::len), Some(1), "{tick}");
    serving.abort();
    workers.abort();
}
