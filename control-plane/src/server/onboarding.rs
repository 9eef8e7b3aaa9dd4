//! Consent-driven onboarding: `/connect/xero` starts the authorization-code
//! flow with PKCE and a single-use state; `/oauth/xero/callback` finishes it,
//! stores the token set in the tenant's secret first, records the tenant and
//! its organisations, and leaves provisioning to the background workers.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use serde::Deserialize;

use cloud::ports::Credential;
use xero::secret::SecretString;

use super::{parse_tenant, ApiError, AppState};
use crate::store::{Desired, StoreError};

/// How long a consent may take between `/connect/xero` and the callback.
pub const STATE_TTL: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Deserialize)]
pub struct ConnectParams {
    tenant: Option<String>,
}

/// `GET /connect/xero?tenant=<id>`: redirects to Xero's consent page.
pub async fn connect(
    State(state): State<Arc<AppState>>,
    Query(params): Query<ConnectParams>,
) -> Result<Response, ApiError> {
    let raw = params.tenant.ok_or_else(|| {
        ApiError::bad_request(
            "invalid_tenant_id",
            format!(
                "the tenant query parameter is required; {}",
                cloud::naming::TENANT_ID_RULE
            ),
        )
    })?;
    let id = parse_tenant(&raw)?;
    if let Some(t) = state.store.get_tenant(&id).await? {
        if t.desired == Desired::Absent {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "tenant_deleting",
                format!(
                    "tenant {id} is being deleted; connect again once the teardown has finished"
                ),
            ));
        }
    }
    let oauth = state.config.oauth.as_ref().ok_or_else(|| {
        ApiError::unavailable(
            "xero_not_configured",
            "no Xero app is configured on this control plane",
        )
    })?;
    let request = oauth.authorize_url();
    state
        .store
        .put_oauth_state(
            &request.state,
            &id,
            request.pkce_verifier.expose_secret(),
            STATE_TTL,
        )
        .await?;
    tracing::info!(tenant = %id, "consent started");
    Ok(Redirect::to(request.url.as_str()).into_response())
}

#[derive(Debug, Deserialize)]
pub struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// `GET /oauth/xero/callback`: Xero's redirect after consent.
pub async fn callback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<CallbackParams>,
) -> Result<Response, ApiError> {
    let invalid_state = || {
        ApiError::bad_request(
            "invalid_state",
            "this consent link is unknown, expired or already used; start again from /connect/xero",
        )
    };
    let raw_state = params.state.ok_or_else(invalid_state)?;
    let consent = state
        .store
        .take_oauth_state(&raw_state)
        .await?
        .ok_or_else(invalid_state)?;
    let id = consent.tenant.clone();
    if let Some(error) = params.error {
        tracing::info!(tenant = %id, error = %error, "consent was not given");
        return Err(ApiError::bad_request(
            "consent_denied",
            format!(
                "Xero did not grant access ({}); start again from /connect/xero",
                error.chars().take(64).collect::<String>()
            ),
        ));
    }
    let code = params.code.ok_or_else(|| {
        ApiError::bad_request("missing_code", "the callback carries no authorization code")
    })?;
    let oauth = state.config.oauth.as_ref().ok_or_else(|| {
        ApiError::unavailable(
            "xero_not_configured",
            "no Xero app is configured on this control plane",
        )
    })?;
    let (tokens, connections) = oauth
        .complete_consent(&code, &SecretString::new(consent.pkce_verifier))
        .await
        .map_err(|e| {
            tracing::warn!(tenant = %id, error = %e, "code exchange failed");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "xero_exchange_failed",
                format!("Xero refused the consent: {e}"),
            )
        })?;
    if connections.is_empty() {
        return Err(ApiError::bad_request(
            "no_organisation",
            "the consent granted no Xero organisation; choose an organisation when consenting",
        ));
    }

    // The token set is written before anything else: once Xero has issued it,
    // losing it would cost the client another consent.
    crate::tokens::write_token_set(&state.cloud, &Credential::Platform, &id, &tokens)
        .await
        .map_err(|e| ApiError::internal("storing the Xero token set failed", &e))?;
    match state.store.want_tenant(&id).await {
        Ok(_) => {}
        Err(StoreError::TenantDeleting(_)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "tenant_deleting",
                format!("tenant {id} is being deleted"),
            ))
        }
        Err(e) => return Err(e.into()),
    }
    let organisations: Vec<(String, Option<String>)> = connections
        .iter()
        .map(|c| (c.tenant_id.clone(), c.tenant_name.clone()))
        .collect();
    state.store.record_connections(&id, &organisations).await?;
    let org_ids: Vec<&str> = organisations.iter().map(|(o, _)| o.as_str()).collect();
    state
        .store
        .audit(
            "xero-consent",
            "tenant.consent",
            Some(&id),
            &serde_json::json!({ "organisations": org_ids }),
        )
        .await?;
    state.enqueue(id.clone());
    tracing::info!(tenant = %id, organisations = org_ids.len(), "consent completed; provisioning queued");

    let status_url = format!(
        "{}/onboarding/{id}/status",
        state.config.public_url.trim_end_matches('/')
    );
    if wants_json(&headers) {
        let body = serde_json::json!({
            "tenant": id.as_str(),
            "organisations": org_ids,
            "phase": "Provisioning",
            "status_url": status_url,
        });
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    Ok((
        StatusCode::ACCEPTED,
        Html(connected_page(id.as_str(), &status_url)),
    )
        .into_response())
}

fn connected_page(tenant: &str, status_url: &str) -> String {
    // Tenant ids are [a-z0-9-] and the URL is built from them, so nothing needs escaping.
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Xero connected</title>\
         <meta name=\"viewport\" content=\"width=device-width\"></head><body>\
         <h1>Xero connected</h1><p>Your workspace <strong>{tenant}</strong> is being prepared. \
         This takes a minute or two.</p><p id=\"phase\">Phase: Provisioning</p>\
         <p><a href=\"{status_url}\">Check progress</a></p>\
         <script>async function poll(){{try{{const r=await fetch('{status_url}');const j=await r.json();\
         document.getElementById('phase').textContent='Phase: '+j.phase;if(j.phase!=='Ready'){{setTimeout(poll,2000);}}}}\
         catch(e){{setTimeout(poll,5000);}}}}poll();</script></body></html>"
    )
}

/// `GET /onboarding/{id}/status`: the tenant's phase, and whether Xero must be
/// connected again, for the onboarding page.
pub async fn status(
    State(state): State<Arc<AppState>>,
    Path(raw): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_tenant(&raw)?;
    let tenant = state.store.get_tenant(&id).await?.ok_or_else(|| {
        ApiError::not_found("tenant_not_found", format!("tenant {id} does not exist"))
    })?;
    let needs_consent = state.store.needs_consent(&id).await?;
    Ok(Json(serde_json::json!({
        "id": id.as_str(),
        "phase": tenant.phase.to_string(),
        "needs_consent": needs_consent,
    })))
}
