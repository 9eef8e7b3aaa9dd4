//! The one place that turns configuration into a [`Cloud`]: the control plane
//! and the tenant job both open their adapters here, so choosing an adapter
//! is never spelt twice. Only the binaries depend on this crate (it links
//! every adapter, and so DuckDB); libraries take a [`Cloud`].

use std::fmt;
use std::str::FromStr;

use cloud::{Cloud, CloudError};
pub use cloud_local::LocalConfig;

/// Which adapter, by its name in `--cloud` / `LEDGERLAKE_CLOUD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdapterKind {
    /// The embedded default: folders, DuckDB, encrypted files, child processes.
    #[default]
    Local,
    /// Google Cloud (the `cloud-gcp` adapter, not built yet).
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
}

impl CloudConfig {
    pub fn kind(&self) -> AdapterKind {
        match self {
            CloudConfig::Local(_) => AdapterKind::Local,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the {0} adapter is not available in this build")]
    Unavailable(AdapterKind),
    #[error(transparent)]
    Cloud(#[from] CloudError),
}

/// Opens the configured adapter. Blocking (the local adapter reads files).
pub fn open(config: &CloudConfig) -> Result<Cloud, OpenError> {
    match config {
        CloudConfig::Local(local) => Ok(cloud_local::open(local)?),
    }
}

/// The adapter named by `kind`, configured from the local data directory
/// settings (the only adapter built so far).
pub fn config_for(kind: AdapterKind, local: LocalConfig) -> Result<CloudConfig, OpenError> {
    match kind {
        AdapterKind::Local => Ok(CloudConfig::Local(local)),
        AdapterKind::Gcp => Err(OpenError::Unavailable(kind)),
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
    fn the_gcp_adapter_is_refused_until_it_exists() {
        let dir = std::env::temp_dir();
        let err = config_for(AdapterKind::Gcp, LocalConfig::new(dir)).expect_err("gcp");
        assert!(matches!(err, OpenError::Unavailable(AdapterKind::Gcp)));
    }
}
