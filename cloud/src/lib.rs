//! ledgerlake's ports to the cloud, tenant naming, errors and object leases.
//!
//! The control plane and the tenant job talk to storage, the warehouse, IAM,
//! secrets and jobs only through the traits in [`ports`]. The adapters live in
//! their own crates: `cloud-local` (the embedded default: folders, DuckDB,
//! encrypted files, child processes) and `cloud-gcp` (Google Cloud, a Cloud per
//! cell: see [`cells`]); so nothing that only needs the ports links DuckDB.

pub mod cells;
pub mod error;
#[cfg(feature = "test-utils")]
pub mod faulty;
pub mod lease;
pub mod naming;
pub mod ports;
pub mod retry;

use std::sync::Arc;

pub use cells::{ApiUsage, CellClouds, CellLocation, Clouds};
pub use error::{CloudError, CloudResult};
pub use naming::{DeploymentPrefix, Labels, TenantId};
pub use ports::Credential;

/// One set of adapters: everything the control plane needs from a cloud.
#[derive(Clone)]
pub struct Cloud {
    pub objects: Arc<dyn ports::ObjectStore>,
    pub warehouse: Arc<dyn ports::Warehouse>,
    pub identity: Arc<dyn ports::Identity>,
    pub secrets: Arc<dyn ports::SecretStore>,
    pub jobs: Arc<dyn ports::JobRunner>,
}
