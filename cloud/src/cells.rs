//! Which adapters serve a tenant. Locally one [`Cloud`] holds every tenant;
//! on Google Cloud each cell (a project and region holding up to a configured
//! number of tenants) has its own, and a tenant's resources live in its cell's
//! project. Everything that acts for a tenant asks [`Clouds::for_cell`] with
//! the tenant's cell.

use std::fmt;
use std::sync::Arc;

use crate::error::{CloudError, CloudResult};
use crate::Cloud;

/// Where a cell's resources live.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CellLocation {
    pub project: String,
    pub region: String,
}

/// The adapters of each cell, from its location.
pub trait CellClouds: Send + Sync {
    fn cloud_for(&self, cell: &CellLocation) -> Cloud;

    /// The calls this process made to the cloud's APIs so far, by quota (for
    /// `/metrics`); none where nothing is counted.
    fn usage(&self) -> Vec<ApiUsage> {
        Vec::new()
    }
}

/// Calls to one quota of a cloud's APIs since the process started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiUsage {
    /// The quota the calls count against, e.g. `policy_write`.
    pub quota: &'static str,
    /// Every attempt, retries included.
    pub calls: u64,
    /// Attempts repeated because the API answered 429 or 503.
    pub retries: u64,
}

/// The adapters of a deployment.
#[derive(Clone)]
pub enum Clouds {
    /// One Cloud for every tenant, placed or not (the local adapter).
    Shared(Cloud),
    /// A Cloud per cell; a tenant with no cell has none.
    PerCell(Arc<dyn CellClouds>),
}

impl fmt::Debug for Clouds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Clouds::Shared(_) => "Clouds::Shared",
            Clouds::PerCell(_) => "Clouds::PerCell",
        })
    }
}

impl From<Cloud> for Clouds {
    fn from(cloud: Cloud) -> Self {
        Clouds::Shared(cloud)
    }
}

impl Clouds {
    /// The Cloud of a tenant in `cell` (`None`: a tenant not placed).
    pub fn for_cell(&self, cell: Option<&CellLocation>) -> CloudResult<Cloud> {
        match (self, cell) {
            (Clouds::Shared(cloud), _) => Ok(cloud.clone()),
            (Clouds::PerCell(cells), Some(cell)) => Ok(cells.cloud_for(cell)),
            (Clouds::PerCell(_), None) => Err(CloudError::permanent(
                "tenant",
                "has no cell, and this cloud keeps tenants in cells: register one with `cells add`, then provision again",
            )),
        }
    }

    /// Whether tenants need a cell here.
    pub fn needs_cells(&self) -> bool {
        matches!(self, Clouds::PerCell(_))
    }

    /// The API calls made so far (none counted for the local adapter, whose
    /// calls are file and DuckDB operations).
    pub fn usage(&self) -> Vec<ApiUsage> {
        match self {
            Clouds::Shared(_) => Vec::new(),
            Clouds::PerCell(cells) => cells.usage(),
        }
    }
}
