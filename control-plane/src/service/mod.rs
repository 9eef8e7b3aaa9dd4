//! The operations the CLI and the HTTP routes share. A handler extracts its
//! inputs, calls one function here and maps the result; a CLI command does the
//! same. Errors are typed ([`ServiceError`]) and carry no hint that only makes
//! sense on one side (an HTTP route never says "run `tenants provision`").

pub mod cells;
pub mod onboarding;
pub mod questions;
pub mod tenants;
pub mod terraform;
pub mod tokens;

use crate::reconciler::ReconcileError;
use crate::runs::RunError;
use crate::store::StoreError;

/// Why a service operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// What was named does not exist (`code` e.g. `tenant_not_found`).
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// Not possible in the current state (a tenant being deleted, a run in progress).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The input is wrong; nothing was changed.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// A dependency of the operation is not configured or not reachable.
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    /// A remote (Xero) refused or failed.
    #[error("{message}")]
    Upstream { code: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Run(#[from] RunError),
    /// Something of ours failed; the source says what (logged, never shown).
    #[error("{context}: {source}")]
    Internal {
        context: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ServiceError {
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ServiceError::NotFound {
            code,
            message: message.into(),
        }
    }

    /// The one spelling of "no such tenant".
    pub fn tenant_not_found(id: &cloud::naming::TenantId) -> Self {
        Self::not_found("tenant_not_found", format!("tenant {id} does not exist"))
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ServiceError::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ServiceError::Invalid {
            code,
            message: message.into(),
        }
    }

    pub fn internal(
        context: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        ServiceError::Internal {
            context,
            source: Box::new(source),
        }
    }
}

impl From<ReconcileError> for ServiceError {
    fn from(e: ReconcileError) -> Self {
        match e {
            ReconcileError::UnknownTenant(id) => ServiceError::tenant_not_found(&id),
            ReconcileError::Busy(_) | ReconcileError::LeaseLost(_) => {
                ServiceError::conflict("tenant_busy", e.to_string())
            }
            ReconcileError::Store(inner) => ServiceError::Store(inner),
            ReconcileError::Cell(crate::clouds::TenantCloudError::UnknownTenant(id)) => {
                ServiceError::tenant_not_found(&id)
            }
            ReconcileError::Cell(crate::clouds::TenantCloudError::Store(inner)) => {
                ServiceError::Store(inner)
            }
            ReconcileError::Cell(e @ crate::clouds::TenantCloudError::Cloud { .. }) => {
                ServiceError::conflict("tenant_not_placed", e.to_string())
            }
        }
    }
}
