//! Teardown of a tenant whose run is in progress, and telling Xero (issue 9,
//! hole 5): without `--force` it is refused and changes nothing; with it the
//! run is cancelled (its process stops, its record stays, failed), the
//! tenant's Xero connections are deleted and its refresh token revoked before
//! its secret goes, and the audit log says so. A dead token does not keep a
//! tenant from being torn down.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use cloud::naming::TenantId;
use cloud::ports::Credential;
use control_plane::platform::Platform;
use control_plane::reconciler::{JobTemplate, Reconciler, Settings};
use control_plane::runs::{RunSettings, Runs};
use control_plane::service::tenants::TeardownOutcome;
use control_plane::service::{self, ServiceError};
use control_plane::store::{AuditEntry, RunCommand, RunRecord, RunStatus, RunTrigger};
use control_plane::tokens::write_token_set;
use tempfile::TempDir;
use xero::oauth::{OAuthClient, OAuthConfig};
use xero::secret::SecretString;
use xero::token_set::TokenSet;
use xero_sandbox::{Sandbox, SandboxConfig};

const CLIENT_ID: &str = "teardown-client";
const CLIENT_SECRET: &str = "teardown-client-secret";
const BIN: &str = env!("CARGO_BIN_EXE_control-plane");

fn tid(s: &str) -> TenantId {
    TenantId::parse(s).expect("tenant id")
}

fn oauth(sandbox: &Sandbox) -> OAuthClient {
    let redirect = "http://127.0.0.1:9/oauth/xero/callback"
        .parse()
        .expect("redirect");
    OAuthClient::new(
        OAuthConfig::new(CLIENT_ID, CLIENT_SECRET, redirect)
            .with_endpoints(sandbox.endpoints().expect("endpoints")),
    )
    .expect("oauth")
}

/// A job that runs until it is stopped (well past any wait of these tests).
fn slow_job(dir: &Path) -> PathBuf {
    let path = dir.join("slow-job.sh");
    std::fs::write(&path, "#!/bin/sh\nexec sleep 120\n").expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn settings(image: &Path) -> Settings {
    Settings {
        jobs: JobTemplate {
            image: image.display().to_string(),
            timeout_seconds: 300,
            xero_endpoint: None,
            xero_per_minute: None,
            app_secret: None,
        },
        ..support::fast_settings()
    }
}

/// Whether the process runs (a zombie does not).
fn process_runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next().map(str::to_owned))
        })
        .is_some_and(|state| state != "Z")
}

