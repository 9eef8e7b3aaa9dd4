//! The Google Cloud adapter of ledgerlake's cloud ports.
//!
//! A tenant lives in a cell: one Google Cloud project (and region) holding up
//! to a configured number of tenants. [`Gcp`] holds what every cell shares
//! (the official clients, the credentials, the pacing per (project, API)) and
//! hands out a [`Cloud`] per cell with [`Gcp::cloud_for`]; every resource a
//! cell's adapters create lives in that cell's project.
//!
//! - Cloud Storage: the JSON API ([`storage`]), buckets with uniform access and
//!   public access prevention; objects with generation preconditions.
//! - BigQuery: datasets with access entries, NDJSON loads, query jobs
//!   ([`bigquery`]).
//! - IAM: service accounts, each resource's own policy read-modify-written
//!   with its etag ([`iam`]).
//! - Secret Manager: one secret per tenant, versions, per-secret policy
//!   ([`secrets`]).
//! - Cloud Run: jobs and executions ([`run`]).
//!
//! Administrative calls run as the platform; data-plane calls for a tenant run
//! with a token impersonating that tenant's service account ([`auth`]).

pub mod auth;
mod bigquery;
pub mod config;
mod errors;
mod iam;
pub mod limiter;
mod pages;
mod rest;
mod run;
mod secrets;
mod storage;

use std::sync::Arc;

use cloud::error::{CloudError, CloudResult};
use cloud::Cloud;

pub use config::{Api, ConfigError, Endpoints, GcpConfig, LRO_TIME_LIMIT};
pub use limiter::{Limiter, QuotaClass, Quotas};

use auth::Auth;

pub use cloud::CellLocation;

/// What every cell shares.
struct Shared {
    config: GcpConfig,
    auth: Auth,
    limiter: Limiter,
    rest: rest::Rest,
    iam: google_cloud_iam_admin_v1::client::Iam,
    secrets: google_cloud_secretmanager_v1::client::SecretManagerService,
    run_jobs: google_cloud_run_v2::client::Jobs,
    run_executions: google_cloud_run_v2::client::Executions,
    projects: google_cloud_resourcemanager_v3::client::Projects,
    /// Policies just read that hold conditional bindings, by project and
    /// resource (see `iam`).
    conditional_policies:
        std::sync::Mutex<std::collections::HashMap<String, google_cloud_iam_v1::model::Policy>>,
}

/// The gcp adapter: clients and pacing for every cell.
#[derive(Clone)]
pub struct Gcp {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Gcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gcp")
            .field("platform_project", &self.shared.config.platform_project)
            .finish_non_exhaustive()
    }
}

macro_rules! client {
    ($ty:ty, $api:expr, $config:expr, $auth:expr) => {
        <$ty>::builder()
            .with_endpoint($config.endpoints.get($api))
            .with_credentials($auth.credentials())
            // Retries are the adapter's own (paced, Retry-After honoured) and the
            // reconciler's; the clients' would multiply them.
            .with_retry_policy(google_cloud_gax::retry_policy::NeverRetry)
            // Without a limit the clients poll an operation that never ends
            // for ever; past it the wait fails (see errors::from_gax).
            .with_polling_error_policy(
                google_cloud_gax::polling_error_policy::PollingErrorPolicyExt::with_time_limit(
                    google_cloud_gax::polling_error_policy::Aip194Strict,
                    $config.lro_time_limit,
                ),
            )
            .build()
            .await
            .map_err(|e| CloudError::permanent(format!("the {} client", $api), e.to_string()))?
    };
}

impl Gcp {
    /// Builds the clients (no call is made until a port is used).
    pub async fn connect(config: GcpConfig) -> CloudResult<Gcp> {
        // The official clients' reqwest has no TLS provider of its own (see
        // Cargo.toml): ring, as everywhere else in the workspace. An error only
        // says a provider is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let limiter = Limiter::new(&config.quotas);
        let auth = Auth::new(&config, limiter.clone()).await?;
        let rest = rest::Rest::new(&config, auth.clone(), limiter.clone())?;
        let shared = Shared {
            iam: client!(
                google_cloud_iam_admin_v1::client::Iam,
                Api::Iam,
                config,
                auth
            ),
            secrets: client!(
                google_cloud_secretmanager_v1::client::SecretManagerService,
                Api::SecretManager,
                config,
                auth
            ),
            run_jobs: client!(google_cloud_run_v2::client::Jobs, Api::Run, config, auth),
            run_executions: client!(
                google_cloud_run_v2::client::Executions,
                Api::Run,
                config,
                auth
            ),
            projects: client!(
                google_cloud_resourcemanager_v3::client::Projects,
                Api::ResourceManager,
                config,
                auth
            ),
            conditional_policies: Default::default(),
            rest,
            limiter,
            auth,
            config,
        };
        Ok(Gcp {
            shared: Arc::new(shared),
        })
    }

    pub fn config(&self) -> &GcpConfig {
        &self.shared.config
    }

    /// The calls made so far through this adapter, by quota (every attempt).
    pub fn calls(&self) -> std::collections::BTreeMap<QuotaClass, u64> {
        self.shared.limiter.calls()
    }

    /// The adapters of one cell: everything they create lives in its project.
    pub fn cloud_for(&self, cell: &CellLocation) -> Cloud {
        let adapter = Arc::new(CellAdapter {
            shared: self.shared.clone(),
            project: cell.project.clone(),
            region: cell.region.clone(),
        });
        Cloud {
            objects: adapter.clone(),
            warehouse: adapter.clone(),
            identity: adapter.clone(),
            secrets: adapter.clone(),
            jobs: adapter,
        }
    }
}

impl cloud::CellClouds for Gcp {
    fn cloud_for(&self, cell: &CellLocation) -> Cloud {
        Gcp::cloud_for(self, cell)
    }

    fn usage(&self) -> Vec<cloud::ApiUsage> {
        self.shared.limiter.usage()
    }
}

/// The five ports for one cell.
struct CellAdapter {
    shared: Arc<Shared>,
    project: String,
    region: String,
}

impl CellAdapter {
    fn rest(&self) -> &rest::Rest {
        &self.shared.rest
    }

    /// Runs `op` paced by this cell's `class` quota.
    async fn paced<T, F, Fut>(&self, class: QuotaClass, op: F) -> CloudResult<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = CloudResult<T>>,
    {
        self.shared.limiter.paced(&self.project, class, op).await
    }

    /// Runs `op` paced, as `cred`'s principal.
    async fn paced_as<T, F, Fut>(
        &self,
        cred: &cloud::ports::Credential,
        class: QuotaClass,
        op: F,
    ) -> CloudResult<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = CloudResult<T>>,
    {
        let principal = auth::Principal::from(cred);
        self.shared
            .auth
            .acting_as(principal, self.paced(class, op))
            .await
    }

    fn labels_of(labels: &std::collections::HashMap<String, String>) -> cloud::naming::Labels {
        labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

use cloud::naming::{check_owner, has_labels};

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// RFC 3339 from Google's JSON, or now when absent (the emulators omit some).
fn parse_time(s: Option<&str>) -> time::OffsetDateTime {
    s.and_then(|s| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    })
    .unwrap_or_else(now)
}

fn timestamp(t: Option<&google_cloud_wkt::Timestamp>) -> time::OffsetDateTime {
    t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.seconds()).ok())
        .unwrap_or_else(now)
}
