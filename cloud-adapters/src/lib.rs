//! The one place that turns configuration into a [`Cloud`]: the control plane
//! and the tenant job both open their adapters here, so choosing an adapter
//! is never spelt twice. Only the binaries depend on this crate (it links
//! every adapter, and so DuckDB); libraries take a [`Cloud`].

use std::fmt;
use std::str::FromStr;

use std::sync::Arc;

use cloud::{Cloud, CloudError, Clouds};
use cloud_gcp::Gcp;
pub use cloud_gcp::GcpConfig;
pub use cloud_local::LocalConfig;
/// Rotating the local cloud's master key (`control-plane secrets rotate-master-key`).
pub use cloud_local::{rotate_master_key, KeyRotation, NEW_MASTER_KEY_ENV};

/// The variable naming the adapter (`--cloud` of the control plane).
pub const CLOUD_VARIABLE: &str = "LEDGERLAKE_CLOUD";
/// The cell project a tenant job runs in (see `cloud_gcp::config`).
pub const GCP_CELL_PROJECT_VARIABLE: &str = cloud_gcp::config::CELL_PROJECT;

/// Which adapter, by its name in `--cloud` / `LEDGERLAKE_CLOUD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdapterKind {
    /// The embedded default: folders, DuckDB, encrypted files, child processes.
    #[default]
    Local,
    /// Google Cloud (the `cloud-gcp` adapter): a Cloud per cell.
    Gcp,
}

impl AdapterKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AdapterKind::Local => "local",
            AdapterKind::Gcp => "gcp",
        }
    }
}

impl fmt::Display for AdapterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown cloud adapter {0:?}: use local or gcp")]
pub struct UnknownAdapter(String);

impl FromStr for AdapterKind {
    type Err = UnknownAdapter;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "local" => Ok(AdapterKind::Local),
            "gcp" => Ok(AdapterKind::Gcp),
            other => Err(UnknownAdapter(other.chars().take(32).collect())),
        }
    }
}

/// An adapter and its settings.
#[derive(Debug, Clone)]
pub enum CloudConfig {
    Local(LocalConfig),
    Gcp(GcpConfig),
}

impl CloudConfig {
    pub fn kind(&self) -> AdapterKind {
        match self {
            CloudConfig::Local(_) => AdapterKind::Local,
            CloudConfig::Gcp(_) => AdapterKind::Gcp,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the {0} adapter cannot be opened this way: {1}")]
    Unavailable(AdapterKind, &'static str),
    #[error(transparent)]
    GcpConfig(#[from] cloud_gcp::ConfigError),
    #[error(transparent)]
    Cloud(#[from] CloudError),
}

/// Opens the local adapter as one Cloud. Blocking (it reads files). The gcp
/// adapter has a Cloud per cell: open it with [`open_clouds`].
pub fn open(config: &CloudConfig) -> Result<Cloud, OpenError> {
    match config {
        CloudConfig::Local(local) => Ok(cloud_local::open(local)?),
        CloudConfig::Gcp(_) => Err(OpenError::Unavailable(
            AdapterKind::Gcp,
            "it keeps a Cloud per cell (open_clouds)",
        )),
    }
}

/// Opens the configured adapter: one shared Cloud (local) or a Cloud per cell
/// (gcp; the clients are built, nothing is called yet).
pub async fn open_clouds(config: &CloudConfig) -> Result<Clouds, OpenError> {
    match config {
        CloudConfig::Local(local) => {
            let local = local.clone();
            let cloud = tokio::task::spawn_blocking(move || cloud_local::open(&local))
                .await
                .map_err(|e| CloudError::permanent("local adapter", e.to_string()))??;
            Ok(Clouds::Shared(cloud))
        }
        CloudConfig::Gcp(gcp) => Ok(Clouds::PerCell(Arc::new(Gcp::connect(gcp.clone()).await?))),
    }
}

/// The adapter named by `kind`: the local one from the data directory
/// settings, the gcp one from `LEDGERLAKE_GCP_*`.
pub fn config_for(kind: AdapterKind, local: LocalConfig) -> Result<CloudConfig, OpenError> {
    match kind {
        AdapterKind::Local => Ok(CloudConfig::Local(local)),
        AdapterKind::Gcp => Ok(CloudConfig::Gcp(GcpConfig::from_env()?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_names_round_trip_and_unknown_ones_are_refused() {
        for kind in [AdapterKind::Local, AdapterKind::Gcp] {
            assert_eq!(kind.as_str().parse::<AdapterKind>(), Ok(kind));
        }
        let err = "aws".parse::<AdapterKind>().expect_err("unknown");
        assert!(err.to_string().contains("use local or gcp"), "{err}");
    }

    #[test]
    fn the_gcp_adapter_needs_its_settings_and_is_opened_per_cell() {
        // Without LEDGERLAKE_GCP_PLATFORM_PROJECT the settings are refused,
        // naming the variable (this test's environment never sets it).
        if std::env::var_os("LEDGERLAKE_GCP_PLATFORM_PROJECT").is_none() {
            let dir = std::env::temp_dir();
            let err = config_for(AdapterKind::Gcp, LocalConfig::new(dir)).expect_err("gcp");
            assert!(
                err.to_string().contains("LEDGERLAKE_GCP_PLATFORM_PROJECT"),
                "{err}"
            );
        }
        let gcp = GcpConfig::from_lookup(|name| match name {
            "LEDGERLAKE_GCP_PLATFORM_PROJECT" => Some("ledgerlake-platform".into()),
            "LEDGERLAKE_GCP_TENANT_JOB_IMAGE" => Some("img".into()),
            _ => None,
        })
        .expect("settings");
        match open(&CloudConfig::Gcp(gcp)) {
            Err(err) => assert!(err.to_string().contains("per cell"), "{err}"),
            Ok(_) => panic!("the gcp adapter has no single Cloud"),
        }
    }
}
