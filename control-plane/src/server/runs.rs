//! Runs over HTTP: the scheduler tick Cloud Scheduler calls, a manual
//! refresh of one tenant, and reading runs. All behind the operator token.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::{authorize, Action, Principal};
use super::{parse_tenant, ApiError, AppState};
use crate::scheduler;
use crate::store::{RunCommand, RunTrigger};

/// `POST /v1/scheduler/tick`: follow runs in progress, start the due ones.
pub async fn tick(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Response, ApiError> {
    authorize(&principal, None, Action::Tick)?;
    let report = scheduler::tick(
        &state.runs,
        &state.config.scheduler,
        time::OffsetDateTime::now_utc(),
    )
    .await?;
    Ok(Json(report).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// `ingest`, `transform` or `sync` (the default).
    #[serde(default)]
    command: Option<String>,
}

/// `POST /v1/tenants/{id}/runs`: start a run now (a manual refresh). 202 with
/// the run; 409 when one is in progress or the tenant cannot run.
pub async fn start(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(raw): Path<String>,
    body: Option<Json<StartRun>>,
) -> Result<Response, ApiError> {
    let id = parse_tenant(&raw)?;
    authorize(&principal, Some(&id), Action::StartRun)?;
    let command = match body.and_then(|Json(b)| b.command).as_deref() {
        None | Some("sync") => RunCommand::Sync,
        Some("ingest") => RunCommand::Ingest,
        Some("transform") => RunCommand::Transform,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_command",
                format!("unknown command {other:?}: use ingest, transform or sync"),
            ))
        }
    };
    let run = state.runs.start(&id, command, RunTrigger::Api).await?;
    Ok((StatusCode::ACCEPTED, Json(run)).into_response())
}

/// `GET /v1/tenants/{id}/runs`: the tenant's newest runs.
pub async fn list(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_tenant(&raw)?;
    authorize(&principal, Some(&id), Action::ReadRun)?;
    if state.store.get_tenant(&id).await?.is_none() {
        return Err(ApiError::not_found(
            "tenant_not_found",
            format!("tenant {id} does not exist"),
        ));
    }
    Ok(Json(state.store.list_runs(Some(&id), 50).await?).into_response())
}

/// `GET /v1/runs/{run_id}`: one run, brought up to date.
pub async fn show(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(run_id): Path<String>,
) -> Result<Response, ApiError> {
    // Before the lookup, so that a caller who may not read runs cannot learn
    // which run ids exist.
    authorize(&principal, None, Action::ReadRun)?;
    let run = state.runs.get(&run_id).await?;
    authorize(&principal, Some(&run.tenant), Action::ReadRun)?;
    let run = state.runs.follow(&run).await?;
    Ok(Json(run).into_response())
}
