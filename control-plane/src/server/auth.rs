//! Who is calling, and what they may do. Authentication is an extractor that
//! yields a [`Principal`]; authorisation is one function over (principal,
//! tenant, action), so every route (and the query service and web pages to
//! come) asks the same question in the same place. Cloud Scheduler's ID
//! tokens are verified in `oidc.rs`.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use subtle::ConstantTimeEq;

use cloud::naming::TenantId;

use super::{oidc, ApiError, AppState};
use crate::service::tokens;
use crate::store::TOKEN_PREFIX;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Holds the operator token: may do anything to any tenant.
    Operator,
    /// Holds one of a tenant's API tokens (`llt_…`): may ask questions of
    /// that tenant's data, and nothing else.
    Tenant { tenant: TenantId, token_id: String },
    /// Cloud Scheduler, by a Google-signed ID token of its service account
    /// (when configured): may tick the scheduler, and nothing else.
    Scheduler,
}

impl Principal {
    /// Who the audit log names for this principal's actions: a tenant
    /// principal by its token's id (never its secret).
    pub fn actor(&self) -> String {
        match self {
            Principal::Operator => "operator-api".to_owned(),
            Principal::Tenant { token_id, .. } => format!("token:{token_id}"),
            Principal::Scheduler => "cloud-scheduler".to_owned(),
        }
    }

    /// The tenant the credential itself names: the only one a tenant
    /// principal may query. `None` for the operator and the scheduler.
    pub fn tenant(&self) -> Option<&TenantId> {
        match self {
            Principal::Operator | Principal::Scheduler => None,
            Principal::Tenant { tenant, .. } => Some(tenant),
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
    /// Ask a question of a tenant's data, read its result and conversation,
    /// give feedback on it.
    Query,
    /// Issue, list and revoke a tenant's API tokens.
    ManageTokens,
    /// Register, read, drain and activate cells.
    ManageCells,
}

/// Whether `principal` may do `action` (on `tenant`, when the action concerns
/// one). A tenant principal may only [`Action::Query`] its own tenant, named
/// explicitly: anything else is 403, whether or not the target exists.
pub fn authorize(
    principal: &Principal,
    tenant: Option<&TenantId>,
    action: Action,
) -> Result<(), ApiError> {
    match principal {
        Principal::Operator => Ok(()),
        Principal::Scheduler => match action {
            Action::Tick => Ok(()),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the scheduler's ID token may only tick the scheduler; \
                 this needs the operator token",
            )),
        },
        Principal::Tenant { tenant: own, .. } => match (action, tenant) {
            (Action::Query, Some(target)) if target == own => Ok(()),
            (Action::Query, _) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a tenant API token may only query its own tenant",
            )),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a tenant API token may only ask questions of its own tenant; \
                 this needs the operator token",
            )),
        },
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
        // A tenant token is found by its hash; an unknown, revoked or expired
        // one gets the same answer as a wrong operator token.
        if given.starts_with(TOKEN_PREFIX) {
            if let Some(token) = tokens::authenticate(&state.store, given).await? {
                return Ok(Principal::Tenant {
                    tenant: token.tenant,
                    token_id: token.id,
                });
            }
        } else if let Some(verifier) = &state.config.scheduler.id_token {
            // Cloud Scheduler's ID token, when one is configured. Its refusal
            // says why (never what the token held).
            if oidc::looks_like_jwt(given) {
                return match verifier.verify(given).await {
                    Ok(()) => Ok(Principal::Scheduler),
                    Err(e) => {
                        tracing::info!(code = e.code(), "an ID token was refused: {e}");
                        Err(ApiError::new(
                            StatusCode::UNAUTHORIZED,
                            e.code(),
                            e.to_string(),
                        ))
                    }
                };
            }
        }
        Err(ApiError::unauthorized())
    }
}
