//! Local jobs: definitions and real child-process executions.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cloud::ports::{Execution, ExecutionOverrides, ExecutionState, JobRunner, JobSpec};
use cloud::CloudError;
use cloud_local::{LocalJobRunner, CANCELLED, PROCESS_DIED};
use common::{labels, open_temp};

fn spec(name: &str, tenant: &str, image: &str, args: &[&str]) -> JobSpec {
    JobSpec {
        name: name.to_owned(),
        labels: labels(tenant),
        image: image.to_owned(),
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        env: BTreeMap::from([("MODE".to_owned(), "spec".to_owned())]),
        service_account: "client-aaa-sa@local.iam.local".to_owned(),
        secret_env: BTreeMap::new(),
        timeout_seconds: 60,
    }
}

async fn wait_done(jobs: &dyn JobRunner, job: &str, id: &str) -> Execution {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = jobs.get_execution(job, id).await.expect("get execution");
        if e.state != ExecutionState::Running {
            return e;
        }
        assert!(Instant::now() < deadline, "execution {id} never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn ensure_job_creates_updates_and_refuses_a_foreign_owner() {
    let (dir, cloud) = open_temp();
    let s = spec("ingest-aaa", "aaa", "/bin/true", &[]);
    let created = cloud.jobs.ensure_job(&s).await.expect("create");
    assert!(dir.path().join("jobs/ingest-aaa.json").is_file());
    assert_eq!(
        cloud.jobs.ensure_job(&s).await.expect("same"),
        created,
        "unchanged when equal"
    );
    let mut changed = s.clone();
    changed.args = vec!["--full".into()];
    let updated = cloud.jobs.ensure_job(&changed).await.expect("update");
    assert_eq!(updated.spec, changed);
    assert_eq!(updated.created_at, created.created_at);
    assert!(updated.updated_at >= created.updated_at);
    assert_eq!(
        cloud.jobs.get_job("ingest-aaa").await.expect("get").spec,
        changed
    );
    assert!(matches!(
        cloud
            .jobs
            .ensure_job(&spec("ingest-aaa", "bbb", "/bin/true", &[]))
            .await,
        Err(CloudError::AlreadyExists { .. })
    ));
    cloud
        .jobs
        .ensure_job(&spec("transform-aaa", "aaa", "/bin/true", &[]))
        .await
        .expect("create");
    cloud
        .jobs
        .ensure_job(&spec("ingest-bbb", "bbb", "/bin/true", &[]))
        .await
        .expect("create");
    let names: Vec<_> = cloud
        .jobs
        .list_jobs(&labels("aaa"))
        .await
        .expect("list")
        .into_iter()
        .map(|j| j.spec.name)
        .collect();
    assert_eq!(names, ["ingest-aaa", "transform-aaa"]);
    cloud.jobs.delete_job("ingest-aaa").await.expect("delete");
    assert!(matches!(
        cloud.jobs.delete_job("ingest-aaa").await,
        Err(CloudError::NotFound { .. })
    ));
    assert!(matches!(
        cloud.jobs.get_job("ingest-aaa").await,
        Err(CloudError::NotFound { .. })
    ));
    assert!(matches!(
        cloud
            .jobs
            .run_job("ingest-aaa", &ExecutionOverrides::default())
            .await,
        Err(CloudError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_run_succeeds_or_fails_with_its_exit_code() {
    let (_dir, cloud) = open_temp();
    cloud
        .jobs
        .ensure_job(&spec("ok", "aaa", "/bin/true", &[]))
        .await
        .expect("create");
    cloud
        .jobs
        .ensure_job(&spec("bad", "aaa", "/bin/sh", &["-c", "exit 3"]))
        .await
        .expect("create");
    let run = cloud
        .jobs
        .run_job("ok", &ExecutionOverrides::default())
        .await
        .expect("run");
    assert_eq!(run.job, "ok");
    let done = wait_done(cloud.jobs.as_ref(), "ok", &run.id).await;
    assert_eq!(done.state, ExecutionState::Succeeded);
    assert!(done.finished_at.is_some());

    let run = cloud
        .jobs
        .run_job("bad", &ExecutionOverrides::default())
        .await
        .expect("run");
    let done = wait_done(cloud.jobs.as_ref(), "bad", &run.id).await;
    assert_eq!(
        done.state,
        ExecutionState::Failed {
            message: "exited with code 3".into()
        }
    );
    assert!(matches!(
        cloud.jobs.get_execution("bad", "no-such-id").await,
        Err(CloudError::NotFound { .. })
    ));

    cloud
        .jobs
        .ensure_job(&spec("missing", "aaa", "/nonexistent/program", &[]))
        .await
        .expect("create");
    assert!(matches!(
        cloud
            .jobs
            .run_job("missing", &ExecutionOverrides::default())
            .await,
        Err(CloudError::Permanent { .. })
    ));
}

#[tokio::test]
async fn secret_references_are_read_as_the_jobs_account_at_each_start_and_refused_without_a_grant()
{
    use cloud::ports::{roles, Credential, ResourceRef, SecretPayload, SecretSpec, SecretStore};
    let (dir, cloud) = open_temp();
    let cred = common::service_account(&cloud, "aaa").await;
    cloud
        .secrets
        .ensure_secret(&SecretSpec {
            name: "app-secret".into(),
            labels: BTreeMap::from([("managed-by".to_owned(), "ledgerlake".to_owned())]),
        })
        .await
        .expect("secret");
    cloud
        .secrets
        .add_version(
            &Credential::Platform,
            "app-secret",
            &SecretPayload::new(b"first-value".to_vec()),
        )
        .await
        .expect("version");
    let script = "echo app=$APP";
    let job = JobSpec {
        secret_env: BTreeMap::from([("APP".to_owned(), "app-secret".to_owned())]),
        service_account: common::email(&cred),
        ..spec("refs", "aaa", "/bin/sh", &["-c", script])
    };
    cloud.jobs.ensure_job(&job).await.expect("create");
    // The definition holds the reference, never the value.
    let stored = std::fs::read_to_string(dir.path().join("jobs/refs.json")).expect("definition");
    assert!(stored.contains("app-secret") && !stored.contains("first-value"));

    // Without a grant the job does not start.
    let refused = cloud
        .jobs
        .run_job("refs", &ExecutionOverrides::default())
        .await;
    assert!(common::is_denied(&refused), "{refused:?}");

    common::grant_to(
        &cloud,
        &cred,
        ResourceRef::Secret("app-secret".into()),
        roles::SECRET_ACCESSOR,
    )
    .await;
    // A new version is what the next start reads; a run's overrides cannot
    // replace a referenced variable.
    cloud
        .secrets
        .add_version(
            &Credential::Platform,
            "app-secret",
            &SecretPayload::new(b"second-value".to_vec()),
        )
        .await
        .expect("version");
    let overrides = ExecutionOverrides {
        args: None,
        env: BTreeMap::from([("APP".to_owned(), "from-the-run".to_owned())]),
    };
    let run = cloud.jobs.run_job("refs", &overrides).await.expect("run");
    let done = wait_done(cloud.jobs.as_ref(), "refs", &run.id).await;
    assert_eq!(done.state, ExecutionState::Succeeded);
    let log = std::fs::read_to_string(
        dir.path()
            .join(format!("jobs/executions/refs/{}.log", run.id)),
    )
    .expect("log");
    assert_eq!(log.trim(), "app=second-value");

    // A runner that reads no secrets refuses such a job rather than start it
    // without its secrets.
    let bare = LocalJobRunner::new(cloud.layout.clone());
    let refused = bare.run_job("refs", &ExecutionOverrides::default()).await;
    assert!(
        matches!(&refused, Err(CloudError::Permanent { message, .. }) if message.contains("references secrets")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_run_gets_its_env_and_overrides_and_logs_its_output() {
    let (dir, cloud) = open_temp();
    let script = "echo job=$LEDGERLAKE_JOB_NAME exec=$LEDGERLAKE_EXECUTION_ID sa=$LEDGERLAKE_SERVICE_ACCOUNT mode=$MODE arg=$0; echo oops >&2";
    cloud
        .jobs
        .ensure_job(&spec("env", "aaa", "/bin/sh", &["-c", script, "spec-arg"]))
        .await
        .expect("create");
    let overrides = ExecutionOverrides {
        args: Some(vec!["-c".into(), script.into(), "override-arg".into()]),
        env: BTreeMap::from([("MODE".to_owned(), "override".to_owned())]),
    };
    let run = cloud.jobs.run_job("env", &overrides).await.expect("run");
    let done = wait_done(cloud.jobs.as_ref(), "env", &run.id).await;
    assert_eq!(done.state, ExecutionState::Succeeded);
    let log = std::fs::read_to_string(
        dir.path()
            .join(format!("jobs/executions/env/{}.log", run.id)),
    )
    .expect("log");
    assert!(
        log.contains(&format!(
            "job=env exec={} sa=client-aaa-sa@local.iam.local mode=override arg=override-arg",
            run.id
        )),
        "{log}"
    );
    assert!(log.contains("oops"), "stderr is logged too: {log}");
}

#[tokio::test]
async fn a_run_past_its_timeout_is_killed() {
    let (_dir, cloud) = open_temp();
    let mut s = spec("slow", "aaa", "/bin/sleep", &["30"]);
    s.timeout_seconds = 1;
    cloud.jobs.ensure_job(&s).await.expect("create");
    let run = cloud
        .jobs
        .run_job("slow", &ExecutionOverrides::default())
        .await
        .expect("run");
    assert_eq!(
        cloud
            .jobs
            .get_execution("slow", &run.id)
            .await
            .expect("get")
            .state,
        ExecutionState::Running
    );
    let done = wait_done(cloud.jobs.as_ref(), "slow", &run.id).await;
    match done.state {
        ExecutionState::Failed { message } => assert!(message.contains("timed out"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_running_record_whose_process_is_gone_reports_process_died() {
    let (dir, cloud) = open_temp();
    cloud
        .jobs
        .ensure_job(&spec("j", "aaa", "/bin/true", &[]))
        .await
        .expect("create");
    // A pid that is surely gone: a child that has exited and been reaped.
    let mut child = std::process::Command::new("/bin/true")
        .spawn()
        .expect("spawn");
    let gone = child.id();
    child.wait().expect("wait");
    let record = |id: &str, pid: u32| {
        serde_json::json!({
            "id": id, "job": "j", "state": "running",
            "started_at": "2024-01-01T00:00:00Z", "finished_at": null,
            "pid": pid, "pid_start": null, "exit_code": null, "log": "x.log"
        })
    };
    let execs = dir.path().join("jobs/executions/j");
    std::fs::create_dir_all(&execs).expect("mkdir");
    std::fs::write(execs.join("dead.json"), record("dead", gone).to_string()).expect("write");
    // A live process (this test) as a control: still running.
    std::fs::write(
        execs.join("alive.json"),
        record("alive", std::process::id()).to_string(),
    )
    .expect("write");

    let dead = cloud.jobs.get_execution("j", "dead").await.expect("get");
    assert_eq!(
        dead.state,
        ExecutionState::Failed {
            message: PROCESS_DIED.into()
        }
    );
    assert!(dead.finished_at.is_some());
    // The verdict is recorded.
    let stored = std::fs::read_to_string(execs.join("dead.json")).expect("read");
    assert!(stored.contains(PROCESS_DIED), "{stored}");
    let alive = cloud.jobs.get_execution("j", "alive").await.expect("get");
    assert_eq!(alive.state, ExecutionState::Running);
}

#[tokio::test]
async fn at_most_max_running_children_run_at_once_and_the_rest_wait_their_turn() {
    let (dir, cloud) = open_temp();
    let jobs = LocalJobRunner::with_max_running(cloud.layout.clone(), 2);
    let marks = dir.path().join("marks");
    std::fs::create_dir(&marks).expect("mkdir");
    // Each child notes when it starts and ends (nanoseconds), in its own file.
    let script = "m=\"$MARKS/$LEDGERLAKE_EXECUTION_ID\"; date +%s%N > \"$m\"; sleep 0.4; date +%s%N >> \"$m\"";
    let mut s = spec("slow", "aaa", "/bin/sh", &["-c", script]);
    s.env
        .insert("MARKS".to_owned(), marks.display().to_string());
    jobs.ensure_job(&s).await.expect("create");

    let started = Instant::now();
    let mut runs = Vec::new();
    for _ in 0..5 {
        let run = jobs
            .run_job("slow", &ExecutionOverrides::default())
            .await
            .expect("run");
        // Queued executions are reported as running (the port knows no queue).
        assert_eq!(run.state, ExecutionState::Running);
        runs.push(run);
    }
    assert!(
        started.elapsed() < Duration::from_millis(350),
        "run_job waited for a slot: {:?}",
        started.elapsed()
    );
    for run in &runs {
        let done = wait_done(&jobs, "slow", &run.id).await;
        assert_eq!(done.state, ExecutionState::Succeeded, "{}", run.id);
    }

    let mut spans = Vec::new();
    for run in &runs {
        let text = std::fs::read_to_string(marks.join(&run.id)).expect("marks");
        let times: Vec<u128> = text
            .lines()
            .map(|l| l.trim().parse().expect("a time"))
            .collect();
        assert_eq!(times.len(), 2, "{text}");
        spans.push((times[0], times[1]));
    }
    let most = spans
        .iter()
        .map(|(start, _)| {
            spans
                .iter()
                .filter(|(s, e)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(most <= 2, "{most} children ran at once: {spans:?}");
    assert!(most >= 1);
}

#[test]
fn the_default_maximum_of_running_children_is_twice_the_cores_and_at_least_4() {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(LocalJobRunner::default_max_running(), (2 * cores).max(4));
}

/// The pid of a started execution, from its record.
fn pid_of(root: &std::path::Path, job: &str, id: &str) -> Option<u32> {
    let path = root.join(format!("jobs/executions/{job}/{id}.json"));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("execution record")).expect("json");
    record["pid"].as_u64().and_then(|p| u32::try_from(p).ok())
}

/// Whether the process still runs (a zombie does not).
fn runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next().map(str::to_owned))
        })
        .is_some_and(|state| state != "Z")
}

async fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while runs(pid) {
        assert!(Instant::now() < deadline, "process {pid} still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_cancelled(state: &ExecutionState) -> bool {
    matches!(state, ExecutionState::Failed { message } if message == CANCELLED)
}

#[tokio::test]
async fn cancelling_an_execution_stops_its_process_and_ends_it_as_failed() {
    let (dir, cloud) = open_temp();
    cloud
        .jobs
        .ensure_job(&spec("long", "aaa", "/bin/sleep", &["30"]))
        .await
        .expect("create");
    let run = cloud
        .jobs
        .run_job("long", &ExecutionOverrides::default())
        .await
        .expect("run");
    let pid = pid_of(dir.path(), "long", &run.id).expect("started");
    assert!(runs(pid));

    let cancelled = cloud
        .jobs
        .cancel_execution("long", &run.id)
        .await
        .expect("cancel");
    assert!(is_cancelled(&cancelled.state), "{cancelled:?}");
    assert!(cancelled.finished_at.is_some());
    wait_gone(pid).await;
    // The waiter has seen the child end by now: the cancel stays recorded.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = cloud
        .jobs
        .get_execution("long", &run.id)
        .await
        .expect("get");
    assert!(is_cancelled(&got.state), "{got:?}");
    // Idempotent: cancelling again changes nothing.
    let again = cloud
        .jobs
        .cancel_execution("long", &run.id)
        .await
        .expect("again");
    assert_eq!(again, got);

    // An execution that ended on its own is left as it ended.
    cloud
        .jobs
        .ensure_job(&spec("quick", "aaa", "/bin/true", &[]))
        .await
        .expect("create");
    let quick = cloud
        .jobs
        .run_job("quick", &ExecutionOverrides::default())
        .await
        .expect("run");
    let done = wait_done(cloud.jobs.as_ref(), "quick", &quick.id).await;
    assert_eq!(done.state, ExecutionState::Succeeded);
    let after = cloud
        .jobs
        .cancel_execution("quick", &quick.id)
        .await
        .expect("cancel a finished one");
    assert_eq!(after, done);

    assert!(matches!(
        cloud
            .jobs
            .cancel_execution("long", "no-such-execution")
            .await,
        Err(CloudError::NotFound { .. })
    ));
}

#[tokio::test]
async fn an_execution_is_cancelled_from_another_process_and_a_queued_one_never_starts() {
    let (dir, cloud) = open_temp();
    // The runner that started the children (the service), and another one
    // on the same data directory (an operator's command), which follows none.
    let starter = LocalJobRunner::with_max_running(cloud.layout.clone(), 1);
    let other = LocalJobRunner::new(cloud.layout.clone());
    starter
        .ensure_job(&spec("long", "aaa", "/bin/sleep", &["30"]))
        .await
        .expect("create");
    let first = starter
        .run_job("long", &ExecutionOverrides::default())
        .await
        .expect("run");
    let queued = starter
        .run_job("long", &ExecutionOverrides::default())
        .await
        .expect("queued");
    let pid = pid_of(dir.path(), "long", &first.id).expect("started");
    assert_eq!(
        pid_of(dir.path(), "long", &queued.id),
        None,
        "waits its turn"
    );

    let cancelled = other
        .cancel_execution("long", &queued.id)
        .await
        .expect("cancel queued");
    assert!(is_cancelled(&cancelled.state), "{cancelled:?}");
    let cancelled = other
        .cancel_execution("long", &first.id)
        .await
        .expect("cancel running");
    assert!(is_cancelled(&cancelled.state), "{cancelled:?}");
    wait_gone(pid).await;

    // The freed slot does not start the cancelled execution, and the starter
    // does not overwrite either cancel with its own verdict.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        pid_of(dir.path(), "long", &queued.id),
        None,
        "never started"
    );
    for id in [&first.id, &queued.id] {
        for runner in [&starter, &other] {
            let got = runner.get_execution("long", id).await.expect("get");
            assert!(is_cancelled(&got.state), "{got:?}");
        }
    }
}
