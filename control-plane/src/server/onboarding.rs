//! Consent-driven onboarding: `/connect/xero` starts the authorization-code
//! flow with PKCE and a single-use state; `/oauth/xero/callback` finishes it,
//! stores the token set in the tenant's secret first, records the tenant and
//! its organisations, and leaves provisioning to the background workers.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use serde::Deserialize;
use xero::secret::SecretString;

use super::{parse_tenant, ApiError, AppState};
use crate::service::onboarding;

#[derive(Debug, Deserialize)]
pub struct ConnectParams {
    link: Option<String>,
    tenant: Option<String>,
}

/// The cookie that lets the browser that opened a connect link follow its
/// tenant's onboarding status.
const LINK_COOKIE: &str = "ledgerlake_connect";

/// `GET /connect/xero?link=<token>`: starts the consent a connect link allows
/// and redirects to Xero's consent page.
pub async fn connect(
    State(state): State<Arc<AppState>>,
    Query(params): Query<ConnectParams>,
) -> Result<Response, ApiError> {
    let Some(link) = params.link.filter(|l| !l.is_empty()) else {
        let message = if params.tenant.is_some() {
            "consent starts only from a connect link that an operator issued for the tenant"
        } else {
            "the link query parameter is required"
        };
        return Err(ApiError::bad_request("connect_link_required", message));
    };
    let url = onboarding::start_consent(
        &state.store,
        state.config.oauth.as_ref(),
        state.reconciler.without_cells(),
        &link,
    )
    .await?;
    let secure = if state.config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    // Links are URL-safe base64, so the value needs no quoting.
    let cookie = format!(
        "{LINK_COOKIE}={link}; Path=/onboarding; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        onboarding::STATUS_AFTER_USE.as_secs()
    );
    let mut response = Redirect::to(&url).into_response();
    if let Ok(value) = header::HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// The OAuth code and state are credentials: Debug redacts them.
#[derive(Debug, Deserialize)]
pub struct CallbackParams {
    code: Option<SecretString>,
    state: Option<SecretString>,
    error: Option<String>,
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// `GET /oauth/xero/callback`: Xero's redirect after consent. Provisioning is
/// queued for the controller; the answer comes at once.
pub async fn callback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<CallbackParams>,
) -> Result<Response, ApiError> {
    let expose = |s: SecretString| s.expose_secret().to_owned();
    let callback = onboarding::Callback {
        state: params.state.map(expose),
        code: params.code.map(expose),
        error: params.error,
    };
    let connected = onboarding::complete_consent(
        &state.clouds,
        &state.store,
        state.config.oauth.as_ref(),
        state.reconciler.without_cells(),
        callback,
    )
    .await?;
    let id = connected.tenant;
    state.enqueue(id.clone());

    let status_url = format!(
        "{}/onboarding/{id}/status",
        state.config.public_url.trim_end_matches('/')
    );
    if wants_json(&headers) {
        let body = serde_json::json!({
            "tenant": id.as_str(),
            "organisations": connected.organisations,
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

#[derive(Debug, Deserialize)]
pub struct StatusParams {
    link: Option<String>,
}

/// The connect link from the query or, for the browser that opened it, the cookie.
fn link_from(params: StatusParams, headers: &HeaderMap) -> Option<String> {
    params.link.or_else(|| {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == LINK_COOKIE)
            .map(|(_, value)| value.to_owned())
    })
}

/// `GET /onboarding/{id}/status`: the tenant's phase, and whether Xero must be
/// connected again, for the onboarding page of the connect link's holder
/// (`?link=` or the cookie `/connect/xero` set); anyone else gets 404.
pub async fn status(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Query(params): Query<StatusParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_tenant(&raw)?;
    let link = link_from(params, &headers);
    Ok(Json(
        onboarding::status(&state.store, &id, link.as_deref()).await?,
    ))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;
    use crate::platform::PlatformConfig;
    use crate::service::tokens::IssuedToken;
    use crate::store::ApiTokenRecord;

    /// `text` as the test may print it: every secret replaced.
    fn shown(text: &str, secrets: &[&str]) -> String {
        secrets
            .iter()
            .fold(text.to_owned(), |t, s| t.replace(s, "<SECRET>"))
    }

    fn assert_hides(debug: String, secrets: &[&str]) {
        for secret in secrets {
            assert!(!debug.contains(secret), "{}", shown(&debug, secrets));
        }
    }

    /// What carries a credential is logged with `{:?}` sooner or later: none
    /// of them shows it.
    #[test]
    fn debug_output_carries_no_secret() {
        let password = "pg-Pass#word-1";
        let master_key = "master-key-0a1b2c3d";
        let config = PlatformConfig {
            cloud: Default::default(),
            data_dir: "/var/lib/ll".into(),
            database_url: Some(format!("postgres://ll:{password}@db/ll")),
            bucket_prefix: None,
            master_key: Some(master_key.to_owned()),
        };
        let debug = format!("{config:?}");
        assert_hides(debug.clone(), &[password, master_key]);
        assert!(debug.contains("postgres://ll:***@db/ll"), "{debug}");

        let (client_secret, operator, metrics, webhook, api_key) = (
            "xero-client-secret-1",
            "operator-token-2",
            "metrics-token-3",
            "webhook-key-4",
            "llm-api-key-5",
        );
        let url = format!("postgres://ll:{password}@db/ll");
        let serve = Cli::try_parse_from([
            "control-plane",
            "--database-url",
            &url,
            "serve",
            "--xero-client-id",
            "client-id",
            "--xero-client-secret",
            client_secret,
            "--operator-token",
            operator,
            "--metrics-token",
            metrics,
            "--xero-webhook-key",
            webhook,
            "--llm-api-key",
            api_key,
        ])
        .unwrap_or_else(|e| panic!("serve args: {}", e.kind()));
        let debug = format!("{serve:?}");
        let secrets = [password, client_secret, operator, metrics, webhook, api_key];
        assert_hides(debug.clone(), &secrets);
        assert!(debug.contains("client-id"), "{}", shown(&debug, &secrets));
        let query = Cli::try_parse_from([
            "control-plane",
            "query",
            "acme",
            "revenue",
            "--llm-api-key",
            api_key,
        ])
        .unwrap_or_else(|e| panic!("query args: {}", e.kind()));
        assert_hides(format!("{query:?}"), &[api_key]);

        let (code, state) = ("oauth-code-6", "oauth-state-7");
        let params: CallbackParams = serde_json::from_value(serde_json::json!({
            "code": code,
            "state": state,
            "error": "access_denied",
        }))
        .unwrap_or_else(|e| panic!("callback params: {:?}", e.classify()));
        let debug = format!("{params:?}");
        assert_hides(debug.clone(), &[code, state]);
        assert!(
            debug.contains("access_denied"),
            "{}",
            shown(&debug, &[code, state])
        );

        let token_secret = "llt_issued-secret-8";
        let issued = IssuedToken {
            token: ApiTokenRecord {
                id: "tok_1".into(),
                tenant: cloud::naming::TenantId::parse("acme").expect("id"),
                name: "default".into(),
                created_by: "test".into(),
                created_at: time::OffsetDateTime::UNIX_EPOCH,
                expires_at: None,
                revoked_at: None,
                last_used_at: None,
            },
            secret: SecretString::new(token_secret),
        };
        assert_hides(format!("{issued:?}"), &[token_secret]);
        // Serialised, it is shown: this is the one time it is handed over.
        let json = serde_json::to_value(&issued).expect("json");
        assert_eq!(json["secret"], token_secret);
    }
}