async fn wait_gone(pid: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while process_runs(pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "process {pid} still runs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A provisioned tenant connected to the sandbox's organisations, whose
/// stored access token has expired (so telling Xero starts with a refresh),
/// and, when asked, a sync in progress.
struct World {
    dir: TempDir,
    _scripts: TempDir,
    sandbox: Sandbox,
    platform: Platform,
    reconciler: Reconciler,
    runs: Runs,
    id: TenantId,
    /// The token set as first stored.
    tokens: TokenSet,
    /// The run in progress and its process.
    run: Option<(RunRecord, u32)>,
}

impl Drop for World {
    fn drop(&mut self) {
        // Whatever happened, no job outlives its test.
        if let Some((_, pid)) = &self.run {
            let target = i32::try_from(*pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw);
            if let (true, Some(target)) = (process_runs(*pid), target) {
                let _ = rustix::process::kill_process(target, rustix::process::Signal::KILL);
            }
        }
    }
}

async fn world(name: &str, running: bool) -> World {
    let dir = tempfile::tempdir().expect("tmp");
    let scripts = tempfile::tempdir().expect("tmp");
    let sandbox = Sandbox::start(
        SandboxConfig::new(CLIENT_ID, CLIENT_SECRET)
            .invoices(5)
            .organisations(2)
            .seed(7),
    )
    .await
    .expect("sandbox");
    let platform = support::platform(dir.path()).await;
    let reconciler = platform.reconciler(settings(&slow_job(scripts.path())));
    let id = tid(name);
    let report = reconciler.provision(&id, "test").await.expect("provision");
    assert!(report.is_success(), "{report:?}");
    let mut tokens = sandbox.issue_tokens(None);
    tokens.expires_at = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
    write_token_set(&platform.cloud, &Credential::Platform, &id, &tokens)
        .await
        .expect("write tokens");
    let organisations: Vec<(String, Option<String>)> = tokens
        .tenant_ids
        .iter()
        .map(|t| (t.clone(), None))
        .collect();
    platform
        .store
        .record_connections(&id, &organisations)
        .await
        .expect("connections");
    let runs = platform.runs(RunSettings::default());
    let run = if running {
        let run = runs
            .start(&id, RunCommand::Sync, RunTrigger::Operator)
            .await
            .expect("start");
        assert_eq!(run.status, RunStatus::Running, "{run:?}");
        let pid = pid_of(dir.path(), &run);
        assert!(process_runs(pid), "the job runs");
        Some((run, pid))
    } else {
        None
    };
    World {
        dir,
        _scripts: scripts,
        sandbox,
        platform,
        reconciler,
        runs,
        id,
        tokens,
        run,
    }
}

/// The pid of the run's execution, from the local cloud's record.
fn pid_of(root: &Path, run: &RunRecord) -> u32 {
    let (job, execution) = (
        run.job.as_deref().expect("job"),
        run.execution_id.as_deref().expect("execution"),
    );
    let path = root.join(format!("jobs/executions/{job}/{execution}.json"));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("execution record")).expect("json");
    let pid = record["pid"].as_u64().expect("pid");
    u32::try_from(pid).expect("pid")
}

/// The tenant's audit entries, oldest first.
async fn audit(w: &World) -> Vec<AuditEntry> {
    let mut entries = w
        .platform
        .store
        .list_audit(Some(&w.id), 100)
        .await
        .expect("audit");
    entries.reverse();
    entries
}

fn position(entries: &[AuditEntry], action: &str) -> usize {
    entries
        .iter()
        .position(|e| e.action == action)
        .unwrap_or_else(|| {
            let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
            panic!("no {action} in {actions:?}")
        })
}

/// Nothing labelled with the tenant is left in any port.
async fn nothing_left(w: &World) {
    support::assert_nothing_labelled(&w.platform.cloud, &w.id).await;
}

/// The teardown as the operator asks for it.
async fn teardown(w: &World, force: bool) -> Result<TeardownOutcome, ServiceError> {
    let xero = oauth(&w.sandbox);
    service::tenants::teardown(
        &w.reconciler,
        &w.runs,
        Some(&xero),
        &w.id,
        false,
        force,
        "test",
    )
    .await
}

#[tokio::test]
async fn a_running_sync_refuses_teardown_without_force_and_is_cancelled_with_it() {
    let w = world("busy", true).await;
    let (run, pid) = w.run.clone().expect("a run");
    let audited = audit(&w).await.len();

    // (a) Without force: refused, and nothing changes.
    match teardown(&w, false).await {
        Err(ServiceError::Conflict { code, message }) => {
            assert_eq!(code, "run_in_progress");
            assert!(message.contains(&run.id), "{message}");
        }
        other => panic!("not refused: {other:?}"),
    }
    let tenant = w
        .platform
        .store
        .get_tenant(&w.id)
        .await
        .expect("read")
        .expect("still there");
    assert_eq!(tenant.phase, control_plane::store::Phase::Ready);
    assert_eq!(tenant.desired, control_plane::store::Desired::Present);
    assert!(process_runs(pid), "the job still runs");
    let still = w.runs.get(&run.id).await.expect("run");
    assert_eq!(still.status, RunStatus::Running);
    let stats = w.sandbox.identity_stats();
    assert_eq!(
        (
            stats.refreshes,
            stats.revocations,
            stats.connections_deleted
        ),
        (0, 0, 0),
        "Xero was not told: {stats:?}"
    );
    assert_eq!(audit(&w).await.len(), audited, "nothing audited");

    // (b) With force: the run is cancelled, then everything goes.
    let outcome = teardown(&w, true).await.expect("teardown");
    assert!(outcome.report.is_success(), "{outcome:?}");
    assert_eq!(outcome.cancelled.len(), 1, "{outcome:?}");
    assert!(outcome.xero.told, "{outcome:?}");
    wait_gone(pid).await;
    let cancelled = w
        .platform
        .store
        .get_run(&run.id)
        .await
        .expect("read")
        .expect("the run record stays");
    assert_eq!(cancelled.status, RunStatus::Failed);
    assert_eq!(cancelled.message.as_deref(), Some("cancelled by teardown"));
    assert!(cancelled.finished_at.is_some());
    assert!(w
        .platform
        .store
        .get_tenant(&w.id)
        .await
        .expect("read")
        .is_none());
    nothing_left(&w).await;

    // (c) Xero was told: the expired access token was refreshed first, each
    // organisation's connection deleted, the refresh token revoked; neither
    // the first refresh token nor its successor refreshes any more.
    let stats = w.sandbox.identity_stats();
    assert_eq!(stats.refreshes, 1, "{stats:?}");
    assert_eq!(stats.connections_deleted, 2, "{stats:?}");
    assert_eq!(stats.revocations, 1, "{stats:?}");
    let refused = oauth(&w.sandbox).refresh(&w.tokens).await;
    assert!(
        matches!(&refused, Err(e) if e.needs_reconsent()),
        "{refused:?}"
    );

    // (d) The audit log says what was cancelled and that Xero was told,
    // before the teardown removed the secret.
    let entries = audit(&w).await;
    let cancel = position(&entries, "tenant.runs_cancelled");
    let told = position(&entries, "tenant.xero_disconnect");
    let marked = position(&entries, "tenant.teardown");
    assert!(cancel < told && told < marked, "{entries:?}");
    let detail = &entries[cancel].detail;
    assert_eq!(detail["runs"][0]["id"], run.id.as_str(), "{detail}");
    assert_eq!(
        detail["runs"][0]["execution"],
        run.execution_id.as_deref().unwrap_or_default(),
        "{detail}"
    );
    let detail = &entries[told].detail;
    assert_eq!(detail["told"], true, "{detail}");
    assert_eq!(detail["connections_deleted"], 2, "{detail}");
    assert_eq!(detail["refresh_token_revoked"], true, "{detail}");
    let shown = serde_json::to_string(&entries).expect("json");
    assert!(!shown.contains(w.tokens.refresh_token.expose_secret()));
    assert!(!shown.contains(w.tokens.access_token.expose_secret()));
}

#[tokio::test]
async fn a_dead_token_does_not_keep_a_tenant_from_being_torn_down() {
    let w = world("lapsed", false).await;
    // A token set Xero no longer knows: the refresh fails, and so does
    // everything else, but the teardown goes on.
    let dead = TokenSet {
        refresh_token: SecretString::new("dead-refresh-token-value"),
        access_token: SecretString::new("dead-access-token-value"),
        ..w.tokens.clone()
    };
    write_token_set(&w.platform.cloud, &Credential::Platform, &w.id, &dead)
        .await
        .expect("write");
    let outcome = teardown(&w, false).await.expect("teardown");
    assert!(outcome.report.is_success(), "{outcome:?}");
    assert!(!outcome.xero.told, "{outcome:?}");
    nothing_left(&w).await;
    let entries = audit(&w).await;
    let told = position(&entries, "tenant.xero_disconnect");
    let detail = &entries[told].detail;
    assert_eq!(detail["told"], false, "{detail}");
    // Xero answers a revocation of a token it does not know with success
    // (RFC 7009), so only the other steps tell of the dead token.
    let problems = detail["problems"].as_array().expect("problems");
    assert!(!problems.is_empty(), "{detail}");
    let shown = detail.to_string();
    assert!(!shown.contains("dead-refresh-token-value"), "{shown}");
    assert!(!shown.contains("dead-access-token-value"), "{shown}");
    assert!(told < position(&entries, "tenant.teardown"));
}

/// The operator's command, as another process. Awaited, so that this
/// process keeps serving the sandbox and reaping its jobs meanwhile.
async fn cli(w: &World, args: &[&str]) -> Output {
    let run = tokio::process::Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LEDGERLAKE_DATA_DIR", w.dir.path())
        .env("LEDGERLAKE_MASTER_KEY", support::TEST_MASTER_KEY)
        .env("LEDGERLAKE_LEASE_TTL_SECS", "2")
        .env("LEDGERLAKE_XERO_CLIENT_ID", CLIENT_ID)
        .env("LEDGERLAKE_XERO_CLIENT_SECRET", CLIENT_SECRET)
        .env("LEDGERLAKE_XERO_ENDPOINT", w.sandbox.base_url())
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the command ends within 2 minutes")
        .expect("run control-plane")
}

#[tokio::test]
async fn the_cli_refuses_to_tear_down_a_running_tenant_without_force() {
    let w = world("cli-busy", true).await;
    let (run, pid) = w.run.clone().expect("a run");
    let out = cli(&w, &["tenants", "teardown", "cli-busy", "--yes"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--force") && stderr.contains(&run.id),
        "{stderr}"
    );
    assert!(process_runs(pid), "the job still runs");
    assert!(w
        .platform
        .store
        .get_tenant(&w.id)
        .await
        .expect("read")
        .is_some());

    // The CLI is another process than the one that started the job.
    let out = cli(&w, &["tenants", "teardown", "cli-busy", "--yes", "--force"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("cancelled run {}", run.id)),
        "{stderr}"
    );
    assert!(!stderr.contains("Xero was not"), "{stderr}");
    wait_gone(pid).await;
    let cancelled = w.runs.get(&run.id).await.expect("the run record stays");
    assert_eq!(cancelled.status, RunStatus::Failed);
    assert_eq!(cancelled.message.as_deref(), Some("cancelled by teardown"));
    nothing_left(&w).await;
    let stats = w.sandbox.identity_stats();
    assert_eq!(
        (stats.connections_deleted, stats.revocations),
        (2, 1),
        "{stats:?}"
    );
    for secret in [CLIENT_SECRET, w.tokens.refresh_token.expose_secret()] {
        assert!(!stderr.contains(secret));
        assert!(!String::from_utf8_lossy(&out.stdout).contains(secret));
    }
}
