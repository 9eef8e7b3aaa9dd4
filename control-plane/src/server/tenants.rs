//! The operator's tenant routes: list (paged), view, connect links, disconnect.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::{authorize, Action, Principal};
use super::{parse_tenant, ApiError, AppState};
use crate::output::TenantView;
use crate::service::{onboarding, tenants};

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    /// Tenants in the page: 1 to 1,000 (default 100).
    limit: Option<String>,
    /// The cursor: the page starts after this tenant id (the previous
    /// page's `next`).
    after: Option<String>,
}

/// `GET /v1/tenants?limit=&after=`: a page of tenants by id, each as
/// `GET /v1/tenants/{id}` shows it, and `next`, the cursor of the following
/// page (`null` on the last). The cursor is a tenant id, so the pages stay
/// put while tenants come and go.
pub async fn list(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Query(params): Query<ListParams>,
) -> Result<Json<tenants::TenantListPage>, ApiError> {
    authorize(&principal, None, Action::ReadTenant)?;
    let after = params.after.as_deref().map(parse_tenant).transpose()?;
    let limit = match params.limit.as_deref() {
        None => tenants::PAGE_DEFAULT,
        Some(text) => text.parse().map_err(|_| {
            ApiError::bad_request(
                "invalid_limit",
                format!(
                    "limit must be a number of tenants from 1 to {}, not {text:?}",
                    tenants::PAGE_MAX
                ),
            )
        })?,
    };
    Ok(Json(
        tenants::list_page(&state.store, after.as_ref(), limit).await?,
    ))
}

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
