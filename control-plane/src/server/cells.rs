//! The operator's cell routes: register, list, show, drain, activate.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::{authorize, Action, Principal};
use super::{ApiError, AppState};
use crate::service::cells::{self, CellView, DEFAULT_CAPACITY};
use crate::store::NewCell;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddCell {
    id: String,
    project: String,
    region: String,
    /// Tenants at most (default 100).
    #[serde(default)]
    capacity: Option<i64>,
}

/// `POST /v1/cells`: 201 with the cell; 200 when the same cell was
/// registered before; 409 when its id or project is another cell's.
pub async fn add(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    body: Result<Json<AddCell>, JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&principal, None, Action::ManageCells)?;
    let Json(body) = body.map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))?;
    let added = cells::add(
        &state.store,
        &state.clouds,
        NewCell {
            id: body.id,
            project: body.project,
            region: body.region,
            capacity: body.capacity.unwrap_or(DEFAULT_CAPACITY),
        },
        state.runs.xero_client_secret(),
        &principal.actor(),
    )
    .await?;
    let status = if added.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(added)).into_response())
}

/// `GET /v1/cells`: every cell, oldest first, with its tenants and room.
pub async fn list(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Json<Vec<CellView>>, ApiError> {
    authorize(&principal, None, Action::ManageCells)?;
    Ok(Json(cells::list(&state.store).await?))
}

/// `GET /v1/cells/{id}`: one cell and its tenants' ids.
pub async fn show(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<CellView>, ApiError> {
    authorize(&principal, None, Action::ManageCells)?;
    Ok(Json(cells::show(&state.store, &id).await?))
}

/// `POST /v1/cells/{id}/drain`: no new tenant from now on; its tenants stay.
pub async fn drain(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<CellView>, ApiError> {
    authorize(&principal, None, Action::ManageCells)?;
    Ok(Json(
        cells::drain(&state.store, &id, &principal.actor()).await?,
    ))
}

/// `POST /v1/cells/sync-secret`: the Xero app's client secret this service
/// holds, written into every cell where it differs (after a rotation); 409
/// where tenants have no cells, 503 without a client secret.
pub async fn sync_secret(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Json<Vec<cells::AppSecretSync>>, ApiError> {
    authorize(&principal, None, Action::ManageCells)?;
    if !state.clouds.needs_cells() {
        return Err(ApiError::conflict(
            "no_cells",
            "this cloud keeps no tenants in cells: each run carries the Xero app's client secret",
        ));
    }
    let Some(secret) = state.runs.xero_client_secret() else {
        return Err(ApiError::unavailable(
            "xero_not_configured",
            "this service has no Xero client secret to write",
        ));
    };
    Ok(Json(
        cells::sync_app_secret(
            &state.store,
            &state.clouds,
            None,
            secret,
            &principal.actor(),
        )
        .await?,
    ))
}

/// `POST /v1/cells/{id}/activate`: new tenants again (a cell without room
/// stays `full`).
pub async fn activate(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<CellView>, ApiError> {
    authorize(&principal, None, Action::ManageCells)?;
    Ok(Json(
        cells::activate(&state.store, &id, &principal.actor()).await?,
    ))
}
