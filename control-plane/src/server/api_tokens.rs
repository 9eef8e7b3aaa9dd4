//! The operator's routes for tenant API tokens: issue (the secret in this
//! answer only), list, revoke.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::{authorize, Action, Principal};
use super::{parse_tenant, ApiError, AppState};
use crate::service::tokens;
use crate::store::ApiTokenRecord;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    #[serde(default)]
    name: Option<String>,
    /// `30d`, `12h`, `90m` or seconds; left out, the token does not expire.
    #[serde(default)]
    expires: Option<String>,
}

/// `POST /v1/tenants/{id}/tokens`: 201 with the token and its `secret`,
/// which is not shown again.
pub async fn issue(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(raw): Path<String>,
    body: Option<Json<IssueToken>>,
) -> Result<Response, ApiError> {
    let id = parse_tenant(&raw)?;
    authorize(&principal, Some(&id), Action::ManageTokens)?;
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let ttl = body.expires.as_deref().map(tokens::parse_ttl).transpose()?;
    let issued = tokens::issue(
        &state.store,
        &id,
        body.name.as_deref(),
        ttl,
        &principal.actor(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(issued)).into_response())
}

/// `GET /v1/tenants/{id}/tokens`: the tenant's tokens, without secrets.
pub async fn list(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(raw): Path<String>,
) -> Result<Json<Vec<ApiTokenRecord>>, ApiError> {
    let id = parse_tenant(&raw)?;
    authorize(&principal, Some(&id), Action::ManageTokens)?;
    Ok(Json(tokens::list(&state.store, &id).await?))
}

/// `DELETE /v1/tokens/{token_id}`: 204, also when it was revoked already;
/// 404 when no token has this id.
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(token_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    // Before the lookup, so that a caller who may not manage tokens cannot
    // learn which ids exist.
    authorize(&principal, None, Action::ManageTokens)?;
    let token = tokens::get(&state.store, &token_id).await?;
    authorize(&principal, Some(&token.tenant), Action::ManageTokens)?;
    tokens::revoke(&state.store, &token.id, &principal.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}
