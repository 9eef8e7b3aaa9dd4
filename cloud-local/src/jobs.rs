//! Jobs as recorded definitions whose executions are child processes.
//!
//! An execution runs `spec.image` as a program with the job's args. Its
//! environment is an allow-list, never the control plane's own environment
//! (which holds the operator token, the webhook key, the database URL…): the
//! job's env with the execution's overrides applied, the variables the runner
//! sets itself ([`RUNNER_ENV`]: `LEDGERLAKE_DATA_DIR`, `LEDGERLAKE_JOB_NAME`,
//! `LEDGERLAKE_EXECUTION_ID`, `LEDGERLAKE_SERVICE_ACCOUNT`, and
//! `LEDGERLAKE_MASTER_KEY` only when the runner was configured with a key),
//! and from this process only [`INHERITED_ENV`] (`PATH`, `RUST_LOG`, and
//! the local warehouse's `LEDGERLAKE_LOCAL_DUCKDB_MEMORY_MIB` and
//! `LEDGERLAKE_LOCAL_DUCKDB_THREADS`) when set. Its stdout and stderr go to
//! `jobs/executions/<job>/<id>.log`; its record, `…/<id>.json`, says Running
//! with the pid until a task of this process that waits for the child writes
//! Succeeded or Failed (with the exit code). If the process that started an
//! execution dies first, the record stays Running; `get_execution` then sees
//! that the pid is gone and reports Failed "process died".
//!
//! At most `max_running` children run at once (default: twice the cores, at
//! least 4; `LEDGERLAKE_LOCAL_MAX_JOBS`). An execution started beyond that
//! waits its turn: it is recorded as Running without a pid (the port knows no
//! queued state) and its child starts when a slot frees; its timeout counts
//! from then. Should this process die first, it reports "process died" too.
//!
//! `cancel_execution` (from this process or another one) first records the
//! execution as Failed "cancelled", then stops its process: SIGTERM, and
//! SIGKILL after a grace period. An end is recorded once: whoever waits for
//! the child, a queued execution's start and the "process died" verdict write
//! only while the record still says Running, under the jobs lock, so a cancel
//! is never overwritten and a cancelled queued execution never starts.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::fsio;
use super::layout::Layout;
use super::secrets::MASTER_KEY_ENV;
use cloud::error::{CloudError, CloudResult};
use cloud::naming::Labels;
use cloud::ports::{
    Execution, ExecutionOverrides, ExecutionState, Identity, Job, JobRunner, JobSpec,
    SecretPayload, SecretStore,
};

const JOBS_LOCK: &str = "jobs";
/// The message of an execution whose process vanished without a recorded end.
pub const PROCESS_DIED: &str = "process died";
/// The message of an execution ended by `cancel_execution`.
pub const CANCELLED: &str = "cancelled";
/// How long a cancelled execution's process has to stop after SIGTERM before
/// it is killed (Cloud Run gives a cancelled task 10 s too).
const CANCEL_GRACE: Duration = Duration::from_secs(10);
/// How long to wait for a killed process to go.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// The variable that sets how many local jobs run at once.
pub const MAX_JOBS_ENV: &str = "LEDGERLAKE_LOCAL_MAX_JOBS";

/// The local cloud's data directory, set on every execution.
const DATA_DIR_ENV: &str = "LEDGERLAKE_DATA_DIR";
/// The job definition an execution belongs to.
const JOB_NAME_ENV: &str = "LEDGERLAKE_JOB_NAME";
/// The execution's id.
const EXECUTION_ID_ENV: &str = "LEDGERLAKE_EXECUTION_ID";
/// The service account the job runs as (its spec's).
const SERVICE_ACCOUNT_ENV: &str = "LEDGERLAKE_SERVICE_ACCOUNT";

/// The variables the runner itself sets on an execution (the master key only
/// when it was configured with one). Each is in the job's allow-list,
/// `job_contract::env::NAMES` (a test of `tenant-job` checks it).
pub const RUNNER_ENV: [&str; 5] = [
    DATA_DIR_ENV,
    MASTER_KEY_ENV,
    JOB_NAME_ENV,
    EXECUTION_ID_ENV,
    SERVICE_ACCOUNT_ENV,
];

