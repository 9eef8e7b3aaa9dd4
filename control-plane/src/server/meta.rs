//! The routes of class `Meta`, what tools read about the service: `GET
//! /metrics` (behind the scrape token or the operator token) and `GET
//! /openapi.json`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::{openapi, ApiError, AppState};
use crate::metrics;

/// `GET /metrics`: every metric in Prometheus' text format, the tenant gauges
/// read from the state store now. The scrape token or the operator token.
pub async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !may_scrape(&state, &headers) {
        return ApiError::unauthorized().into_response();
    }
    let counts = match state.store.count_tenants().await {
        Ok(counts) => Some(counts),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: the state store did not answer");
            None
        }
    };
    let metrics = metrics::metrics();
    metrics.set_tenants(counts.as_deref());
    metrics.set_cloud_usage(&state.clouds.usage());
    if state.config.control {
        let (queued, running, backing_off) = state.controller.depth();
        metrics.set_controller(queued, running, backing_off);
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        )],
        metrics.render(),
    )
        .into_response()
}

/// Whether the request carries the scrape token or the operator token
/// (compared in constant time; no token configured lets nobody in).
fn may_scrape(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty())
    else {
        return false;
    };
    [&state.config.metrics_token, &state.config.operator_token]
        .into_iter()
        .flatten()
        .any(|expected| bool::from(given.as_bytes().ct_eq(expected.expose_secret().as_bytes())))
}

/// `GET /openapi.json`: the API's OpenAPI 3.1 document. Public: it describes
/// the routes, which anyone can probe anyway, and holds no secret.
pub async fn openapi() -> Response {
    match openapi::document_json() {
        Ok(json) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response(),
        Err(e) => ApiError::internal("the OpenAPI document does not load", e).into_response(),
    }
}
