//! Who is calling, and what they may do. Authentication is an extractor that
//! yields a [`Principal`]; authorisation is one function over (principal,
//! tenant, action), so every route (and the query service and web pages to
//! come) asks the same question in the same place.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use subtle::ConstantTimeEq;

use cloud::naming::TenantId;

use super::{ApiError, AppState};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Holds the operator token: may do anything to any tenant.
    Operator,
}

impl Principal {
    /// Who the audit log names for this principal's actions.
    pub fn actor(&self) -> String {
        match self {
            Principal::Operator => "operator-api".to_owned(),
        }
    }
}

/// What a principal asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ReadTenant,
    ManageTenant,
    StartRun,
    ReadRun,
    /// The scheduler's tick over every tenant.
    Tick,
}

/// Whether `principal` may do `action` (on `tenant`, when the action concerns one).
pub fn authorize(
    principal: &Principal,
    _tenant: Option<&TenantId>,
    _action: Action,
) -> Result<(), ApiError> {
    match principal {
        Principal::Operator => Ok(()),
    }
}

/// The bearer token of the request, if any.
fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .filter(|t| !t.is_empty())
}

impl FromRequestParts<Arc<AppState>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let given = bearer(parts).ok_or_else(ApiError::unauthorized)?;
        if let Some(expected) = &state.config.operator_token {
            // Constant time: the comparison must not tell how much matched.
            if bool::from(given.as_bytes().ct_eq(expected.expose_secret().as_bytes())) {
                return Ok(Principal::Operator);
            }
        }
        Err(ApiError::unauthorized())
    }
}
