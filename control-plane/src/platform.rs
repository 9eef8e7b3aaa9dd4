//! Opening the platform a command works on: the cloud adapters and the state
//! store, from the operator's settings. Both refuse to start on a wrong master
//! key or an unreadable state file rather than touch anything.

use std::path::PathBuf;

use cloud::naming::DeploymentPrefix;
use cloud::Cloud;
use cloud_adapters::{AdapterKind, LocalConfig};

use crate::reconciler::{Reconciler, Settings};
use crate::runs::{RunSettings, Runs};
use crate::store::{Store, StoreError, WithoutCells};

/// Where the platform's state and (locally) its cloud live.
#[derive(Debug, Clone)]
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
    pub cloud: Cloud,
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
        let cloud = cloud_adapters::config_for(config.cloud, local)
            .and_then(|c| cloud_adapters::open(&c))
            .map_err(|source| OpenError::Cloud {
                kind: config.cloud,
                path: config.data_dir.clone(),
                source,
            })?;
        let store = Store::open(&config.database_url()).await?;
        Ok(Platform {
            cloud,
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
        Reconciler::new(self.cloud.clone(), self.store.clone(), settings)
    }

    /// Starting and following runs of the tenants' jobs.
    pub fn runs(&self, settings: RunSettings) -> Runs {
        Runs::new(
            self.cloud.clone(),
            self.store.clone(),
            self.config.bucket_prefix.clone(),
            settings,
        )
    }
}
