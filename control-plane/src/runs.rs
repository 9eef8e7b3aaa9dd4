//! Runs of `tenant-job`: started through the jobs port as executions of the
//! tenant's job definitions, recorded in the state store, and followed until
//! they end, when the job's own summary (in the tenant's bucket) is copied
//! into the run record. A run whose process died is found by the jobs port
//! and recorded as failed. A teardown cancels the tenant's active runs
//! ([`Runs::cancel_active`]): through the jobs port, and recorded as failed.

use std::time::Duration;

use cloud::error::CloudError;
use cloud::naming::{self, DeploymentPrefix, TenantId};
use cloud::ports::{Credential, ExecutionOverrides, ExecutionState};
use cloud::{Cloud, Clouds};
use job_contract::summary::{read_summary, RunOutcome};
use job_contract::{JobEnvironment, RunCommand};
use time::OffsetDateTime;
use xero::secret::SecretString;

use crate::store::{Desired, Phase, RunRecord, RunStatus, RunTrigger, Store, StoreError};

/// A queued run with no execution after this long was orphaned by a crash
/// between recording it and starting it.
const QUEUED_GRACE: Duration = Duration::from_secs(120);

/// What every execution gets besides its job definition.
#[derive(Clone, Default)]
pub struct RunSettings {
    /// The Xero app, so the job can refresh tokens. Passed to each local
    /// execution's environment only, never written into a job definition or
    /// a record (on Cloud Run the job reads them from Secret Manager).
    pub xero_client_id: Option<String>,
    pub xero_client_secret: Option<SecretString>,
}

impl std::fmt::Debug for RunSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunSettings")
            .field("xero_client_id", &self.xero_client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("tenant {0} does not exist")]
    UnknownTenant(TenantId),
    #[error(transparent)]
    Cell(#[from] crate::clouds::TenantCloudError),
    #[error("tenant {tenant} is {phase}, not Ready")]
    NotReady { tenant: TenantId, phase: Phase },
    #[error("tenant {0} must connect Xero again before its data can sync")]
    NeedsConsent(TenantId),
    #[error("tenant {tenant} already has a run in progress ({run})")]
    Active { tenant: TenantId, run: String },
    #[error("run {0} does not exist")]
    UnknownRun(String),
    #[error("starting job {job} of tenant {tenant}: {source}")]
    Start {
        tenant: TenantId,
        job: String,
        #[source]
        source: CloudError,
    },
    #[error("following run {run}: {source}")]
    Follow {
        run: String,
        #[source]
        source: CloudError,
    },
    #[error("run {0} did not finish within the wait")]
    Timeout(String),
    #[error("cancelling run {run}: {source}")]
    Cancel {
        run: String,
        #[source]
        source: CloudError,
    },
    #[error("run {0} was cancelled but its execution did not stop within the wait")]
    CancelTimeout(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for RunError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::RunActive { tenant, run } => RunError::Active { tenant, run },
            StoreError::RunNotFound(id) => RunError::UnknownRun(id),
            StoreError::TenantNotFound(t) => RunError::UnknownTenant(t),
            other => RunError::Store(other),
        }
    }
}

#[derive(Clone)]
pub struct Runs {
    clouds: Clouds,
    store: Store,
    prefix: Option<DeploymentPrefix>,
    settings: RunSettings,
}

