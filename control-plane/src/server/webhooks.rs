//! `POST /webhooks/xero`: signed change events. A bad signature gets 401, a
//! good one 200 with an empty body (the intent-to-receive handshake included),
//! always within Xero's 5 seconds; affected tenants are marked for an
//! incremental run.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use crate::store::WebhookEventRecord;

use super::AppState;

/// Xero waits 5 seconds; answer well within that.
const RECORD_BUDGET: Duration = Duration::from_secs(3);

pub async fn receive(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Some(key) = &state.config.webhook_key else {
        tracing::warn!("webhook refused: no signing key is configured");
        return StatusCode::UNAUTHORIZED;
    };
    let signature = headers
        .get("x-xero-signature")
        .and_then(|v| v.to_str().ok());
    let payload = match xero::webhook::verify_and_parse(key, &body, signature) {
        Ok(p) => p,
        Err(e) if e.is_unauthorized() => {
            tracing::info!("webhook refused: bad signature");
            return StatusCode::UNAUTHORIZED;
        }
        Err(e) => {
            tracing::warn!(error = %e, "webhook with a valid signature but an unreadable body");
            return StatusCode::BAD_REQUEST;
        }
    };
    if payload.is_intent_to_receive() {
        return StatusCode::OK;
    }
    let events: Vec<WebhookEventRecord> = payload
        .events
        .iter()
        .map(|e| WebhookEventRecord {
            xero_tenant_id: e.tenant_id.clone(),
            event_category: String::from(e.event_category.clone()),
            event_type: String::from(e.event_type.clone()),
            resource_id: e.resource_id.clone(),
            event_date: e.event_date_utc.to_string(),
        })
        .collect();
    // An exact replay of a delivery (same signed body) is acknowledged and
    // changes nothing.
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&body))
    };
    let recording = state.store.record_webhook_delivery(Some(&digest), &events);
    match tokio::time::timeout(RECORD_BUDGET, recording).await {
        Ok(Ok(None)) => {
            tracing::info!("webhook delivery seen before; ignored");
            StatusCode::OK
        }
        Ok(Ok(Some(marked))) => {
            tracing::info!(
                events = events.len(),
                tenants = marked.len(),
                "webhook events recorded"
            );
            StatusCode::OK
        }
        // Not recorded: a non-2xx makes Xero deliver the batch again.
        Ok(Err(e)) => {
            tracing::error!(error = %e, "recording webhook events failed");
            StatusCode::SERVICE_UNAVAILABLE
        }
        Err(_) => {
            tracing::error!("recording webhook events took too long");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}
