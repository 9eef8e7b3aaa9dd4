//! The operator's tenant routes: view, connect links, disconnect.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::{authorize, Action, Principal};
use super::{parse_tenant, ApiError, AppState};
use crate::output::TenantView;
use crate::service::{onboarding, tenants};

/// `GET /v1/tenants/{id}`: the same JSON as `tenants show --output json`.
pub async fn view(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(raw): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    let id = parse_tenant(&raw)?;
    authorize(&principal, Some(&id), Action::ReadTenant)?;
    Ok(Json(tenants::view(&state.store, &id).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintLink {
    /// How long the link lives: `7d`, `12h`, `90m` or seconds (default 7d).
    #[serde(default)]
    expires: Option<String>,
}

/// `POST /v1/tenants/{id}/connect-link`: 201 `{"url", "expires_at"}`; the
/// tenant need not exist yet (the consent creates it).
pub async fn connect_link(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(raw): Path<String>,
    body: Option<Json<MintLink>>,
) -> Result<Response, ApiError> {
    let id = parse_tenant(&raw)?;
    authorize(&principal, Some(&id), Action::ManageTenant)?;
    let ttl = match body.and_then(|Json(b)| b.expires) {
        Some(text) => onboarding::parse_expiry(&text)?,
        None => onboarding::LINK_TTL_DEFAULT,
    };
    let link = onboarding::mint_connect_link(
        &state.store,
        &state.config.public_url,
        &id,
        ttl,
        &principal.actor(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(link)).into_response())
}

/// `POST /v1/tenants/{id}/disconnect`: forgets the tenant's Xero
/// organisations so that it may connect another one.
pub async fn disconnect(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_tenant(&raw)?;
    authorize(&principal, Some(&id), Action::ManageTenant)?;
    onboarding::disconnect(&state.store, &id, &principal.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}
