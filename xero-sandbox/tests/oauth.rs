//! The xero crate's OAuth client against the sandbox's identity service:
//! consent with PKCE, code and refresh-token rules, revocation, connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use xero::{
    ListRequest, OAuthClient, OAuthConfig, OAuthError, RefreshingTokenProvider, Resource,
    SecretString, XeroClient,
};
use xero_sandbox::{Sandbox, SandboxConfig};

const CLIENT_ID: &str = "SANDBOXCLIENT0001";
const SECRET: &str = "sandbox secret: with spaces & symbols/+";
const REDIRECT: &str = "http://127.0.0.1:9/oauth/xero/callback";

fn config() -> SandboxConfig {
    SandboxConfig::new(CLIENT_ID, SECRET)
        .invoices(30)
        .as_of(time::macros::date!(2026 - 01 - 31))
}

fn oauth(sandbox: &Sandbox, secret: &str) -> OAuthClient {
    let cfg = OAuthConfig::new(CLIENT_ID, secret, REDIRECT.parse().unwrap())
        .with_endpoints(sandbox.endpoints().unwrap());
    OAuthClient::new(cfg).unwrap()
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn query(url: &str) -> HashMap<String, String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Follows the consent URL (auto-approve) and returns the callback's query.
async fn consent(url: &reqwest::Url) -> HashMap<String, String> {
    let r = no_redirects().get(url.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(REDIRECT), "{location}");
    query(&location)
}

#[tokio::test]
async fn consent_with_pkce_then_connections_and_api() {
    let sandbox = Sandbox::start(config().auto_approve(true)).await.unwrap();
    let client = oauth(&sandbox, SECRET);
    let auth = client.authorize_url();
    let q = consent(&auth.url).await;
    assert_eq!(q["state"], auth.state);
    let (tokens, connections) = client
        .complete_consent(&q["code"], &auth.pkce_verifier)
        .await
        .unwrap();
    assert_eq!(tokens.tenant_ids, sandbox.tenant_ids());
    assert_eq!(connections.len(), 1);
    assert_eq!(connections[0].tenant_type, "ORGANISATION");
    assert_eq!(
        connections[0].tenant_name.as_deref(),
        Some("Demo Company (NZ)")
    );
    assert!(connections[0].created_date_utc.is_some());
    assert!(tokens.scopes.iter().any(|s| s == "offline_access"));
    let left = tokens.expires_at - time::OffsetDateTime::now_utc();
    assert!(left > time::Duration::minutes(29) && left <= time::Duration::minutes(30));

    // The access token reads the organisation.
    let api = XeroClient::builder(
        tokens.tenant_ids[0].clone(),
        Arc::new(xero::StaticToken(tokens.access_token.clone())),
    )
    .api_base(sandbox.api_base())
    .build()
    .unwrap();
    let org = api.organisation().await.unwrap();
    assert_eq!(org.id(), Some(tokens.tenant_ids[0].as_str()));

    // A code works once.
    let again = client
        .exchange_code(&q["code"], &auth.pkce_verifier)
        .await
        .unwrap_err();
    assert!(
        matches!(again, OAuthError::InvalidGrant { .. }),
        "{again:?}"
    );
}

#[tokio::test]
async fn code_exchange_failures() {
    let sandbox = Sandbox::start(config().auto_approve(true)).await.unwrap();
    let client = oauth(&sandbox, SECRET);

    // Wrong verifier.
    let auth = client.authorize_url();
    let q = consent(&auth.url).await;
    let other = client.authorize_url().pkce_verifier;
    let e = client.exchange_code(&q["code"], &other).await.unwrap_err();
    assert!(matches!(e, OAuthError::InvalidGrant { .. }), "{e:?}");
    // ...and the code is spent even with the right verifier afterwards.
    let e = client
        .exchange_code(&q["code"], &auth.pkce_verifier)
        .await
        .unwrap_err();
    assert!(matches!(e, OAuthError::InvalidGrant { .. }), "{e:?}");

    // Wrong client secret: invalid_client (401), the code untouched.
    let auth = client.authorize_url();
    let q = consent(&auth.url).await;
    let e = oauth(&sandbox, "not the secret")
        .exchange_code(&q["code"], &auth.pkce_verifier)
        .await
        .unwrap_err();
    match &e {
        OAuthError::Rejected { error, .. } => assert_eq!(error, "invalid_client"),
        other => panic!("expected invalid_client, got {other:?}"),
    }
    client
        .exchange_code(&q["code"], &auth.pkce_verifier)
        .await
        .unwrap();

    // Unknown code; a different redirect URI.
    let e = client
        .exchange_code("not-a-code", &auth.pkce_verifier)
        .await
        .unwrap_err();
    assert!(matches!(e, OAuthError::InvalidGrant { .. }));
    let auth = client.authorize_url();
    let q = consent(&auth.url).await;
    let cfg = OAuthConfig::new(
        CLIENT_ID,
        SECRET,
        "http://127.0.0.1:9/elsewhere".parse().unwrap(),
    )
    .with_endpoints(sandbox.endpoints().unwrap());
    let e = OAuthClient::new(cfg)
        .unwrap()
        .exchange_code(&q["code"], &auth.pkce_verifier)
        .await
        .unwrap_err();
    assert!(matches!(e, OAuthError::InvalidGrant { .. }));

    // Raw token endpoint: OAuth JSON errors.
    let http = no_redirects();
    let token_url = format!("{}/connect/token", sandbox.base_url());
    let r = http
        .post(&token_url)
        .form(&[("grant_type", "password")])
        .basic_auth(CLIENT_ID, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"error": "invalid_client"}));
    let r = http
        .post(&token_url)
        .form(&[
            ("grant_type", "password"),
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );
}