/// The only variables an execution takes from this process, when set: where
/// programs are found, the log filter, and the local warehouse's limits (so
/// a job's DuckDB works within what the operator set for this machine).
/// Nothing else is inherited.
pub const INHERITED_ENV: [&str; 4] = [
    "PATH",
    "RUST_LOG",
    crate::warehouse::MEMORY_ENV,
    crate::warehouse::THREADS_ENV,
];

/// `jobs/executions/<job>/<id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExecutionRecord {
    id: String,
    job: String,
    #[serde(flatten)]
    state: ExecutionState,
    #[serde(with = "time::serde::rfc3339")]
    started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    finished_at: Option<OffsetDateTime>,
    pid: Option<u32>,
    /// The process's start time (clock ticks since boot, from /proc), so that a
    /// reused pid is not mistaken for the execution.
    pid_start: Option<u64>,
    exit_code: Option<i32>,
    log: String,
}

impl ExecutionRecord {
    fn to_port(&self) -> Execution {
        Execution {
            id: self.id.clone(),
            job: self.job.clone(),
            state: self.state.clone(),
            started_at: self.started_at,
            finished_at: self.finished_at,
        }
    }
}

fn job_resource(name: &str) -> String {
    format!("job {name}")
}

fn execution_resource(job: &str, id: &str) -> String {
    format!("execution {id} of job {job}")
}

/// `(state, start time)` of a live process from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields are
    // counted after its closing parenthesis, from field 3 (state).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// Whether the execution's process still exists. A zombie counts as alive: its
/// parent is about to reap it and record how it ended.
fn process_alive(pid: u32, recorded_start: Option<u64>) -> bool {
    match proc_stat(pid) {
        None => false,
        Some((_, start)) => recorded_start.is_none_or(|s| s == start),
    }
}

/// Executions recorded as running, by `job/id`, whose process still exists
/// or has not started yet (a queued one holds its environment already):
/// they were given this data directory's master key when they started.
pub(crate) fn running_executions(layout: &Layout) -> CloudResult<Vec<String>> {
    let root = layout.executions_root();
    let jobs = match fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(fsio::io_err("executions", &root, &e)),
    };
    let mut running = Vec::new();
    for job in jobs {
        let dir = job
            .map_err(|e| fsio::io_err("executions", &root, &e))?
            .path();
        let Ok(records) = fs::read_dir(&dir) else {
            continue;
        };
        for record in records.flatten() {
            let path = record.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Some(r) = fsio::read_json::<ExecutionRecord>("execution", &path)? else {
                continue;
            };
            let live = r.state == ExecutionState::Running
                && r.pid.is_none_or(|pid| process_alive(pid, r.pid_start));
            if live {
                running.push(format!("{}/{}", r.job, r.id));
            }
        }
    }
    running.sort();
    Ok(running)
}

/// Whether the execution's process still runs: a zombie has stopped.
fn process_running(pid: u32, recorded_start: Option<u64>) -> bool {
    match proc_stat(pid) {
        None => false,
        Some((state, start)) => state != 'Z' && recorded_start.is_none_or(|s| s == start),
    }
}

