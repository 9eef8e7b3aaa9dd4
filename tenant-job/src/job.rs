//! One run of the job: its configuration (from the environment, as a Cloud
//! Run job receives it), the tenant's identity, the commands, and the run
//! summary it leaves in the tenant's bucket for the control plane to read.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;

use cloud::naming::{self, DeploymentPrefix, TenantId};
use cloud::ports::Credential;
use cloud::{Cloud, CloudError};
use xero::client::XeroClient;
use xero::limits::{LimitConfig, RateLimits};
use xero::oauth::{OAuthClient, OAuthConfig, XeroEndpoints};
use xero::refresh::RefreshingTokenProvider;
use xero::resources::Resource;

use job_contract::env::{self, JobEnvironment};
use job_contract::raw;
use job_contract::summary::{IngestReport, RunOutcome, RunSummary};
use job_contract::tokens::{SecretTokenVault, TokenLeaseSettings};
use job_contract::RunCommand;

use crate::ingest::{self, IngestContext, IngestError};
use crate::transform::{self, Dialect, TransformContext};

/// Where the local cloud lives when the environment does not say.
pub const DEFAULT_DATA_DIR: &str = ".ledgerlake";

/// The job's configuration: its [`JobEnvironment`] with the defaults
/// applied ([`JobConfig::from_environment`]).
#[derive(Clone)]
pub struct JobConfig {
    pub tenant: TenantId,
    pub run_id: String,
    /// The local adapter's data directory.
    pub data_dir: PathBuf,
    pub master_key: Option<String>,
    pub bucket_prefix: Option<DeploymentPrefix>,
    /// The identity the job runs as; must be the tenant's own account.
    pub service_account: Option<String>,
    /// One base URL for every Xero host (the sandbox); Xero's own by default.
    pub xero_endpoint: Option<String>,
    pub xero_client_id: Option<String>,
    pub xero_client_secret: Option<String>,
    /// Xero's limits as this job keeps them (Xero's own by default; raised
    /// only against the sandbox).
    pub xero_limits: LimitConfig,
    /// Transform from scratch: every manifest in the bucket into emptied raw
    /// tables (`--rebuild`, an operator's command line only).
    pub rebuild: bool,
}

// Never print the client secret or the master key.
impl std::fmt::Debug for JobConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobConfig")
            .field("tenant", &self.tenant)
            .field("run_id", &self.run_id)
            .field("data_dir", &self.data_dir)
            .field("bucket_prefix", &self.bucket_prefix)
            .field("service_account", &self.service_account)
            .field("xero_endpoint", &self.xero_endpoint)
            .field("rebuild", &self.rebuild)
            .finish_non_exhaustive()
    }
}

