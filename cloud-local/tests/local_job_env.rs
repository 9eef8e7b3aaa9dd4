//! A local job's environment is its allow-list, not the control plane's
//! environment: read from the running child's `/proc/<pid>/environ`.
//!
//! Its own test binary: it sets variables in this process's environment,
//! which every test of a binary shares, so it is the only test here.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use cloud::ports::{ExecutionOverrides, ExecutionState, JobRunner, JobSpec};
use cloud_local::{LocalAdapters, LocalConfig, INHERITED_ENV, RUNNER_ENV};
use common::labels;

/// What the control plane holds and a job must never see (fake values).
const PARENT_SECRETS: [(&str, &str); 5] = [
    ("LEDGERLAKE_OPERATOR_TOKEN", "fake-operator-token"),
    ("LEDGERLAKE_XERO_WEBHOOK_KEY", "fake-webhook-key"),
    (
        "LEDGERLAKE_DATABASE_URL",
        "postgres://user:fake-password@127.0.0.1/db",
    ),
    ("AWS_SECRET_ACCESS_KEY", "fake-aws-secret"),
    ("LEDGERLAKE_MASTER_KEY", "fake-parent-master-key"),
];

/// A master key given to the runner explicitly (not the parent's variable).
const CONFIGURED_KEY: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

const SERVICE_ACCOUNT: &str = "client-aaa-sa@local.iam.local";

fn sleeper() -> JobSpec {
    JobSpec {
        name: "sleeper".to_owned(),
        labels: labels("aaa"),
        image: "/bin/sleep".to_owned(),
        args: vec!["3".to_owned()],
        env: BTreeMap::from([("LEDGERLAKE_TENANT".to_owned(), "aaa".to_owned())]),
        service_account: SERVICE_ACCOUNT.to_owned(),
        secret_env: BTreeMap::new(),
        timeout_seconds: 60,
    }
}

/// The pid of a running execution, from its record.
fn pid_of(root: &Path, job: &str, id: &str) -> u32 {
    let path = root.join(format!("jobs/executions/{job}/{id}.json"));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("execution record")).expect("json");
    let pid = record["pid"]
        .as_u64()
        .expect("a started execution has a pid");
    u32::try_from(pid).expect("a pid")
}

/// The environment a process started with.
fn environ(pid: u32) -> BTreeMap<String, String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("read environ");
    raw.split(|b| *b == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            match entry.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => (entry.into_owned(), String::new()),
            }
        })
        .collect()
}

async fn wait_done(jobs: &dyn JobRunner, job: &str, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = jobs.get_execution(job, id).await.expect("get execution");
        if e.state != ExecutionState::Running {
            return;
        }
        assert!(Instant::now() < deadline, "execution {id} never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the sleeper and returns the environment its process started with.
async fn child_environment(adapters: &LocalAdapters) -> (String, BTreeMap<String, String>) {
    let jobs = adapters.jobs.as_ref();
    jobs.ensure_job(&sleeper()).await.expect("job");
    let overrides = ExecutionOverrides {
        args: None,
        env: BTreeMap::from([("LEDGERLAKE_RUN_ID".to_owned(), "run-1".to_owned())]),
    };
    let run = jobs.run_job("sleeper", &overrides).await.expect("run");
    let pid = pid_of(adapters.layout.root(), "sleeper", &run.id);
    let env = environ(pid);
    wait_done(jobs, "sleeper", &run.id).await;
    (run.id, env)
}

/// The names of `env`, for messages that must not show values.
fn names(env: &BTreeMap<String, String>) -> BTreeSet<&str> {
    env.keys().map(String::as_str).collect()
}

#[tokio::test]
async fn a_local_job_gets_its_allow_list_and_none_of_the_control_planes_secrets() {
    for (name, value) in PARENT_SECRETS {
        std::env::set_var(name, value);
    }
    std::env::set_var("RUST_LOG", "debug");
    std::env::set_var("HOME", "/nonexistent-home");
    let path = std::env::var("PATH").expect("PATH is set");

    // A runner given no master key passes none, whatever this process holds.
    let dir = tempfile::TempDir::new().expect("tempdir");
    let adapters = LocalAdapters::open(&LocalConfig::new(dir.path())).expect("open");
    let (id, env) = child_environment(&adapters).await;
    for (name, value) in PARENT_SECRETS {
        assert!(!env.contains_key(name), "{name} reached the job");
        assert!(
            env.values().all(|v| !v.contains(value)),
            "the value of {name} reached the job under another name"
        );
    }
    let root = adapters.layout.root().display().to_string();
    let expected = BTreeMap::from([
        ("PATH".to_owned(), path.clone()),
        ("RUST_LOG".to_owned(), "debug".to_owned()),
        ("LEDGERLAKE_TENANT".to_owned(), "aaa".to_owned()),
        ("LEDGERLAKE_RUN_ID".to_owned(), "run-1".to_owned()),
        ("LEDGERLAKE_DATA_DIR".to_owned(), root),
        ("LEDGERLAKE_JOB_NAME".to_owned(), "sleeper".to_owned()),
        ("LEDGERLAKE_EXECUTION_ID".to_owned(), id),
        (
            "LEDGERLAKE_SERVICE_ACCOUNT".to_owned(),
            SERVICE_ACCOUNT.to_owned(),
        ),
    ]);
    assert_eq!(
        names(&env),
        names(&expected),
        "the job's variables are exactly the allow-list"
    );
    assert!(env == expected, "a variable of the job has a wrong value");

    // A runner configured with a master key passes that key, and only it.
    let dir = tempfile::TempDir::new().expect("tempdir");
    let adapters = LocalAdapters::open(&LocalConfig {
        master_key: Some(CONFIGURED_KEY.to_owned()),
        ..LocalConfig::new(dir.path())
    })
    .expect("open");
    let (_, env) = child_environment(&adapters).await;
    assert!(
        env.get("LEDGERLAKE_MASTER_KEY").map(String::as_str) == Some(CONFIGURED_KEY),
        "the configured master key is passed, not this process's variable"
    );
    let extra: Vec<&str> = names(&env).difference(&names(&expected)).copied().collect();
    assert_eq!(extra, ["LEDGERLAKE_MASTER_KEY"]);

    // The names the runner documents are the ones it uses.
    for name in ["PATH", "RUST_LOG"] {
        assert!(INHERITED_ENV.contains(&name), "{name}");
    }
    for name in [
        "LEDGERLAKE_DATA_DIR",
        "LEDGERLAKE_MASTER_KEY",
        "LEDGERLAKE_JOB_NAME",
        "LEDGERLAKE_EXECUTION_ID",
        "LEDGERLAKE_SERVICE_ACCOUNT",
    ] {
        assert!(RUNNER_ENV.contains(&name), "{name}");
    }
}
