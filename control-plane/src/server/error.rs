//! API errors: JSON `{"code", "message"}` with a stable code, plus an
//! `error_id` on internal failures that is logged with the cause, so an
//! operator can find the cause from what a caller reports. Messages never
//! carry a token, a verifier, another tenant's data or a CLI hint. Every
//! conversion into [`ApiError`] lives here.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::runs::RunError;
use crate::service::ServiceError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Set on internal failures: the id logged with the cause.
    pub error_id: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_id: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            error_id: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this credential may not do that",
        )
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// An internal failure: the cause is logged under a fresh error id, and the
    /// caller gets the context and that id only.
    pub fn internal(context: &str, err: &(dyn std::error::Error + 'static)) -> Self {
        let error_id = uuid::Uuid::new_v4().simple().to_string();
        let mut causes = String::new();
        let mut source = err.source();
        while let Some(s) = source {
            causes.push_str(": ");
            causes.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(%error_id, error = %err, causes = %causes, "{context}");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: format!("{context} (error id {error_id})"),
            error_id: Some(error_id),
        }
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            code: self.code,
            message: &self.message,
            error_id: self.error_id.as_deref(),
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::QueryNotFound(_) => ApiError::not_found("query_not_found", e.to_string()),
            // Capacity an operator must add; nothing was recorded.
            StoreError::NoCellRoom(_) => ApiError::unavailable("no_cell_room", e.to_string()),
            StoreError::NoCells(_) => ApiError::unavailable("no_cells", e.to_string()),
            _ => ApiError::internal("the state store failed", &e),
        }
    }
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        match &e {
            RunError::UnknownTenant(_) => ApiError::not_found("tenant_not_found", e.to_string()),
            RunError::UnknownRun(_) => ApiError::not_found("run_not_found", e.to_string()),
            RunError::Active { .. } => ApiError::conflict("run_in_progress", e.to_string()),
            RunError::NotReady { .. } => ApiError::conflict("tenant_not_ready", e.to_string()),
            RunError::NeedsConsent(_) => ApiError::conflict("needs_consent", e.to_string()),
            RunError::Start { .. } | RunError::Follow { .. } | RunError::Cancel { .. } => {
                ApiError::unavailable("jobs_unavailable", e.to_string())
            }
            RunError::Timeout(_) | RunError::CancelTimeout(_) => {
                ApiError::unavailable("timeout", e.to_string())
            }
            RunError::Store(inner) => ApiError::internal("the state store failed", inner),
            RunError::Cell(crate::clouds::TenantCloudError::UnknownTenant(_)) => {
                ApiError::not_found("tenant_not_found", e.to_string())
            }
            RunError::Cell(crate::clouds::TenantCloudError::Store(inner)) => {
                ApiError::internal("the state store failed", inner)
            }
            RunError::Cell(crate::clouds::TenantCloudError::Cloud { .. }) => {
                ApiError::conflict("tenant_not_placed", e.to_string())
            }
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound { code, message } => ApiError::not_found(code, message),
            ServiceError::Conflict { code, message } => ApiError::conflict(code, message),
            ServiceError::Invalid { code, message } => ApiError::bad_request(code, message),
            ServiceError::Unavailable { code, message } => ApiError::unavailable(code, message),
            ServiceError::Upstream { code, message } => {
                ApiError::new(StatusCode::BAD_GATEWAY, code, message)
            }
            ServiceError::Store(inner) => inner.into(),
            ServiceError::Run(inner) => inner.into(),
            ServiceError::Internal { context, source } => {
                ApiError::internal(context, source.as_ref())
            }
        }
    }
}