/// Stops a cancelled execution's process: SIGTERM, then SIGKILL if it still
/// runs after [`CANCEL_GRACE`]. Returns whether it has stopped.
async fn stop_process(pid: u32, recorded_start: Option<u64>) -> bool {
    use rustix::process::{kill_process, Pid, Signal};
    let Some(target) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return true;
    };
    for (signal, wait) in [(Signal::TERM, CANCEL_GRACE), (Signal::KILL, KILL_WAIT)] {
        if !process_running(pid, recorded_start) {
            return true;
        }
        match kill_process(target, signal) {
            Ok(()) => {}
            Err(rustix::io::Errno::SRCH) => return true,
            Err(e) => {
                tracing::warn!(pid, error = %e, "could not signal a cancelled execution's process");
                return false;
            }
        }
        let started = tokio::time::Instant::now();
        while process_running(pid, recorded_start) && started.elapsed() < wait {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    !process_running(pid, recorded_start)
}

fn describe_exit(status: ExitStatus) -> (ExecutionState, Option<i32>) {
    if status.success() {
        (ExecutionState::Succeeded, Some(0))
    } else if let Some(code) = status.code() {
        (
            ExecutionState::Failed {
                message: format!("exited with code {code}"),
            },
            Some(code),
        )
    } else {
        let signal = status
            .signal()
            .map_or_else(|| "?".to_owned(), |s| s.to_string());
        (
            ExecutionState::Failed {
                message: format!("killed by signal {signal}"),
            },
            None,
        )
    }
}

fn read_job(layout: &Layout, name: &str) -> CloudResult<Job> {
    let resource = job_resource(name);
    fsio::read_json::<Job>(&resource, &layout.job(name))?
        .ok_or_else(|| CloudError::not_found(resource))
}

fn write_record(layout: &Layout, record: &ExecutionRecord) -> CloudResult<()> {
    let resource = execution_resource(&record.job, &record.id);
    let bytes = fsio::to_json(&resource, record)?;
    fsio::write_atomic(
        &resource,
        &layout.tmp_dir(),
        &layout.execution(&record.job, &record.id),
        &bytes,
    )
}

/// Writes `record` if the stored record still says Running (under the jobs
/// lock): an end recorded first (a cancel) stands, and a deleted job's
/// executions stay deleted. Returns whether it wrote.
fn update_running(layout: &Layout, record: &ExecutionRecord) -> CloudResult<bool> {
    let resource = execution_resource(&record.job, &record.id);
    let _lock = fsio::lock(&resource, &layout.lock_file(JOBS_LOCK))?;
    let path = layout.execution(&record.job, &record.id);
    match fsio::read_json::<ExecutionRecord>(&resource, &path)? {
        Some(current) if current.state == ExecutionState::Running => {
            write_record(layout, record)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// [`update_running`] off the async threads; a failure is logged as `what`.
async fn update_running_logged(layout: &Arc<Layout>, record: ExecutionRecord, what: &str) -> bool {
    let (layout, job, id) = (layout.clone(), record.job.clone(), record.id.clone());
    let outcome = fsio::blocking("execution", move || update_running(&layout, &record)).await;
    match outcome {
        Ok(wrote) => {
            if !wrote {
                tracing::debug!(%job, execution = %id, "the execution's end was recorded first (cancelled, or its job deleted)");
            }
            wrote
        }
        Err(e) => {
            tracing::warn!(%job, execution = %id, error = %e, "could not record the {what} of an execution");
            false
        }
    }
}

fn validate_spec(spec: &JobSpec) -> CloudResult<()> {
    fsio::validate_name("job", &spec.name)?;
    if spec.image.trim().is_empty() || spec.image.contains('\0') {
        return Err(CloudError::permanent(
            job_resource(&spec.name),
            "the job's image (the program to run, locally) is empty or invalid",
        ));
    }
    if !spec.service_account.is_empty() {
        fsio::validate_name("service account", &spec.service_account)?;
    }
    Ok(())
}

type Running = StdMutex<HashSet<(String, String)>>;

/// Job definitions under `jobs/`, executions under `jobs/executions/<job>/`.
#[derive(Clone)]
pub struct LocalJobRunner {
    layout: Arc<Layout>,
    /// Executions whose child this process is waiting for, or will start.
    running: Arc<Running>,
    /// One permit per child that may run at once.
    slots: Arc<Semaphore>,
    /// The master key the runner was configured with, passed to every
    /// execution; `None`: the jobs read the key file of the data directory.
    master_key: Option<Arc<str>>,
    /// Where a job's secret references are read, as its account.
    secret_source: Option<SecretSource>,
}

/// The identities and secrets of the same local cloud, for the secret
/// references of job definitions (`JobSpec::secret_env`).
#[derive(Clone)]
struct SecretSource {
    identity: Arc<crate::LocalIdentity>,
    secrets: Arc<crate::LocalSecretStore>,
}

// The master key is a secret: never print it.
impl std::fmt::Debug for LocalJobRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalJobRunner")
            .field("layout", &self.layout)
            .field(
                "master_key",
                &self.master_key.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl LocalJobRunner {
    /// A runner with the default cap on running children.
    pub fn new(layout: Arc<Layout>) -> Self {
        Self::with_max_running(layout, Self::default_max_running())
    }

    /// A runner that runs at most `max` children at once (at least 1); more
    /// executions wait for a slot.
    pub fn with_max_running(layout: Arc<Layout>, max: usize) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        LocalJobRunner {
            layout,
            running: Arc::new(StdMutex::new(HashSet::new())),
            slots: Arc::new(Semaphore::new(max)),
            master_key: None,
            secret_source: None,
        }
    }

    /// Resolves the secret references of job definitions from `secrets`, as
    /// the job's service account (its key from `identity`), at each start.
    /// Without it, a job with secret references does not start.
    pub fn with_secrets(
        mut self,
        identity: Arc<crate::LocalIdentity>,
        secrets: Arc<crate::LocalSecretStore>,
    ) -> Self {
        self.secret_source = Some(SecretSource { identity, secrets });
        self
    }

    /// The values of `spec`'s secret references, read as its account; a
    /// reference the account may not read stops the start, as on Cloud Run.
    async fn resolve_secrets(&self, spec: &JobSpec) -> CloudResult<Vec<(String, SecretPayload)>> {
        if spec.secret_env.is_empty() {
            return Ok(Vec::new());
        }
        let Some(source) = &self.secret_source else {
            return Err(CloudError::permanent(
                job_resource(&spec.name),
                "its definition references secrets, and this runner reads no secrets",
            ));
        };
        let cred = source
            .identity
            .credential_for(&spec.service_account)
            .await?;
        let mut values = Vec::with_capacity(spec.secret_env.len());
        for (variable, secret) in &spec.secret_env {
            let (_, payload) = source.secrets.access_latest(&cred, secret).await?;
            values.push((variable.clone(), payload));
        }
        Ok(values)
    }

    /// Passes `master_key` (the value of `LEDGERLAKE_MASTER_KEY` the local
    /// cloud was opened with) to every execution; `None` passes none, and the
    /// jobs use the key file of the data directory.
    pub fn with_master_key(mut self, master_key: Option<&str>) -> Self {
        self.master_key = master_key.map(Arc::from);
        self
    }

    /// Twice the cores, at least 4.
    pub fn default_max_running() -> usize {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        (2 * cores).max(4)
    }

    /// The cap from [`MAX_JOBS_ENV`] when set (a whole number from 1), else
    /// the default.
    pub fn max_running_from_env() -> CloudResult<usize> {
        match std::env::var(MAX_JOBS_ENV) {
            Err(std::env::VarError::NotPresent) => Ok(Self::default_max_running()),
            Ok(value) => match value.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(CloudError::permanent(
                    format!("setting {MAX_JOBS_ENV}"),
                    format!(
                        "{} is not a number of jobs (a whole number from 1)",
                        fsio::shown(&value)
                    ),
                )),
            },
            Err(e) => Err(CloudError::permanent(
                format!("setting {MAX_JOBS_ENV}"),
                e.to_string(),
            )),
        }
    }

    fn is_waited_here(&self, job: &str, id: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&(job.to_owned(), id.to_owned()))
    }

    /// Marks the execution as followed by this process (until its end is recorded).
    fn follow(&self, record: &ExecutionRecord) -> (String, String) {
        let key = (record.job.clone(), record.id.clone());
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone());
        key
    }

    /// Waits for a started child and records how it ended.
    fn spawn_waiter(
        &self,
        child: tokio::process::Child,
        record: ExecutionRecord,
        timeout_seconds: u64,
        slot: OwnedSemaphorePermit,
    ) {
        let key = self.follow(&record);
        let (layout, running) = (self.layout.clone(), self.running.clone());
        tokio::spawn(async move {
            wait_and_record(&layout, child, record, timeout_seconds).await;
            drop(slot);
            unfollow(&running, &key);
        });
    }

    /// Starts a queued execution's child once a slot frees, then waits for it.
    fn spawn_queued(
        &self,
        mut command: tokio::process::Command,
        mut record: ExecutionRecord,
        timeout_seconds: u64,
    ) {
        let key = self.follow(&record);
        let (layout, running, slots) = (
            self.layout.clone(),
            self.running.clone(),
            self.slots.clone(),
        );
        tokio::spawn(async move {
            let Ok(slot) = slots.acquire_owned().await else {
                // The semaphore is never closed; nothing to start without a slot.
                unfollow(&running, &key);
                return;
            };
            let still_queued = {
                let (layout, job, id) = (layout.clone(), record.job.clone(), record.id.clone());
                fsio::blocking("execution", move || {
                    let resource = execution_resource(&job, &id);
                    fsio::read_json::<ExecutionRecord>(&resource, &layout.execution(&job, &id))
                })
                .await
            };
            if !matches!(still_queued, Ok(Some(r)) if r.state == ExecutionState::Running) {
                // Cancelled while queued, or deleted with its job: nothing to run or record.
                drop(slot);
                unfollow(&running, &key);
                return;
            }
            match command.spawn() {
                Ok(mut child) => {
                    record.pid = child.id();
                    record.pid_start = record.pid.and_then(proc_stat).map(|(_, start)| start);
                    record.started_at = fsio::now();
                    if update_running_logged(&layout, record.clone(), "start").await {
                        tracing::debug!(job = %record.job, execution = %record.id, pid = record.pid, "started queued execution");
                        wait_and_record(&layout, child, record, timeout_seconds).await;
                    } else {
                        // Cancelled just as it started: it does not run.
                        let _ = child.kill().await;
                    }
                }
                Err(e) => {
                    record.state = ExecutionState::Failed {
                        message: format!("could not start the job's program: {e}"),
                    };
                    record.finished_at = Some(fsio::now());
                    update_running_logged(&layout, record, "end").await;
                }
            }
            drop(slot);
            unfollow(&running, &key);
        });
    }
}

fn unfollow(running: &Running, key: &(String, String)) {
    running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(key);
}

/// Waits for `child` (killing it past `timeout_seconds`, 0 for none) and
/// records how it ended.
async fn wait_and_record(
    layout: &Arc<Layout>,
    mut child: tokio::process::Child,
    mut record: ExecutionRecord,
    timeout_seconds: u64,
) {
    let waited = if timeout_seconds == 0 {
        Some(child.wait().await)
    } else {
        tokio::time::timeout(Duration::from_secs(timeout_seconds), child.wait())
            .await
            .ok()
    };
    let (state, code) = match waited {
        Some(Ok(status)) => describe_exit(status),
        Some(Err(e)) => (
            ExecutionState::Failed {
                message: format!("could not wait for the process: {e}"),
            },
            None,
        ),
        None => {
            let _ = child.kill().await;
            (
                ExecutionState::Failed {
                    message: format!("timed out after {timeout_seconds} s and was killed"),
                },
                None,
            )
        }
    };
    record.state = state;
    record.exit_code = code;
    record.finished_at = Some(fsio::now());
    update_running_logged(layout, record, "end").await;
}

#[async_trait]
impl JobRunner for LocalJobRunner {
    async fn ensure_job(&self, spec: &JobSpec) -> CloudResult<Job> {
        validate_spec(spec)?;
        let layout = self.layout.clone();
        let spec = spec.clone();
        fsio::blocking("job", move || {
            let resource = job_resource(&spec.name);
            let _lock = fsio::lock(&resource, &layout.lock_file(JOBS_LOCK))?;
            let path = layout.job(&spec.name);
            let now = fsio::now();
            let job = match fsio::read_json::<Job>(&resource, &path)? {
                Some(existing) => {
                    fsio::check_owner(&resource, &existing.spec.labels, &spec.labels)?;
                    if existing.spec == spec {
                        return Ok(existing);
                    }
                    tracing::debug!(job = %spec.name, "updated job");
                    Job {
                        spec,
                        created_at: existing.created_at,
                        updated_at: now,
                    }
                }
                None => {
                    tracing::debug!(job = %spec.name, "created job");
                    Job {
                        spec,
                        created_at: now,
                        updated_at: now,
                    }
                }
            };
            let bytes = fsio::to_json(&resource, &job)?;
            fsio::write_atomic(&resource, &layout.tmp_dir(), &path, &bytes)?;
            Ok(job)
        })
        .await
    }

    async fn get_job(&self, name: &str) -> CloudResult<Job> {
        fsio::validate_name("job", name)?;
        let layout = self.layout.clone();
        let name = name.to_owned();
        fsio::blocking("job", move || read_job(&layout, &name)).await
    }

    async fn list_jobs(&self, labels: &Labels) -> CloudResult<Vec<Job>> {
        let layout = self.layout.clone();
        let labels = labels.clone();
        fsio::blocking("jobs", move || {
            let mut out = Vec::new();
            for name in fsio::json_names("jobs", &layout.jobs_dir())? {
                match read_job(&layout, &name) {
                    Ok(j) if fsio::has_labels(&j.spec.labels, &labels) => out.push(j),
                    Ok(_) | Err(CloudError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete_job(&self, name: &str) -> CloudResult<()> {
        fsio::validate_name("job", name)?;
        let layout = self.layout.clone();
        let name = name.to_owned();
        fsio::blocking("job", move || {
            let resource = job_resource(&name);
            let _lock = fsio::lock(&resource, &layout.lock_file(JOBS_LOCK))?;
            let path = layout.job(&name);
            if !path.exists() {
                return Err(CloudError::not_found(resource));
            }
            fsio::remove_tree(&resource, &layout.tmp_dir(), &layout.executions_dir(&name))?;
            fsio::remove_file(&resource, &path)?;
            tracing::debug!(job = %name, "deleted job");
            Ok(())
        })
        .await
    }

    async fn run_job(&self, name: &str, overrides: &ExecutionOverrides) -> CloudResult<Execution> {
        fsio::validate_name("job", name)?;
        let job = self.get_job(name).await?;
        let spec = job.spec;
        let secret_values = self.resolve_secrets(&spec).await?;
        let started_at = fsio::now();
        let id = format!(
            "{}-{}",
            started_at.unix_timestamp_nanos() / 1_000_000,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let resource = execution_resource(name, &id);
        let dir = self.layout.executions_dir(name);
        let log_path = self.layout.execution_log(name, &id);
        let log = {
            let (dir, log_path, resource) = (dir.clone(), log_path.clone(), resource.clone());
            fsio::blocking("execution", move || {
                fsio::create_dir_all(&resource, &dir)?;
                OpenOptions::new()
                    .create_new(true)
                    .write(true)
                    .mode(0o600)
                    .open(&log_path)
                    .map_err(|e| fsio::io_fail(&resource, &log_path, &e))
            })
            .await?
        };
        let stderr = log
            .try_clone()
            .map_err(|e| fsio::io_fail(&resource, &log_path, &e))?;
        let args = overrides.args.as_ref().unwrap_or(&spec.args);
        let mut command = tokio::process::Command::new(&spec.image);
        command.args(args).env_clear();
        for name in INHERITED_ENV {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command
            .env(DATA_DIR_ENV, self.layout.root())
            .envs(&spec.env)
            .envs(&overrides.env)
            .env(JOB_NAME_ENV, name)
            .env(EXECUTION_ID_ENV, &id)
            .env(SERVICE_ACCOUNT_ENV, &spec.service_account);
        if let Some(key) = &self.master_key {
            command.env(MASTER_KEY_ENV, key.as_ref());
        }
        // After the overrides: a run cannot replace what the definition
        // references.
        for (variable, payload) in &secret_values {
            let value = std::str::from_utf8(payload.expose()).map_err(|_| {
                CloudError::permanent(
                    job_resource(name),
                    format!("the secret behind {variable} is not UTF-8 text"),
                )
            })?;
            command.env(variable, value);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .kill_on_drop(false);
        let mut record = ExecutionRecord {
            id: id.clone(),
            job: name.to_owned(),
            state: ExecutionState::Running,
            started_at,
            finished_at: None,
            pid: None,
            pid_start: None,
            exit_code: None,
            log: log_path.display().to_string(),
        };
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            // Every slot is taken: recorded as running without a pid, started later.
            {
                let layout = self.layout.clone();
                let record = record.clone();
                fsio::blocking("execution", move || write_record(&layout, &record)).await?;
            }
            tracing::debug!(job = %name, execution = %id, "queued execution: every job slot is taken");
            let execution = record.to_port();
            self.spawn_queued(command, record, spec.timeout_seconds);
            return Ok(execution);
        };
        let child = command.spawn().map_err(|e| {
            CloudError::permanent(
                resource.clone(),
                format!("could not start {}: {e}", fsio::shown(&spec.image)),
            )
        })?;
        record.pid = child.id();
        record.pid_start = record.pid.and_then(proc_stat).map(|(_, start)| start);
        // Recorded as running before the waiter starts, so that its final write comes last.
        {
            let layout = self.layout.clone();
            let record = record.clone();
            fsio::blocking("execution", move || write_record(&layout, &record)).await?;
        }
        tracing::debug!(job = %name, execution = %id, pid = record.pid, "started execution");
        let execution = record.to_port();
        self.spawn_waiter(child, record, spec.timeout_seconds, slot);
        Ok(execution)
    }

    async fn get_execution(&self, job: &str, id: &str) -> CloudResult<Execution> {
        fsio::validate_name("job", job)?;
        fsio::validate_name("execution", id)?;
        let waited_here = self.is_waited_here(job, id);
        let layout = self.layout.clone();
        let (job, id) = (job.to_owned(), id.to_owned());
        fsio::blocking("execution", move || {
            let resource = execution_resource(&job, &id);
            let mut record = fsio::read_json::<ExecutionRecord>(&resource, &layout.execution(&job, &id))?
                .ok_or_else(|| CloudError::not_found(resource.clone()))?;
            let dead = record.state == ExecutionState::Running
                && !waited_here
                && record.pid.is_none_or(|pid| !process_alive(pid, record.pid_start));
            if dead {
                record.state = ExecutionState::Failed {
                    message: PROCESS_DIED.to_owned(),
                };
                record.finished_at = Some(fsio::now());
                if update_running(&layout, &record)? {
                    tracing::warn!(%job, execution = %id, "execution's process died without a recorded end");
                } else if let Some(current) = fsio::read_json::<ExecutionRecord>(&resource, &layout.execution(&job, &id))? {
                    // Its end was recorded meanwhile (a cancel): that stands.
                    record = current;
                }
            }
            Ok(record.to_port())
        })
        .await
    }

    async fn cancel_execution(&self, job: &str, id: &str) -> CloudResult<Execution> {
        fsio::validate_name("job", job)?;
        fsio::validate_name("execution", id)?;
        let layout = self.layout.clone();
        let (job, id) = (job.to_owned(), id.to_owned());
        // The end is recorded first, so that whoever waits for the process
        // (this process or another) keeps it rather than recording its own.
        let (record, process) = fsio::blocking("execution", move || {
            let resource = execution_resource(&job, &id);
            let _lock = fsio::lock(&resource, &layout.lock_file(JOBS_LOCK))?;
            let mut record =
                fsio::read_json::<ExecutionRecord>(&resource, &layout.execution(&job, &id))?
                    .ok_or_else(|| CloudError::not_found(resource))?;
            if record.state != ExecutionState::Running {
                return Ok((record, None));
            }
            let process = record.pid.map(|pid| (pid, record.pid_start));
            record.state = ExecutionState::Failed {
                message: CANCELLED.to_owned(),
            };
            record.finished_at = Some(fsio::now());
            write_record(&layout, &record)?;
            Ok((record, process))
        })
        .await?;
        if let Some((pid, start)) = process {
            if stop_process(pid, start).await {
                tracing::info!(job = %record.job, execution = %record.id, pid, "cancelled execution");
            } else {
                tracing::warn!(job = %record.job, execution = %record.id, pid, "cancelled execution, but its process does not stop");
            }
        }
        Ok(record.to_port())
    }
}
