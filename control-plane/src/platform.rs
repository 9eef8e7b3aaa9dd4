//! Opening the platform a command works on: the cloud adapters and the state
//! store, from the operator's settings. Both refuse to start on a wrong master
//! key or an unreadable state file rather than touch anything.

use std::path::PathBuf;

use cloud::naming::DeploymentPrefix;
use cloud::{CellLocation, Cloud, Clouds};
use cloud_adapters::{AdapterKind, CloudConfig, LocalConfig};

use crate::reconciler::{Reconciler, Settings};
use crate::runs::{RunSettings, Runs};
use crate::store::{Store, StoreError, WithoutCells};

/// Where the platform's state and (locally) its cloud live. Debug by hand:
/// the database URL may hold a password, and the master key is one.
#[derive(Clone)]
pub struct PlatformConfig {
    /// Which cloud adapter (`--cloud`, `LEDGERLAKE_CLOUD`).
    pub cloud: AdapterKind,
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; defaults to SQLite in the data directory.
    pub database_url: Option<String>,
    pub bucket_prefix: Option<DeploymentPrefix>,
    /// The value of `LEDGERLAKE_MASTER_KEY`, when set.
    pub master_key: Option<String>,
}

impl std::fmt::Debug for PlatformConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformConfig")
            .field("cloud", &self.cloud)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(crate::store::redact_url),
            )
            .field("bucket_prefix", &self.bucket_prefix)
            .field(
                "master_key",
                &self.master_key.as_ref().map(|_| xero::secret::REDACTED),
            )
            .finish()
    }
}

impl PlatformConfig {
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => crate::store::sqlite_url(&self.data_dir.join("state.db")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the data directory {path}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the {kind} cloud (data directory {path})")]
    Cloud {
        kind: AdapterKind,
        path: PathBuf,
        source: cloud_adapters::OpenError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Platform {
    /// Locally, the one Cloud of every tenant; on Google Cloud, the platform
    /// project's own (no tenant lives there: tenants' work goes through
    /// `clouds`, by their cell).
    pub cloud: Cloud,
    /// The adapters of each cell (one shared Cloud locally).
    pub clouds: Clouds,
    /// The tenant-job image of the gcp adapter's settings.
    tenant_job_image: Option<String>,
    /// Where the gcp adapter puts buckets and datasets.
    gcp_location: Option<String>,
    pub store: Store,
    pub config: PlatformConfig,
}

impl Platform {
    pub async fn open(config: PlatformConfig) -> Result<Platform, OpenError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| OpenError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let local = LocalConfig {
            master_key: config.master_key.clone(),
            ..LocalConfig::new(&config.data_dir)
        };
        let failed = |source| OpenError::Cloud {
            kind: config.cloud,
            path: config.data_dir.clone(),
            source,
        };
        let adapter = cloud_adapters::config_for(config.cloud, local).map_err(failed)?;
        let clouds = cloud_adapters::open_clouds(&adapter)
            .await
            .map_err(failed)?;
        let (cloud, tenant_job_image, gcp_location) = match (&clouds, &adapter) {
            (Clouds::PerCell(cells), CloudConfig::Gcp(gcp)) => (
                cells.cloud_for(&CellLocation {
                    project: gcp.platform_project.clone(),
                    region: gcp.region.clone(),
                }),
                Some(gcp.tenant_job_image.clone()),
                Some(gcp.location.clone()),
            ),
            (Clouds::Shared(cloud), _) => (cloud.clone(), None, None),
            (Clouds::PerCell(_), CloudConfig::Local(_)) => {
                return Err(failed(cloud_adapters::OpenError::Unavailable(
                    config.cloud,
                    "the local adapter has no cells",
                )))
            }
        };
        let store = Store::open(&config.database_url()).await?;
        Ok(Platform {
            cloud,
            clouds,
            tenant_job_image,
            gcp_location,
            store,
            config,
        })
    }

    pub fn reconciler(&self, mut settings: Settings) -> Reconciler {
        settings.prefix = self.config.bucket_prefix.clone();
        // On GCP a tenant without a cell has no project to live in.
        settings.without_cells = match self.config.cloud {
            AdapterKind::Local => WithoutCells::Unplaced,
            AdapterKind::Gcp => WithoutCells::Refuse,
        };
        if let Some(image) = &self.tenant_job_image {
            settings.jobs.image = image.clone();
        }
        // In cells, jobs read the Xero app's client secret from their own
        // cell's copy (written by `cells add` / `cells sync-secret`); runs
        // never carry it.
        if self.clouds.needs_cells() {
            settings.jobs.app_secret = Some(job_contract::plan::XERO_APP_SECRET.to_owned());
        }
        Reconciler::new(self.clouds.clone(), self.store.clone(), settings)
    }

    /// Where buckets and datasets live on Google Cloud (`None` locally).
    pub fn gcp_location(&self) -> Option<&str> {
        self.gcp_location.as_deref()
    }

    /// Starting and following runs of the tenants' jobs.
    pub fn runs(&self, settings: RunSettings) -> Runs {
        Runs::new(
            self.clouds.clone(),
            self.store.clone(),
            self.config.bucket_prefix.clone(),
            settings,
        )
    }
}
