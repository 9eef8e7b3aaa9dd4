//! End to end across the binaries: a sandbox company, a provisioned tenant
//! with its token set, `sync` runs of the real `tenant-job` binary started
//! through the jobs port and followed by the control plane, and the
//! transformed tables checked against the sandbox's own books; then changes,
//! a killed run, the run rules (one at a time, only Ready tenants), and the
//! whole life of a tenant from consent to teardown.

// The control plane's own test support (a platform in a temporary directory,
// fast retry settings), shared rather than copied.
#[path = "../control-plane/tests/support/mod.rs"]
mod support;

mod common;

use common::job_template;

use std::time::Duration;

use cloud::naming::{self, TenantId};
use cloud::ports::{Credential, QueryRequest};
use control_plane::platform::{Platform, PlatformConfig};
use control_plane::reconciler::Settings;
use control_plane::runs::{RunError, RunSettings, Runs};
use control_plane::store::{RunStatus, RunTrigger};
use control_plane::tokens::write_token_set;
use job_contract::RunCommand;
use xero::secret::SecretString;
use xero_sandbox::{ChangeRequest, Sandbox, SandboxConfig, SandboxLimits};

const CLIENT_ID: &str = "sync-client";
const CLIENT_SECRET: &str = "sync-client-secret";

fn tid(s: &str) -> TenantId {
    TenantId::parse(s).expect("tenant id")
}

struct World {
    _dir: tempfile::TempDir,
    sandbox: Sandbox,
    platform: Platform,
    runs: Runs,
}

async fn world(invoices: usize) -> World {
    let dir = tempfile::tempdir().expect("tmp");
    let sandbox = Sandbox::start(
        SandboxConfig::new(CLIENT_ID, CLIENT_SECRET)
            .invoices(invoices)
            .seed(5)
            .auto_approve(true)
            .limits(SandboxLimits {
                per_minute: 100_000,
                ..SandboxLimits::default()
            }),
    )
    .await
    .expect("sandbox");
    // The key file in the data directory, so the job (a child process) finds it.
    let platform = Platform::open(PlatformConfig {
        cloud: Default::default(),
        data_dir: dir.path().to_path_buf(),
        database_url: None,
        bucket_prefix: None,
        master_key: None,
    })
    .await
    .expect("platform");
    let runs = platform.runs(RunSettings {
        xero_client_id: Some(CLIENT_ID.to_owned()),
        xero_client_secret: Some(SecretString::new(CLIENT_SECRET)),
    });
    World {
        _dir: dir,
        sandbox,
        platform,
        runs,
    }
}

/// Provisions `id` (with its jobs) and connects it to the sandbox.
async fn connected(w: &World, id: &TenantId) {
    let settings = Settings {
        jobs: job_template(&w.sandbox),
        ..support::fast_settings()
    };
    let report = w
        .platform
        .reconciler(settings)
        .provision(id, "test")
        .await
        .expect("provision");
    assert!(report.is_success(), "{report:?}");
    let tokens = w.sandbox.issue_tokens(None);
    write_token_set(&w.platform.cloud, &Credential::Platform, id, &tokens)
        .await
        .expect("tokens");
    let orgs: Vec<(String, Option<String>)> = tokens
        .tenant_ids
        .iter()
        .map(|t| (t.clone(), None))
        .collect();
    w.platform
        .store
        .record_connections(id, &orgs)
        .await
        .expect("connections");
}

