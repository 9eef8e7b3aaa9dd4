//! The operator CLI as an operator runs it: a real process, exit codes, JSON
//! output, bad input, corrupt state, a wrong master key and a real kill.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_control-plane");

fn cli(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LEDGERLAKE_DATA_DIR", dir)
        .env("LEDGERLAKE_MASTER_KEY", support::TEST_MASTER_KEY)
        // Killed runs leave leases behind; let them expire quickly.
        .env("LEDGERLAKE_LEASE_TTL_SECS", "2")
        .stdin(Stdio::null());
    cmd
}

fn run(dir: &Path, args: &[&str]) -> Output {
    cli(dir).args(args).output().expect("run control-plane")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

#[test]
fn provision_show_list_and_teardown_through_the_cli() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = run(dir.path(), &["tenants", "provision", "acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.contains("phase Ready"), "{table}");
    assert!(table.contains("client-acme-bucket"), "{table}");

    let out = run(dir.path(), &["tenants", "show", "acme", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let shown = json(&out);
    assert_eq!(shown["id"], "acme");
    assert_eq!(shown["phase"], "Ready");
    let resources = shown["resources"].as_array().expect("resources");
    for kind in [
        "bucket",
        "dataset",
        "service_account",
        "secret",
        "iam_binding",
    ] {
        assert!(
            resources.iter().any(|r| r["kind"] == kind),
            "{kind} in {shown}"
        );
    }
    assert!(resources
        .iter()
        .all(|r| r["status"] == "Ready" && r["name"].is_string() && r.get("message").is_some()));

    // Provisioning an existing tenant is a no-op success.
    let out = run(
        dir.path(),
        &["tenants", "provision", "acme", "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(0));
    let out = run(
        dir.path(),
        &["tenants", "reconcile", "--all", "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)[0]["changed"], 0);

    let out = run(dir.path(), &["tenants", "list", "--output", "json"]);
    let listed = json(&out);
    assert_eq!(listed[0]["id"], "acme");
    assert_eq!(listed[0]["resources_ready"], listed[0]["resources_total"]);

    let out = run(
        dir.path(),
        &["tenants", "teardown", "acme", "--keep-data", "--yes"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains("kept bucket client-acme-bucket"), "{said}");
    assert!(dir.path().join("buckets/client-acme-bucket").is_dir());
    let out = run(dir.path(), &["tenants", "show", "acme"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("tenant acme does not exist"));
}

#[test]
fn an_invalid_tenant_id_exits_2_with_the_rule() {
    let dir = tempfile::tempdir().expect("tmp");
    for bad in [
        "AB",
        "a",
        "1abc",
        "abc-",
        "has_underscore",
        "x234567890123456789012",
    ] {
        let out = run(dir.path(), &["tenants", "provision", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = text(&out.stderr);
        assert!(
            err.contains("a tenant id is 3 to 20 characters"),
            "{bad}: {err}"
        );
    }
    // Nothing was created for them.
    assert!(!dir.path().join("state.db").exists());
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = run(dir.path(), &["tenants", "teardown", "acme"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("without --yes"));
    let out = run(dir.path(), &["tenants", "reconcile"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(dir.path(), &["tenants", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(dir.path(), &["tenants", "list", "--output", "yaml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn teardown_of_an_unknown_tenant_is_a_clear_failure() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = run(dir.path(), &["tenants", "teardown", "ghost", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("tenant ghost does not exist; nothing to tear down"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_corrupt_state_file_is_a_clear_error_and_is_left_untouched() {
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state.db");
    let garbage = b"this is not a database, it is a shopping list\n".repeat(200);
    std::fs::write(&state, &garbage).expect("write");
    let out = run(dir.path(), &["tenants", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("state.db"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(std::fs::read(&state).expect("read"), garbage);
}

#[test]
fn a_wrong_master_key_is_a_clear_error_and_destroys_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = run(dir.path(), &["tenants", "provision", "acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let wrong = "ff".repeat(32);
    let out = cli(dir.path())
        .env("LEDGERLAKE_MASTER_KEY", &wrong)
        .args(["tenants", "teardown", "acme", "--yes"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.to_lowercase().contains("master key"), "{err}");
    assert!(!err.contains(&wrong), "the key is never echoed");
    // The tenant and its secret are intact.
    let out = run(dir.path(), &["tenants", "show", "acme", "--output", "json"]);
    assert_eq!(json(&out)["phase"], "Ready");
    assert!(dir.path().join("secrets/xero_token_acme").is_dir());
}

#[test]
fn the_master_key_is_rotated_and_only_the_new_one_opens_the_data_directory_after() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = run(dir.path(), &["tenants", "provision", "acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The key is set in the environment: its successor must be given.
    let out = run(dir.path(), &["secrets", "rotate-master-key"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("LEDGERLAKE_NEW_MASTER_KEY"),
        "{}",
        text(&out.stderr)
    );
    let new_key = "5a".repeat(32);
    let out = cli(dir.path())
        .env("LEDGERLAKE_NEW_MASTER_KEY", &new_key)
        .args(["secrets", "rotate-master-key", "--output", "json"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let done = json(&out);
    assert_eq!(done["key_file"], Value::Null, "{done}");
    assert!(
        !text(&out.stdout).contains(&new_key),
        "the key is never echoed"
    );
    // The old key no longer opens it; the new one does, and nothing is lost.
    let out = run(dir.path(), &["tenants", "show", "acme"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).to_lowercase().contains("master key"));
    let out = cli(dir.path())
        .env("LEDGERLAKE_MASTER_KEY", &new_key)
        .args(["tenants", "show", "acme", "--output", "json"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json(&out)["phase"], "Ready");
    // On Google Cloud the key encrypts nothing stored: there is nothing to rotate.
    let out = run(
        dir.path(),
        &["--cloud", "gcp", "secrets", "rotate-master-key"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// Kills the provisioning process at several points with SIGKILL, then checks
/// that a reconcile ends every tenant Ready with no duplicate resource.
#[test]
fn a_killed_provisioning_resumes_without_duplicates() {
    let dir = tempfile::tempdir().expect("tmp");
    let ids: Vec<String> = (0..40).map(|i| format!("kill{i:02}")).collect();
    let mut args = vec!["tenants".to_owned(), "provision".to_owned()];
    args.extend(ids.iter().cloned());
    for delay_ms in [30u64, 90, 200, 400] {
        let mut child = cli(dir.path())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(delay_ms));
        // SIGKILL: no destructor, no lease release.
        let _ = child.kill();
        let _ = child.wait();
    }
    // The killed runs' leases expire (2 s here); provisioning again resumes them.
    let out = cli(dir.path())
        .args(["tenants", "provision"])
        .args(&ids)
        .args(["--output", "json"])
        .output()
        .expect("resume");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = json(&out);
    let shown = shown.as_array().expect("array of tenants");
    assert_eq!(shown.len(), ids.len());
    assert!(shown.iter().all(|t| t["phase"] == "Ready"), "{shown:?}");

    // On disk: one folder per bucket, one database per dataset, one account per tenant.
    let count = |sub: &str| {
        std::fs::read_dir(dir.path().join(sub))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(count("buckets"), ids.len());
    // Named, so that a failure says which tenant's secret is missing or
    // what else lies there.
    let mut secrets: Vec<String> = std::fs::read_dir(dir.path().join("secrets"))
        .expect("secrets folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name != ".keycheck")
        .collect();
    secrets.sort();
    let expected: Vec<String> = ids
        .iter()
        .map(|id| cloud::naming::secret_name(&cloud::naming::TenantId::parse(id).expect("id")))
        .collect();
    assert_eq!(secrets, expected);
    let out = run(
        dir.path(),
        &["tenants", "reconcile", "--all", "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(0));
    let reports = json(&out);
    assert!(
        reports
            .as_array()
            .expect("reports")
            .iter()
            .all(|r| r["changed"] == 0),
        "{reports}"
    );
}

#[test]
fn two_processes_provisioning_one_tenant_never_duplicate() {
    let dir = tempfile::tempdir().expect("tmp");
    // Create the store first so both processes race on provisioning, not on migrations.
    assert_eq!(run(dir.path(), &["tenants", "list"]).status.code(), Some(0));
    let spawn = || {
        cli(dir.path())
            .args(["tenants", "provision", "twin", "--output", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (
        a.wait_with_output().expect("a"),
        b.wait_with_output().expect("b"),
    );
    assert_eq!(a.status.code(), Some(0), "{}", text(&a.stderr));
    assert_eq!(b.status.code(), Some(0), "{}", text(&b.stderr));
    assert_eq!(json(&a)["phase"], "Ready");
    // The shared project policy holds the tenant's grant exactly once.
    let policy = std::fs::read_to_string(dir.path().join("iam/policies/project/local.json"))
        .expect("project policy");
    assert_eq!(policy.matches("client-twin-sa").count(), 1, "{policy}");
    let out = run(
        dir.path(),
        &["tenants", "reconcile", "twin", "--output", "json"],
    );
    assert_eq!(json(&out)[0]["changed"], 0);
}

#[test]
fn the_same_cli_runs_on_postgresql() {
    let Some(url) = support::postgres_database().expect("postgres") else {
        eprintln!("SKIPPED: LEDGERLAKE_TEST_DATABASE_URL is not set; .ci/run sets it");
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let out = cli(dir.path())
        .env("LEDGERLAKE_DATABASE_URL", &url)
        .args(["tenants", "provision", "pgco", "--output", "json"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json(&out)["phase"], "Ready");
    assert!(
        !dir.path().join("state.db").exists(),
        "the state lives in PostgreSQL"
    );
    let out = cli(dir.path())
        .env("LEDGERLAKE_DATABASE_URL", &url)
        .args(["tenants", "teardown", "pgco", "--yes"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_through_the_cli_wait_and_exit_with_the_outcome() {
    use xero_sandbox::{Sandbox, SandboxConfig, SandboxLimits};
    let dir = tempfile::tempdir().expect("tmp");
    let sandbox = Sandbox::start(
        SandboxConfig::new("cli-client", "cli-client-secret")
            .invoices(120)
            .seed(8)
            .limits(SandboxLimits {
                per_minute: 100_000,
                ..SandboxLimits::default()
            }),
    )
    .await
    .expect("sandbox");
    let with_xero = |args: &[&str], secret: bool| {
        let mut cmd = cli(dir.path());
        cmd.env("LEDGERLAKE_XERO_ENDPOINT", sandbox.base_url())
            .env("LEDGERLAKE_XERO_PER_MINUTE", "100000")
            .env("LEDGERLAKE_XERO_CLIENT_ID", "cli-client");
        if secret {
            cmd.env("LEDGERLAKE_XERO_CLIENT_SECRET", "cli-client-secret");
        }
        cmd.args(args).output().expect("run control-plane")
    };
    let out = with_xero(&["tenants", "provision", "acme"], true);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let platform = support::platform(dir.path()).await;
    let tokens = sandbox.issue_tokens(None);
    control_plane::tokens::write_token_set(
        &platform.cloud,
        &cloud::ports::Credential::Platform,
        &cloud::naming::TenantId::parse("acme").expect("id"),
        &tokens,
    )
    .await
    .expect("tokens");

    let out = with_xero(
        &[
            "runs", "start", "acme", "sync", "--wait", "--output", "json",
        ],
        true,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let record = json(&out);
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(
        record["summary"]["ingest"]["resources"]["Invoices"]["records"],
        120
    );
    assert!(record["duration_seconds"].as_f64().is_some_and(|d| d > 0.0));
    let id = record["id"].as_str().expect("id").to_owned();

    let out = run(dir.path(), &["runs", "show", &id]);
    assert_eq!(out.status.code(), Some(0));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("succeeded") && shown.contains("Invoices"),
        "{shown}"
    );
    let out = run(
        dir.path(),
        &["runs", "list", "--tenant", "acme", "--output", "json"],
    );
    assert_eq!(json(&out).as_array().map(Vec::len), Some(1));

    // Without the Xero app's secret the job cannot refresh: the run fails,
    // and so does the command, naming the tenant and the cause.
    let out = with_xero(&["runs", "start", "acme", "ingest", "--wait"], false);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("acme") && err.contains("LEDGERLAKE_XERO_CLIENT_SECRET"),
        "{err}"
    );
    assert!(!err.contains("cli-client-secret"));

    // Unknown tenants and runs are clear errors.
    let out = run(dir.path(), &["runs", "start", "nobody", "sync"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("tenant nobody does not exist"));
    let out = run(dir.path(), &["runs", "show", "run-missing"]);
    assert_eq!(out.status.code(), Some(1));
    let out = run(dir.path(), &["runs", "start", "acme", "explode"]);
    assert_eq!(out.status.code(), Some(2));
}