#[tokio::test]
async fn refresh_rotation_grace_and_revocation() {
    let mut cfg = config().auto_approve(true);
    cfg.refresh_grace = Duration::from_millis(1500);
    let sandbox = Sandbox::start(cfg).await.unwrap();
    let client = oauth(&sandbox, SECRET);
    let auth = client.authorize_url();
    let q = consent(&auth.url).await;
    let (t1, _) = client
        .complete_consent(&q["code"], &auth.pkce_verifier)
        .await
        .unwrap();

    // Rotation: a new refresh token every time; organisations carried over.
    let t2 = client.refresh(&t1).await.unwrap();
    assert_ne!(t2.refresh_token, t1.refresh_token);
    assert_ne!(t2.access_token, t1.access_token);
    assert_eq!(t2.tenant_ids, t1.tenant_ids);
    // A lost response: retrying with the previous token inside the grace
    // period gives a fresh set...
    let t3 = client.refresh(&t1).await.unwrap();
    assert_ne!(t3.refresh_token, t2.refresh_token);
    // ...which replaces the set nobody received.
    let e = client.refresh(&t2).await.unwrap_err();
    assert!(e.needs_reconsent(), "{e:?}");
    // Access tokens issued before stay valid until they expire.
    assert_eq!(client.connections(&t1.access_token).await.unwrap().len(), 1);

    // After the grace period the previous token is dead.
    let t4 = client.refresh(&t3).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let e = client.refresh(&t3).await.unwrap_err();
    assert!(matches!(e, OAuthError::InvalidGrant { .. }), "{e:?}");
    let t5 = client.refresh(&t4).await.unwrap();

    // Unknown refresh token.
    let mut fake = t5.clone();
    fake.refresh_token = SecretString::new("made-up");
    assert!(matches!(
        client.refresh(&fake).await.unwrap_err(),
        OAuthError::InvalidGrant { .. }
    ));

    // Revocation ends the consent: refresh and API access die.
    client.revoke(&t5.refresh_token).await.unwrap();
    assert!(matches!(
        client.connections(&t5.access_token).await.unwrap_err(),
        OAuthError::Unauthorized
    ));
    assert!(matches!(
        client.refresh(&t5).await.unwrap_err(),
        OAuthError::InvalidGrant { .. }
    ));
    // Revoking needs the client's credentials.
    let e = oauth(&sandbox, "wrong")
        .revoke(&t5.refresh_token)
        .await
        .unwrap_err();
    assert!(
        matches!(e, OAuthError::Rejected { ref error, .. } if error == "invalid_client"),
        "{e:?}"
    );
}