async fn scalar(w: &World, id: &TenantId, sql: &str) -> serde_json::Value {
    let result = w
        .platform
        .cloud
        .warehouse
        .query(
            &Credential::Platform,
            &QueryRequest {
                dataset: naming::transformed_dataset(id),
                sql: sql.to_owned(),
                max_rows: 10,
                timeout: Duration::from_secs(30),
                max_bytes: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    result.rows[0][0].clone()
}

fn as_f64(v: &serde_json::Value) -> f64 {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .or_else(|| v.as_i64().map(|i| i as f64))
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

async fn sync(w: &World, id: &TenantId) -> control_plane::store::RunRecord {
    let run = w
        .runs
        .start(id, RunCommand::Sync, RunTrigger::Operator)
        .await
        .expect("start");
    let run = w
        .runs
        .wait(&run.id, Duration::from_secs(300))
        .await
        .expect("wait");
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    run
}

async fn assert_tables_agree_with_the_books(w: &World, id: &TenantId) {
    let books = w.sandbox.books(None, false).expect("books");
    let counts = &books["counts"];
    for (table, key) in [
        ("fct_invoices", "Invoices"),
        ("fct_credit_notes", "CreditNotes"),
        ("fct_payments", "Payments"),
        ("fct_bank_transactions", "BankTransactions"),
        ("dim_contacts", "Contacts"),
        ("dim_accounts", "Accounts"),
        ("dim_items", "Items"),
        ("fct_journal_lines", "JournalLines"),
    ] {
        let n = scalar(w, id, &format!("SELECT count(*) FROM {table}")).await;
        assert_eq!(
            as_f64(&n) as u64,
            counts[key].as_u64().expect(key),
            "{table}"
        );
    }
    // Journals balance, in the books and in the warehouse.
    let unbalanced = scalar(
        w,
        id,
        "SELECT count(*) FROM (SELECT journal_id FROM fct_journal_lines \
         GROUP BY journal_id HAVING sum(net_amount) <> 0)",
    )
    .await;
    assert_eq!(as_f64(&unbalanced), 0.0);
}

#[tokio::test]
async fn a_sync_builds_tables_that_agree_with_the_books_and_a_second_takes_only_changes() {
    let w = world(400).await;
    let id = tid("acme");
    connected(&w, &id).await;

    let first = sync(&w, &id).await;
    let summary = first.summary.clone().expect("summary");
    assert_eq!(summary["ingest"]["resources"]["Invoices"]["records"], 400);
    assert!(summary["transform"]["models"]
        .as_array()
        .is_some_and(|m| m.len() >= 10));
    assert!(first.started_at.is_some() && first.finished_at.is_some());
    assert_tables_agree_with_the_books(&w, &id).await;

    // Changes in Xero; the next sync asks only for them and agrees again.
    w.sandbox
        .apply_changes(&ChangeRequest {
            create: 5,
            edit: 3,
            void: 2,
            pay: 3,
            new_contacts: 1,
            ..ChangeRequest::default()
        })
        .await
        .expect("changes");
    let second = sync(&w, &id).await;
    let summary = second.summary.expect("summary");
    assert_eq!(
        summary["ingest"]["calls"].as_u64(),
        Some(xero::resources::Resource::ALL.len() as u64),
        "one call per resource: {summary}"
    );
    assert_tables_agree_with_the_books(&w, &id).await;
    let runs = w
        .platform
        .store
        .list_runs(Some(&id), 10)
        .await
        .expect("list");
    assert_eq!(runs.len(), 2);
}

#[tokio::test]
async fn a_killed_run_is_recorded_failed_and_the_next_loses_and_duplicates_nothing() {
    let w = world(3_000).await;
    let id = tid("killed");
    connected(&w, &id).await;
    let run = w
        .runs
        .start(&id, RunCommand::Sync, RunTrigger::Operator)
        .await
        .expect("start");
    // A second run while one is in progress is refused.
    let again = w.runs.start(&id, RunCommand::Ingest, RunTrigger::Api).await;
    assert!(matches!(again, Err(RunError::Active { .. })), "{again:?}");

    // Kill the job once its first invoice page is durable.
    let bucket = naming::bucket_name(None, &id);
    let page = job_contract::raw::page_key(xero::resources::Resource::Invoices, &run.id, 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while w
        .platform
        .cloud
        .objects
        .get_object(&Credential::Platform, &bucket, &page)
        .await
        .is_err()
    {
        assert!(tokio::time::Instant::now() < deadline, "no page appeared");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let record = w
        .platform
        .store
        .get_run(&run.id)
        .await
        .expect("get")
        .expect("run");
    let (job, execution) = (
        record.job.expect("job"),
        record.execution_id.expect("execution"),
    );
    let exec_file = w
        .platform
        .config
        .data_dir
        .join("jobs/executions")
        .join(&job)
        .join(format!("{execution}.json"));
    let exec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&exec_file).expect("execution record"))
            .expect("json");
    let pid = exec["pid"].as_u64().expect("pid");
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());

    let ended = w
        .runs
        .wait(&run.id, Duration::from_secs(60))
        .await
        .expect("wait");
    assert_eq!(ended.status, RunStatus::Failed, "{ended:#?}");
    assert!(ended.message.is_some());

    sync(&w, &id).await;
    assert_tables_agree_with_the_books(&w, &id).await;
}

#[tokio::test]
async fn runs_need_a_ready_tenant() {
    let w = world(5).await;
    let unknown = w
        .runs
        .start(&tid("nobody"), RunCommand::Sync, RunTrigger::Api)
        .await;
    assert!(
        matches!(unknown, Err(RunError::UnknownTenant(_))),
        "{unknown:?}"
    );
    let id = tid("pending");
    w.platform.store.want_tenant(&id).await.expect("want");
    let pending = w.runs.start(&id, RunCommand::Sync, RunTrigger::Api).await;
    assert!(
        matches!(pending, Err(RunError::NotReady { .. })),
        "{pending:?}"
    );
    assert!(w
        .platform
        .store
        .list_runs(None, 10)
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn consent_then_provisioning_then_a_requested_sync_agrees_with_the_books_then_teardown_leaves_nothing(
) {
    use control_plane::server::{self, ServeConfig};
    use xero::oauth::{OAuthClient, OAuthConfig};
    const OPERATOR: &str = "operator-token-for-the-sync-test";

    let w = world(150).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let oauth = OAuthClient::new(
        OAuthConfig::new(
            CLIENT_ID,
            CLIENT_SECRET,
            format!("{base}/oauth/xero/callback").parse().expect("uri"),
        )
        .with_endpoints(w.sandbox.endpoints().expect("endpoints")),
    )
    .expect("oauth");
    let config = ServeConfig {
        oauth: Some(oauth),
        operator_token: Some(SecretString::new(OPERATOR)),
        workers: 2,
        resync_interval: Duration::from_millis(300),
        run_settings: RunSettings {
            xero_client_id: Some(CLIENT_ID.to_owned()),
            xero_client_secret: Some(SecretString::new(CLIENT_SECRET)),
        },
        query: Some(Default::default()),
        ..ServeConfig::closed(listener.local_addr().expect("addr"), base.clone())
    };
    let settings = Settings {
        jobs: job_template(&w.sandbox),
        ..support::fast_settings()
    };
    let (state, workers) = server::start(
        w.platform.cloud.clone(),
        w.platform.store.clone(),
        w.platform.reconciler(settings),
        config,
    );
    let app = server::router(state);
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();

    // Consent: an operator mints a connect link; a real client follows it
    // and the redirects through the sandbox.
    let minted: serde_json::Value = http
        .post(format!("{base}/v1/tenants/acme/connect-link"))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .expect("mint")
        .json()
        .await
        .expect("json");
    let link = minted["url"].as_str().expect("url").to_owned();
    let resp = http
        .get(&link)
        .header("accept", "application/json")
        .send()
        .await
        .expect("consent");
    assert_eq!(resp.status(), 202);
    let get = |path: String| {
        http.get(format!("{base}{path}"))
            .bearer_auth(OPERATOR)
            .send()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let t: serde_json::Value = get("/v1/tenants/acme".into())
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if t["phase"] == "Ready" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never Ready: {t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A manual refresh through the API, followed until it ends.
    let run: serde_json::Value = http
        .post(format!("{base}/v1/tenants/acme/runs"))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .expect("start")
        .json()
        .await
        .expect("json");
    let run_id = run["id"].as_str().expect("run id").to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let ended = loop {
        let r: serde_json::Value = get(format!("/v1/runs/{run_id}"))
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if r["status"] != "queued" && r["status"] != "running" {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run never ended: {r}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ended["status"], "succeeded", "{ended}");
    let id = tid("acme");
    assert_tables_agree_with_the_books(&w, &id).await;

    // The job's log: JSON lines carrying the tenant and the run, and no token.
    let (_, tokens) =
        control_plane::tokens::read_token_set(&w.platform.cloud, &Credential::Platform, &id)
            .await
            .expect("tokens");
    let log_path = w
        .platform
        .config
        .data_dir
        .join("jobs/executions")
        .join(ended["job"].as_str().expect("job"))
        .join(format!(
            "{}.log",
            ended["execution_id"].as_str().expect("execution")
        ));
    let log = std::fs::read_to_string(&log_path).expect("job log");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 3, "{log}");
    for line in &lines {
        // Cloud Logging's shape: the run span's fields flattened and as labels.
        assert_eq!(line["tenant"], "acme", "{line}");
        assert_eq!(line["run_id"], run_id.as_str(), "{line}");
        let labels = &line["logging.googleapis.com/labels"];
        assert_eq!(labels["tenant"], "acme", "{line}");
        assert_eq!(labels["run"], run_id.as_str(), "{line}");
        assert!(line["severity"].is_string() && line["message"].is_string());
    }
    assert!(!log.contains(tokens.access_token.expose_secret()));
    assert!(!log.contains(tokens.refresh_token.expose_secret()));
    assert!(!log.contains(CLIENT_SECRET));
    serving.abort();
    workers.abort();

    // Teardown: every resource goes, then the tenant; nothing labelled with
    // the tenant is left in any port.
    let report = w
        .platform
        .reconciler(support::fast_settings())
        .teardown(&id, false, "test")
        .await
        .expect("teardown");
    assert!(report.is_success(), "{report:?}");
    assert!(w
        .platform
        .store
        .get_tenant(&id)
        .await
        .expect("read")
        .is_none());
    support::assert_nothing_labelled(&w.platform.cloud, &id).await;
}