impl Runs {
    /// `cloud`: one shared Cloud, or a Cloud per cell.
    pub fn new(
        cloud: impl Into<Clouds>,
        store: Store,
        prefix: Option<DeploymentPrefix>,
        settings: RunSettings,
    ) -> Self {
        Runs {
            clouds: cloud.into(),
            store,
            prefix,
            settings,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The adapters of each cell.
    /// The Xero app's client secret this process passes on (to runs, or to
    /// the cells' copies), if it has one.
    pub fn xero_client_secret(&self) -> Option<&SecretString> {
        self.settings.xero_client_secret.as_ref()
    }

    pub fn clouds(&self) -> &Clouds {
        &self.clouds
    }

    /// The Cloud `tenant`'s jobs run in (its cell's).
    pub async fn cloud_of(&self, tenant: &TenantId) -> Result<Cloud, RunError> {
        Ok(crate::clouds::of_tenant_id(&self.clouds, &self.store, tenant).await?)
    }

    /// Records and starts a run. Refuses an unknown or unready tenant, a
    /// tenant that must consent again (for runs that read Xero), and a second
    /// run while one is in progress.
    pub async fn start(
        &self,
        tenant: &TenantId,
        command: RunCommand,
        trigger: RunTrigger,
    ) -> Result<RunRecord, RunError> {
        let record = self
            .store
            .get_tenant(tenant)
            .await?
            .ok_or_else(|| RunError::UnknownTenant(tenant.clone()))?;
        if record.desired != Desired::Present || record.phase != Phase::Ready {
            return Err(RunError::NotReady {
                tenant: tenant.clone(),
                phase: record.phase,
            });
        }
        let reads_xero = command.reads_xero();
        if reads_xero && self.store.needs_consent(tenant).await? {
            return Err(RunError::NeedsConsent(tenant.clone()));
        }
        let cloud = crate::clouds::of_tenant(&self.clouds, &self.store, &record).await?;
        let run = self.store.create_run(tenant, command, trigger).await?;
        let job = command.job_name(tenant);
        // The run's own part of the job's environment; the job definition
        // holds the plain part. In cells (Google Cloud) the Xero app's secret
        // never travels with a run: the job definition references it in
        // Secret Manager (LEDGERLAKE_GCP_SECRET_ENV), and Cloud Run fills it in.
        let env = JobEnvironment {
            run_id: Some(run.id.clone()),
            xero_client_id: self.settings.xero_client_id.clone(),
            xero_client_secret: if self.clouds.needs_cells() {
                None
            } else {
                self.settings.xero_client_secret.clone()
            },
            ..JobEnvironment::new(tenant.clone())
        };
        let overrides = ExecutionOverrides {
            args: Some(command.args(tenant)),
            env: env.to_env_map(),
        };
        match cloud.jobs.run_job(&job, &overrides).await {
            Ok(execution) => {
                if let Err(e) = self
                    .store
                    .mark_run_running(&run.id, &job, &execution.id)
                    .await
                {
                    // The run ended meanwhile (a teardown cancelled it while
                    // it was queued): its execution must not run untracked.
                    if let Err(cancel) = cloud.jobs.cancel_execution(&job, &execution.id).await {
                        tracing::warn!(%tenant, run = %run.id, error = %cancel, "could not cancel the execution of a run that ended before it started");
                    }
                    return Err(e.into());
                }
            }
            Err(source) => {
                let message = format!("could not start job {job}: {source}");
                if self
                    .store
                    .finish_run(&run.id, RunStatus::Failed, Some(&message), None)
                    .await?
                {
                    record_end(&run, RunStatus::Failed);
                }
                return Err(RunError::Start {
                    tenant: tenant.clone(),
                    job,
                    source,
                });
            }
        }
        if reads_xero {
            self.store.clear_sync_requested(tenant).await?;
        }
        crate::metrics::metrics().run_started(command, trigger);
        tracing::info!(%tenant, run = %run.id, command = %command, trigger = %trigger, "run started");
        self.get(&run.id).await
    }

    pub async fn get(&self, run_id: &str) -> Result<RunRecord, RunError> {
        self.store
            .get_run(run_id)
            .await?
            .ok_or_else(|| RunError::UnknownRun(run_id.to_owned()))
    }

    /// Brings the record of a run up to date with its execution; records the
    /// end (with the job's summary) when the execution has ended.
    pub async fn follow(&self, run: &RunRecord) -> Result<RunRecord, RunError> {
        if !run.status.is_active() {
            return Ok(run.clone());
        }
        let (Some(job), Some(execution_id)) = (&run.job, &run.execution_id) else {
            let age = OffsetDateTime::now_utc() - run.created_at;
            if age > QUEUED_GRACE
                && self
                    .store
                    .finish_run(
                        &run.id,
                        RunStatus::Failed,
                        Some("the run was recorded but never started (the control plane stopped in between)"),
                        None,
                    )
                    .await?
            {
                record_end(run, RunStatus::Failed);
            }
            return self.get(&run.id).await;
        };
        let cloud = match self.cloud_of(&run.tenant).await {
            Ok(cloud) => cloud,
            // Torn down and forgotten: its execution went with its jobs.
            Err(RunError::Cell(crate::clouds::TenantCloudError::UnknownTenant(_))) => {
                if self
                    .store
                    .finish_run(
                        &run.id,
                        RunStatus::Failed,
                        Some("its tenant no longer exists"),
                        None,
                    )
                    .await?
                {
                    record_end(run, RunStatus::Failed);
                }
                return self.get(&run.id).await;
            }
            Err(e) => return Err(e),
        };
        let failed_message = match cloud.jobs.get_execution(job, execution_id).await {
            Ok(execution) => match execution.state {
                ExecutionState::Running => return Ok(run.clone()),
                ExecutionState::Succeeded => None,
                ExecutionState::Failed { message } => Some(message),
            },
            // Deleted with its job (the tenant was torn down): it has ended.
            Err(CloudError::NotFound { .. }) => Some("its execution no longer exists".to_owned()),
            Err(source) => {
                return Err(RunError::Follow {
                    run: run.id.clone(),
                    source,
                })
            }
        };
        let bucket = naming::bucket_name(self.prefix.as_ref(), &run.tenant);
        let summary = read_summary(&cloud, &Credential::Platform, &bucket, &run.id)
            .await
            .ok()
            .filter(|s| s.run_id == run.id);
        let (status, message) = match (&summary, failed_message) {
            (Some(s), _) => (
                match s.outcome {
                    RunOutcome::Succeeded => RunStatus::Succeeded,
                    RunOutcome::Partial => RunStatus::Partial,
                    RunOutcome::Failed => RunStatus::Failed,
                },
                s.message.clone(),
            ),
            (None, Some(m)) => (RunStatus::Failed, Some(format!("the job failed: {m}"))),
            (None, None) => (
                RunStatus::Failed,
                Some("the job ended without writing its summary".to_owned()),
            ),
        };
        if summary.as_ref().is_some_and(|s| s.needs_consent) {
            self.store.mark_needs_consent(&run.tenant).await?;
        }
        let summary_json = summary.as_ref().and_then(|s| serde_json::to_value(s).ok());
        if self
            .store
            .finish_run(&run.id, status, message.as_deref(), summary_json.as_ref())
            .await?
        {
            record_end(run, status);
            if let Some(ingest) = summary.as_ref().and_then(|s| s.ingest.as_ref()) {
                crate::metrics::metrics().xero_ingest(ingest);
            }
            tracing::info!(tenant = %run.tenant, run = %run.id, status = %status, "run ended");
        }
        self.get(&run.id).await
    }

    /// Follows every active run once. Returns the runs that ended.
    pub async fn follow_active(&self) -> Result<Vec<RunRecord>, RunError> {
        let mut ended = Vec::new();
        for run in self.store.active_runs().await? {
            match self.follow(&run).await {
                Ok(r) if !r.status.is_active() => ended.push(r),
                Ok(_) => {}
                Err(e) => tracing::warn!(run = %run.id, error = %e, "could not follow the run"),
            }
        }
        Ok(ended)
    }

    /// Cancels the tenant's active run through the jobs port, waits until its
    /// execution has ended (at most `timeout`), and records the run as failed
    /// with `message`. Returns the runs it ended, as recorded (a run that
    /// ended on its own meanwhile is returned as it ended). A queued run with
    /// no execution yet is recorded as failed, and its start then stops.
    pub async fn cancel_active(
        &self,
        tenant: &TenantId,
        message: &str,
        timeout: Duration,
    ) -> Result<Vec<RunRecord>, RunError> {
        // Elapsed time against `timeout`, not a deadline: `now + timeout`
        // panics when a caller's timeout is past what an Instant can hold.
        let started = tokio::time::Instant::now();
        let mut ended = Vec::new();
        // The store keeps a tenant to one active run; a run a scheduler
        // started meanwhile is found by the next look.
        while let Some(run) = self.store.active_run(tenant).await? {
            let seen = ended.iter().any(|r: &RunRecord| r.id == run.id);
            if seen || (!ended.is_empty() && started.elapsed() >= timeout) {
                // Runs keep starting (or one will not end): give up rather than loop.
                return Err(RunError::CancelTimeout(run.id));
            }
            if let (Some(job), Some(execution)) = (&run.job, &run.execution_id) {
                let cloud = self.cloud_of(tenant).await?;
                self.cancel_execution(&cloud, &run.id, job, execution, started, timeout)
                    .await?;
            }
            if self
                .store
                .finish_run(&run.id, RunStatus::Failed, Some(message), None)
                .await?
            {
                record_end(&run, RunStatus::Failed);
                tracing::info!(%tenant, run = %run.id, "run cancelled");
            }
            ended.push(self.get(&run.id).await?);
        }
        Ok(ended)
    }

    /// Cancels one execution and follows it until it has ended or `timeout`
    /// has passed since `started`.
    async fn cancel_execution(
        &self,
        cloud: &Cloud,
        run: &str,
        job: &str,
        execution: &str,
        started: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<(), RunError> {
        match cloud.jobs.cancel_execution(job, execution).await {
            Ok(_) | Err(CloudError::NotFound { .. }) => {}
            Err(source) => {
                return Err(RunError::Cancel {
                    run: run.to_owned(),
                    source,
                })
            }
        }
        let mut poll = Duration::from_millis(50);
        loop {
            match cloud.jobs.get_execution(job, execution).await {
                Ok(e) if e.state != ExecutionState::Running => return Ok(()),
                Err(CloudError::NotFound { .. }) => return Ok(()),
                Ok(_) => {}
                Err(source) => {
                    return Err(RunError::Follow {
                        run: run.to_owned(),
                        source,
                    })
                }
            }
            if started.elapsed() >= timeout {
                return Err(RunError::CancelTimeout(run.to_owned()));
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(Duration::from_secs(1));
        }
    }

    /// Follows a run until it ends or `timeout` passes (any `timeout`: a
    /// huge one waits for the run, never panics).
    pub async fn wait(&self, run_id: &str, timeout: Duration) -> Result<RunRecord, RunError> {
        // Elapsed time, not `now + timeout`, which panics past an Instant's range.
        let started = tokio::time::Instant::now();
        let mut poll = Duration::from_millis(50);
        loop {
            let run = self.get(run_id).await?;
            let run = self.follow(&run).await?;
            if !run.status.is_active() {
                return Ok(run);
            }
            if started.elapsed() >= timeout {
                return Err(RunError::Timeout(run_id.to_owned()));
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(Duration::from_secs(1));
        }
    }
}

/// Counts a run this process recorded as ended, timed from its record.
fn record_end(run: &RunRecord, status: RunStatus) {
    let elapsed = Duration::try_from(OffsetDateTime::now_utc() - run.created_at).ok();
    crate::metrics::metrics().run_ended(run.command, status, elapsed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{Platform, PlatformConfig};

    /// A library caller's timeout past what an Instant holds is waited out
    /// like any other; computing a deadline from it once panicked.
    #[tokio::test]
    async fn timeouts_too_large_for_a_deadline_do_not_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let platform = Platform::open(PlatformConfig {
            cloud: Default::default(),
            data_dir: dir.path().to_path_buf(),
            database_url: None,
            bucket_prefix: None,
            master_key: Some(
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f".to_owned(),
            ),
        })
        .await
        .expect("platform");
        let runs = platform.runs(RunSettings::default());
        assert!(matches!(
            runs.wait("no-such-run", Duration::MAX).await,
            Err(RunError::UnknownRun(id)) if id == "no-such-run"
        ));
        let tenant = TenantId::parse("idle").expect("id");
        let ended = runs
            .cancel_active(&tenant, "test", Duration::MAX)
            .await
            .expect("nothing to cancel");
        assert!(ended.is_empty());
    }
}