#[tokio::test]
async fn approve_page_allow_and_deny() {
    let sandbox = Sandbox::start(config().organisations(2)).await.unwrap();
    let client = oauth(&sandbox, SECRET);
    let http = no_redirects();
    let tenants = sandbox.tenant_ids();

    let auth = client.authorize_url();
    let page = http.get(auth.url.clone()).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Allow access"));
    assert!(html.contains(&tenants[1]));
    let nonce = html
        .split("name=\"nonce\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    // Approve only the second organisation.
    let r = http
        .post(format!("{}/identity/connect/authorize", sandbox.base_url()))
        .form(&[
            ("nonce", nonce.as_str()),
            ("tenant", tenants[1].as_str()),
            ("action", "allow"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let q = query(r.headers()["location"].to_str().unwrap());
    assert_eq!(q["state"], auth.state);
    let (tokens, connections) = client
        .complete_consent(&q["code"], &auth.pkce_verifier)
        .await
        .unwrap();
    assert_eq!(tokens.tenant_ids, vec![tenants[1].clone()]);
    assert_eq!(connections.len(), 1);
    // The same page cannot be answered twice.
    let r = http
        .post(format!("{}/identity/connect/authorize", sandbox.base_url()))
        .form(&[
            ("nonce", nonce.as_str()),
            ("tenant", tenants[1].as_str()),
            ("action", "allow"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // The first organisation was not granted: 403.
    let api = |tenant: &str| {
        XeroClient::builder(
            tenant,
            Arc::new(xero::StaticToken(tokens.access_token.clone())),
        )
        .api_base(sandbox.api_base())
        .build()
        .unwrap()
    };
    api(&tenants[1]).organisation().await.unwrap();
    match api(&tenants[0]).organisation().await.unwrap_err() {
        xero::ClientError::Api { status, .. } => assert_eq!(status, 403),
        other => panic!("expected 403, got {other:?}"),
    }

    // Cancel: access_denied back to the app.
    let auth = client.authorize_url();
    let html = http
        .get(auth.url.clone())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let nonce = html
        .split("name=\"nonce\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let r = http
        .post(format!("{}/identity/connect/authorize", sandbox.base_url()))
        .form(&[("nonce", nonce.as_str()), ("action", "deny")])
        .send()
        .await
        .unwrap();
    let q = query(r.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], auth.state);

    // A bad client id never redirects.
    let mut bad = auth.url.clone();
    let pairs: Vec<(String, String)> = bad
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "client_id" {
                "nope".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    bad.query_pairs_mut().clear().extend_pairs(pairs);
    let r = http.get(bad).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn expired_access_token_is_refreshed_by_the_client() {
    let mut cfg = config().auto_approve(true);
    cfg.access_token_ttl = Duration::from_secs(1);
    let sandbox = Sandbox::start(cfg).await.unwrap();
    let client = oauth(&sandbox, SECRET);
    let auth = client.authorize_url();
    let q = consent(&auth.url).await;
    let (tokens, _) = client
        .complete_consent(&q["code"], &auth.pkce_verifier)
        .await
        .unwrap();
    let tenant = tokens.tenant_ids[0].clone();
    let first_refresh = tokens.refresh_token.clone();
    let provider = Arc::new(RefreshingTokenProvider::new(
        client,
        tokens,
        None,
        Duration::ZERO,
    ));
    let api = XeroClient::builder(tenant, provider.clone())
        .api_base(sandbox.api_base())
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The API says 401 (expired); the client refreshes once and goes on.
    let contacts = api
        .fetch_all(ListRequest::new(Resource::Contacts))
        .await
        .unwrap();
    assert!(!contacts.is_empty());
    assert_ne!(provider.current().await.refresh_token, first_refresh);
}