impl JobConfig {
    /// The run's configuration from its environment: the run id is the
    /// control plane's, else the execution's, else a new one; the data
    /// directory is [`DEFAULT_DATA_DIR`] unless set; Xero's limits stand
    /// but for the minute limit the environment may set.
    pub fn from_environment(env: JobEnvironment) -> JobConfig {
        let run_id = env
            .run_id
            .or(env.execution_id)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let defaults = LimitConfig::default();
        JobConfig {
            tenant: env.tenant,
            run_id,
            data_dir: env
                .data_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            master_key: env.master_key.map(|k| k.expose_secret().to_owned()),
            bucket_prefix: env.bucket_prefix,
            service_account: env.service_account,
            xero_endpoint: env.xero_endpoint,
            xero_client_id: env.xero_client_id,
            xero_client_secret: env.xero_client_secret.map(|s| s.expose_secret().to_owned()),
            xero_limits: LimitConfig {
                per_minute: env.xero_per_minute.unwrap_or(defaults.per_minute).max(1),
                ..defaults
            },
            rebuild: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("the job must run as tenant {tenant}'s own service account {expected}, not {given}")]
    WrongIdentity {
        tenant: TenantId,
        expected: String,
        given: String,
    },
    #[error("opening the cloud: {0}")]
    Cloud(#[source] CloudError),
    #[error("opening the cloud: {0}")]
    Open(#[source] cloud_adapters::OpenError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Transform(#[from] transform::TransformError),
}

impl JobError {
    /// Whether someone must connect Xero again before runs can succeed.
    pub fn needs_consent(&self) -> bool {
        matches!(self, JobError::Ingest(IngestError::NeedsConsent))
    }
}

/// The adapter `LEDGERLAKE_CLOUD` names (local unless set). On Google Cloud
/// the job runs in its tenant's cell, which the job definition names
/// (`LEDGERLAKE_GCP_CELL_PROJECT`, written by the gcp adapter with the rest of
/// its settings), as the account Cloud Run runs it as.
async fn open_cloud(config: &JobConfig) -> Result<(Cloud, Dialect), JobError> {
    let kind = match std::env::var(cloud_adapters::CLOUD_VARIABLE) {
        Ok(name) if !name.is_empty() => name
            .parse::<cloud_adapters::AdapterKind>()
            .map_err(|e| JobError::Config(e.to_string()))?,
        _ => cloud_adapters::AdapterKind::Local,
    };
    let local = cloud_adapters::LocalConfig {
        master_key: config.master_key.clone(),
        ..cloud_adapters::LocalConfig::new(&config.data_dir)
    };
    // The one factory the control plane uses too.
    let adapter = cloud_adapters::config_for(kind, local).map_err(JobError::Open)?;
    let clouds = cloud_adapters::open_clouds(&adapter)
        .await
        .map_err(JobError::Open)?;
    let cell = match &adapter {
        cloud_adapters::CloudConfig::Gcp(gcp) => Some(cloud::CellLocation {
            project: std::env::var(cloud_adapters::GCP_CELL_PROJECT_VARIABLE)
                .ok()
                .filter(|p| !p.is_empty())
                .ok_or_else(|| {
                    JobError::Config(format!(
                        "{} must name the tenant's cell project",
                        cloud_adapters::GCP_CELL_PROJECT_VARIABLE
                    ))
                })?,
            region: gcp.region.clone(),
        }),
        cloud_adapters::CloudConfig::Local(_) => None,
    };
    let dialect = match kind {
        cloud_adapters::AdapterKind::Local => Dialect::DuckDb,
        cloud_adapters::AdapterKind::Gcp => Dialect::BigQuery,
    };
    let cloud = clouds.for_cell(cell.as_ref()).map_err(JobError::Cloud)?;
    Ok((cloud, dialect))
}

/// An opened run: the cloud and the tenant's credential.
pub struct Job {
    pub config: JobConfig,
    pub cloud: Cloud,
    pub cred: Credential,
    /// The warehouse's SQL dialect (BigQuery on Google Cloud).
    pub dialect: Dialect,
}

impl Job {
    /// Opens the local cloud and takes on the tenant's identity. Refuses any
    /// identity but the tenant's own.
    pub async fn open(config: JobConfig) -> Result<Job, JobError> {
        let (cloud, dialect) = open_cloud(&config).await?;
        let expected = cloud
            .identity
            .email_for(&naming::service_account_id(&config.tenant));
        if let Some(given) = &config.service_account {
            if *given != expected {
                return Err(JobError::WrongIdentity {
                    tenant: config.tenant.clone(),
                    expected,
                    given: given.clone(),
                });
            }
        }
        // Locally the job assumes the account as Cloud Run's metadata server
        // would hand it over; everything after this acts as that account.
        let cred = cloud
            .identity
            .credential_for(&expected)
            .await
            .map_err(JobError::Cloud)?;
        Ok(Job {
            config,
            cloud,
            cred,
            dialect,
        })
    }

    fn bucket(&self) -> String {
        naming::bucket_name(self.config.bucket_prefix.as_ref(), &self.config.tenant)
    }

    fn oauth(&self) -> Result<OAuthClient, JobError> {
        let (Some(id), Some(secret)) =
            (&self.config.xero_client_id, &self.config.xero_client_secret)
        else {
            return Err(JobError::Config(format!(
                "{} and {} are needed to refresh the tenant's Xero tokens",
                env::XERO_CLIENT_ID,
                env::XERO_CLIENT_SECRET
            )));
        };
        // The job never receives a redirect; the URI only completes the config.
        let redirect = "http://127.0.0.1/oauth/xero/callback"
            .parse()
            .map_err(|e| JobError::Config(format!("redirect URI: {e}")))?;
        let mut config = OAuthConfig::new(id.clone(), secret.clone(), redirect);
        if let Some(base) = &self.config.xero_endpoint {
            let endpoints = XeroEndpoints::from_base(base)
                .map_err(|e| JobError::Config(format!("{}: {e}", env::XERO_ENDPOINT)))?;
            config = config.with_endpoints(endpoints);
        }
        OAuthClient::new(config).map_err(|e| JobError::Config(format!("Xero OAuth client: {e}")))
    }

    /// The Xero client for this tenant: tokens from its secret, refreshed
    /// under the lease in its bucket and written back before use.
    async fn xero_client(&self) -> Result<XeroClient, JobError> {
        let oauth = self.oauth()?;
        let api_base = oauth.config().endpoints.api_base.to_string();
        let vault = Arc::new(SecretTokenVault::new(
            self.cloud.clone(),
            self.cred.clone(),
            self.config.tenant.clone(),
            self.config.bucket_prefix.as_ref(),
            "tenant-job",
            TokenLeaseSettings::default(),
        ));
        let provider =
            RefreshingTokenProvider::from_vault(oauth, vault, Duration::from_secs(5 * 60))
                .await
                .map_err(|e| match e {
                    xero::token::TokenError::ReconsentRequired => {
                        JobError::Ingest(IngestError::NeedsConsent)
                    }
                    other => JobError::Config(format!(
                        "reading tenant {}'s Xero token set: {other}",
                        self.config.tenant
                    )),
                })?;
        let tokens = provider.current().await;
        let Some(org) = tokens.tenant_ids.first().cloned() else {
            return Err(JobError::Config(format!(
                "tenant {}'s token set names no Xero organisation",
                self.config.tenant
            )));
        };
        XeroClient::builder(org, Arc::new(provider))
            .api_base(api_base.trim_end_matches('/'))
            .limits(RateLimits::new(self.config.xero_limits))
            .build()
            .map_err(|e| JobError::Config(format!("Xero client: {e}")))
    }

    pub async fn ingest(&self) -> Result<IngestReport, JobError> {
        self.ingest_telling(None).await
    }

    async fn ingest_telling(
        &self,
        manifests_written: Option<watch::Sender<u64>>,
    ) -> Result<IngestReport, JobError> {
        let ctx = IngestContext {
            cloud: self.cloud.clone(),
            cred: self.cred.clone(),
            bucket: self.bucket(),
            run_id: self.config.run_id.clone(),
            client: self.xero_client().await?,
            resources: Resource::ALL.to_vec(),
            manifests_written,
        };
        Ok(ingest::run(&ctx).await?)
    }

    /// Ingests, loading each manifest into the raw dataset as soon as it is
    /// written, while ingest goes on fetching the next resources: most of
    /// the loading then hides behind Xero's call limit. Returns the ingest's
    /// result and what was loaded, for [`Job::transform_after`].
    ///
    /// A load that fails here stops the early loading only (logged); the
    /// transform after loads again and reports the failure if it stays.
    pub async fn ingest_while_loading(
        &self,
    ) -> (Result<IngestReport, JobError>, transform::Preloaded) {
        let (written, mut waiting) = watch::channel(0u64);
        // The sender goes with the ingest: when it ends, so does the loader.
        let ingest = self.ingest_telling(Some(written));
        let ctx = self.transform_context();
        let loading = async move {
            let mut preloaded = transform::Preloaded::default();
            while waiting.changed().await.is_ok() {
                if let Err(e) = transform::load_ready(&ctx, &mut preloaded).await {
                    tracing::warn!(error = %e, "loading while ingesting stopped; the transform loads the rest");
                    break;
                }
            }
            tracing::debug!(
                passes = preloaded.passes,
                manifests = preloaded.manifests().len(),
                ms = preloaded.load_ms,
                "loaded while ingesting"
            );
            preloaded
        };
        tokio::join!(ingest, loading)
    }

    fn transform_context(&self) -> TransformContext {
        TransformContext {
            cloud: self.cloud.clone(),
            cred: self.cred.clone(),
            bucket: self.bucket(),
            raw_dataset: naming::raw_dataset(&self.config.tenant),
            transformed_dataset: naming::transformed_dataset(&self.config.tenant),
            run_id: self.config.run_id.clone(),
            dialect: self.dialect,
        }
    }

    pub async fn transform(&self) -> Result<transform::TransformReport, JobError> {
        self.transform_after(transform::Preloaded::default()).await
    }

    /// The transform after [`Job::ingest_while_loading`]: loads what is
    /// left, builds and publishes (from scratch with `--rebuild`, which
    /// `preloaded` does not change: it drops the raw tables first).
    pub async fn transform_after(
        &self,
        preloaded: transform::Preloaded,
    ) -> Result<transform::TransformReport, JobError> {
        let ctx = self.transform_context();
        if self.config.rebuild {
            Ok(transform::rebuild(&ctx).await?)
        } else {
            Ok(transform::run_after(&ctx, preloaded).await?)
        }
    }

    /// Runs `command` and writes its summary to the bucket (also when it
    /// failed). Returns the summary; the error, if any, is in it.
    pub async fn execute(&self, command: RunCommand) -> RunSummary {
        let started_at = OffsetDateTime::now_utc();
        let mut summary = RunSummary {
            run_id: self.config.run_id.clone(),
            tenant: self.config.tenant.to_string(),
            command,
            outcome: RunOutcome::Succeeded,
            message: None,
            needs_consent: false,
            started_at,
            finished_at: started_at,
            ingest: None,
            transform: None,
        };
        let result = self.execute_into(command, &mut summary).await;
        if let Err(e) = result {
            summary.outcome = RunOutcome::Failed;
            summary.needs_consent = e.needs_consent();
            summary.message = Some(e.to_string());
        }
        summary.finished_at = OffsetDateTime::now_utc();
        self.write_summary(&summary).await;
        summary
    }

    async fn execute_into(
        &self,
        command: RunCommand,
        summary: &mut RunSummary,
    ) -> Result<(), JobError> {
        let mut preloaded = transform::Preloaded::default();
        if command.reads_xero() {
            let report = if command.transforms() && !self.config.rebuild {
                let (report, early) = self.ingest_while_loading().await;
                preloaded = early;
                report?
            } else {
                self.ingest().await?
            };
            if let Some(stop) = &report.stopped_by_day_limit {
                summary.outcome = RunOutcome::Partial;
                summary.message = Some(format!(
                    "Xero's day limit stopped the ingest at {}; the next run resumes there (in {} s)",
                    stop.resource, stop.retry_after_secs
                ));
            }
            summary.ingest = Some(report);
        }
        if command.transforms() {
            let report = self.transform_after(preloaded).await?;
            summary.transform = serde_json::to_value(&report).ok();
        }
        Ok(())
    }

    async fn write_summary(&self, summary: &RunSummary) {
        let key = raw::run_summary_key(&summary.run_id);
        let bytes = match serde_json::to_vec_pretty(summary) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "could not encode the run summary");
                return;
            }
        };
        if let Err(e) = self
            .cloud
            .objects
            .put_object(&self.cred, &self.bucket(), &key, bytes)
            .await
        {
            // The exit code still tells the control plane how the run ended.
            tracing::error!(error = %e, %key, "could not write the run summary");
        }
    }
}
