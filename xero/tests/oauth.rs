//! OAuth against a mock identity server on one base URL.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use wiremock::matchers::{basic_auth, bearer_token, body_string_contains, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};
use xero::limits::{LimitConfig, RateLimits, VirtualClock};
use xero::oauth::OFFLINE_ACCESS;
use xero::{
    ListRequest, OAuthClient, OAuthConfig, OAuthError, RefreshingTokenProvider, Resource, Scopes,
    SecretString, TokenError, TokenProvider, TokenSet, TokenVault, VaultError, XeroClient,
    XeroEndpoints,
};

const CLIENT_ID: &str = "ABCDEF0123456789";
const CLIENT_SECRET: &str = "client-secret-do-not-print";
const ORG: &str = "fe79f7dd-b6d4-4a92-ba7b-538af6289c58";

fn config(server: &MockServer, scopes: Scopes) -> OAuthConfig {
    OAuthConfig::new(
        CLIENT_ID,
        CLIENT_SECRET,
        "https://app.example/oauth/xero/callback".parse().unwrap(),
    )
    .with_scopes(scopes)
    .with_endpoints(XeroEndpoints::from_base(&server.uri()).unwrap())
}

async fn client(server: &MockServer) -> OAuthClient {
    OAuthClient::new(config(server, Scopes::default())).unwrap()
}

fn token_response(access: &str, refresh: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id_token": "eyJ.id.token",
        "access_token": access,
        "expires_in": 1800,
        "token_type": "Bearer",
        "refresh_token": refresh,
        "scope": "accounting.invoices.read offline_access"
    }))
}

fn form(r: &Request) -> HashMap<String, String> {
    let body = String::from_utf8(r.body.clone()).unwrap();
    reqwest::Url::parse(&format!("http://form.invalid/?{body}"))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn sample_tokens(access: &str, refresh: &str) -> TokenSet {
    TokenSet {
        access_token: SecretString::new(access),
        refresh_token: SecretString::new(refresh),
        expires_at: OffsetDateTime::now_utc() + time::Duration::minutes(30),
        scopes: vec!["offline_access".into()],
        tenant_ids: vec![ORG.into()],
    }
}

#[tokio::test]
async fn authorize_url_has_pkce_s256_state_and_offline_access() {
    let server = MockServer::start().await;
    let c = client(&server).await;
    let a = c.authorize_url();
    assert!(a
        .url
        .as_str()
        .starts_with(&format!("{}/identity/connect/authorize?", server.uri())));
    let q: HashMap<String, String> = a.url.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], "https://app.example/oauth/xero/callback");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["state"], a.state);
    assert!(a.state.len() >= 16);
    let scopes: Vec<&str> = q["scope"].split(' ').collect();
    assert!(scopes.contains(&OFFLINE_ACCESS));
    assert!(scopes.contains(&"accounting.invoices.read"));
    // The challenge is the S256 of the verifier we keep.
    let expected =
        URL_SAFE_NO_PAD.encode(Sha256::digest(a.pkce_verifier.expose_secret().as_bytes()));
    assert_eq!(q["code_challenge"], expected);
    // Fresh state and verifier each time; the verifier never prints.
    let b = c.authorize_url();
    assert_ne!(a.state, b.state);
    assert_ne!(a.pkce_verifier, b.pkce_verifier);
    assert!(!format!("{a:?}").contains(a.pkce_verifier.expose_secret()));
    assert!(!a.url.as_str().contains(a.pkce_verifier.expose_secret()));
}

#[tokio::test]
async fn legacy_scopes_are_selectable() {
    let server = MockServer::start().await;
    let c = OAuthClient::new(config(&server, Scopes::legacy())).unwrap();
    let a = c.authorize_url();
    let q: HashMap<String, String> = a.url.query_pairs().into_owned().collect();
    let scopes: Vec<&str> = q["scope"].split(' ').collect();
    assert!(scopes.contains(&"accounting.transactions.read"));
    assert!(scopes.contains(&OFFLINE_ACCESS));
    assert!(!scopes.contains(&"accounting.invoices.read"));
}

#[tokio::test]
async fn code_exchange_sends_verifier_and_basic_auth() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/connect/token"))
        .and(basic_auth(CLIENT_ID, CLIENT_SECRET))
        .and(body_string_contains("grant_type=authorization_code"))
        .respond_with(token_response("access-1", "refresh-1"))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server).await;
    let a = c.authorize_url();
    let before = OffsetDateTime::now_utc();
    let tokens = c.exchange_code("the-code", &a.pkce_verifier).await.unwrap();
    assert_eq!(tokens.access_token.expose_secret(), "access-1");
    assert_eq!(tokens.refresh_token.expose_secret(), "refresh-1");
    assert_eq!(
        tokens.scopes,
        ["accounting.invoices.read", "offline_access"]
    );
    assert!(tokens.tenant_ids.is_empty());
    let lifetime = tokens.expires_at - before;
    assert!(lifetime > time::Duration::minutes(29) && lifetime <= time::Duration::minutes(31));

    let reqs = server.received_requests().await.unwrap();
    let f = form(&reqs[0]);
    assert_eq!(f["code"], "the-code");
    assert_eq!(f["code_verifier"], a.pkce_verifier.expose_secret());
    assert_eq!(f["redirect_uri"], "https://app.example/oauth/xero/callback");
    // Client credentials travel in the header, not the body.
    assert!(!f.contains_key("client_secret"));
}

#[tokio::test]
async fn consent_reads_connections_into_the_token_set() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/connect/token"))
        .respond_with(token_response("access-1", "refresh-1"))
        .mount(&server)
        .await;
    // The example of xero-identity.yaml, plus a practice.
    Mock::given(method("GET"))
        .and(path("/connections"))
        .and(bearer_token("access-1"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"[ { "id": "7cb59f93-2964-421d-bb5e-a0f7a4572a44", "tenantId": "fe79f7dd-b6d4-4a92-ba7b-538af6289c58", "tenantName": "Demo Company (NZ)", "tenantType": "ORGANISATION", "createdDateUtc": "2019-12-07T18:46:19.5165400", "updatedDateUtc": "2019-12-07T18:46:19.5187840" },
                { "id": "c3d9ad3f-0000-0000-0000-000000000000", "authEventId": "d99ecdfe-0000-0000-0000-000000000000", "tenantId": "0a1b2c3d-0000-0000-0000-000000000000", "tenantType": "PRACTICE", "tenantName": null, "createdDateUtc": "2020-01-01T00:00:00", "updatedDateUtc": null } ]"#,
        ))
        .mount(&server)
        .await;
    let c = client(&server).await;
    let a = c.authorize_url();
    let (tokens, connections) = c.complete_consent("code", &a.pkce_verifier).await.unwrap();
    assert_eq!(connections.len(), 2);
    let demo = &connections[0];
    assert_eq!(demo.id, "7cb59f93-2964-421d-bb5e-a0f7a4572a44");
    assert_eq!(demo.tenant_id, ORG);
    assert_eq!(demo.tenant_type, "ORGANISATION");
    assert_eq!(demo.tenant_name.as_deref(), Some("Demo Company (NZ)"));
    assert_eq!(
        demo.created_date_utc,
        Some(time::macros::datetime!(2019-12-07 18:46:19.51654 UTC))
    );
    assert_eq!(connections[1].tenant_type, "PRACTICE");
    assert_eq!(connections[1].tenant_name, None);
    assert_eq!(connections[1].updated_date_utc, None);
    assert_eq!(
        tokens.tenant_ids,
        [ORG, "0a1b2c3d-0000-0000-0000-000000000000"]
    );
}

#[tokio::test]
async fn connections_with_a_bad_token_is_unauthorized() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/connections"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let err = client(&server)
        .await
        .connections(&SecretString::new("nope"))
        .await
        .unwrap_err();
    assert!(matches!(err, OAuthError::Unauthorized));
}

#[tokio::test]
async fn a_long_access_token_echoed_in_an_error_body_never_shows() {
    let server = MockServer::start().await;
    // A JWT-shaped access token, far longer than the 300-character excerpt.
    let claims = format!(
        r#"{{"iss":"https://identity.xero.com","client_id":"{CLIENT_ID}","scope":["{}"],"pad":"{}"}}"#,
        OFFLINE_ACCESS,
        "0123456789abcdef".repeat(16)
    );
    let jwt = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims),
        URL_SAFE_NO_PAD.encode((0u8..=255).collect::<Vec<u8>>())
    );
    Mock::given(method("GET"))
        .and(path("/connections"))
        .respond_with(
            ResponseTemplate::new(502).set_body_string(format!("gateway refused token {jwt}")),
        )
        .mount(&server)
        .await;
    let err = client(&server)
        .await
        .connections(&SecretString::new(jwt.clone()))
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        matches!(err, OAuthError::Http { status: 502, .. }),
        "not an HTTP error"
    );
    assert!(
        shown.contains("gateway refused token [REDACTED]"),
        "token not redacted in place"
    );
    for part in jwt.split('.') {
        let start: String = part.chars().take(12).collect();
        assert!(!shown.contains(&start), "a piece of the token shows");
    }
}

#[tokio::test]
async fn refresh_uses_basic_auth_and_rotates() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/connect/token"))
        .respond_with(token_response("access-2", "refresh-2"))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server).await;
    let old = sample_tokens("access-1", "refresh-1");
    let fresh = c.refresh(&old).await.unwrap();
    assert_eq!(fresh.access_token.expose_secret(), "access-2");
    assert_eq!(fresh.refresh_token.expose_secret(), "refresh-2");
    assert_eq!(fresh.tenant_ids, old.tenant_ids);

    let reqs = server.received_requests().await.unwrap();
    let r = &reqs[0];
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    assert_eq!(r.headers.get("authorization").unwrap(), expected.as_str());
    let f = form(r);
    assert_eq!(f["grant_type"], "refresh_token");
    assert_eq!(f["refresh_token"], "refresh-1");
    assert!(!f.contains_key("client_secret"));
}

#[tokio::test]
async fn refresh_with_absurd_expires_in_keeps_the_rotated_token() {
    let server = MockServer::start().await;
    // 10^12 seconds overflows the calendar (past year 9999): once a panic,
    // after Xero had already rotated the refresh token.
    Mock::given(method("POST"))
        .and(path("/connect/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "access-2",
            "expires_in": 1_000_000_000_000_u64,
            "token_type": "Bearer",
            "refresh_token": "refresh-2"
        })))
        .mount(&server)
        .await;
    let before = OffsetDateTime::now_utc();
    let fresh = client(&server)
        .await
        .refresh(&sample_tokens("access-1", "refresh-1"))
        .await
        .unwrap();
    assert_eq!(fresh.refresh_token.expose_secret(), "refresh-2");
    let lifetime = fresh.expires_at - before;
    assert!(lifetime >= time::Duration::hours(24), "{lifetime}");
    assert!(
        lifetime < time::Duration::hours(24) + time::Duration::minutes(1),
        "{lifetime}"
    );
}

#[tokio::test]
async fn invalid_grant_is_its_own_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/connect/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})))
        .mount(&server)
        .await;
    let c = client(&server).await;
    let err = c
        .refresh(&sample_tokens("a", "rotated-away"))
        .await
        .unwrap_err();
    assert!(matches!(err, OAuthError::InvalidGrant { .. }), "{err:?}");
    assert!(err.needs_reconsent());
    assert!(!format!("{err} {err:?}").contains("rotated-away"));
    let as_token_error: TokenError = err.into();
    assert!(matches!(as_token_error, TokenError::ReconsentRequired));
}

#[tokio::test]
async fn other_oauth_errors_are_not_reconsent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/connect/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"error": "invalid_client", "error_description": "bad credentials"}),
        ))
        .mount(&server)
        .await;
    let err = client(&server)
        .await
        .refresh(&sample_tokens("a", "r"))
        .await
        .unwrap_err();
    match &err {
        OAuthError::Rejected { error, description } => {
            assert_eq!(error, "invalid_client");
            assert_eq!(description.as_deref(), Some("bad credentials"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!err.needs_reconsent());
}

#[tokio::test]
async fn garbage_token_responses_do_not_leak_their_body() {
    let server = MockServer::start().await;
    // A broken response that happens to contain token material.
    Mock::given(method("POST"))
        .and(path("/connect/token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"access_token": 12345, "refresh_token": "leaky-refresh-token"}),
            ),
        )
        .mount(&server)
        .await;
    let err = client(&server)
        .await
        .refresh(&sample_tokens("a", "r"))
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, OAuthError::UnexpectedResponse(_)), "{shown}");
    assert!(!shown.contains("leaky-refresh-token"), "{shown}");
    assert!(!shown.contains(CLIENT_SECRET), "{shown}");
}

#[tokio::test]
async fn no_refresh_token_is_an_error_on_exchange() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/connect/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "a", "expires_in": 1800, "token_type": "Bearer"}),
        ))
        .mount(&server)
        .await;
    let c = client(&server).await;
    let err = c
        .exchange_code("c", &SecretString::new("v"))
        .await
        .unwrap_err();
    assert!(matches!(err, OAuthError::MissingRefreshToken));
}

#[tokio::test]
async fn revocation_posts_the_refresh_token_with_basic_auth() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/connect/revocation"))
        .and(basic_auth(CLIENT_ID, CLIENT_SECRET))
        .and(body_string_contains("token=refresh-1"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .await
        .revoke(&SecretString::new("refresh-1"))
        .await
        .unwrap();

    // A failure quoting the token does not repeat it.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/connect/revocation"))
        .respond_with(ResponseTemplate::new(500).set_body_string("cannot revoke refresh-1"))
        .mount(&server)
        .await;
    let err = client(&server)
        .await
        .revoke(&SecretString::new("refresh-1"))
        .await
        .unwrap_err();
    assert!(matches!(err, OAuthError::Http { status: 500, .. }));
    assert!(!format!("{err}").contains("refresh-1"), "{err}");
}

#[tokio::test]
async fn disconnect_deletes_the_connection() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/connections/7cb59f93-2964-421d-bb5e-a0f7a4572a44"))
        .and(bearer_token("access-1"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .await
        .disconnect(
            &SecretString::new("access-1"),
            "7cb59f93-2964-421d-bb5e-a0f7a4572a44",
        )
        .await
        .unwrap();
}

/// Holds every version stored, in order (the first is the initial set), with
/// a one-holder lease.
struct MemoryVault {
    stored: Mutex<Vec<TokenSet>>,
    lease: tokio::sync::Semaphore,
}

impl MemoryVault {
    fn new(initial: TokenSet) -> Self {
        MemoryVault {
            stored: Mutex::new(vec![initial]),
            lease: tokio::sync::Semaphore::new(1),
        }
    }
}

#[async_trait]
impl TokenVault for MemoryVault {
    async fn load(&self) -> Result<TokenSet, VaultError> {
        Ok(self.stored.lock().unwrap().last().cloned().unwrap())
    }
    async fn store(&self, tokens: &TokenSet) -> Result<(), VaultError> {
        self.stored.lock().unwrap().push(tokens.clone());
        Ok(())
    }
    async fn lock(&self) -> Result<bool, VaultError> {
        self.lease.acquire().await.unwrap().forget();
        Ok(true)
    }
    async fn unlock(&self) {
        self.lease.add_permits(1);
    }
}

#[tokio::test]
async fn refreshing_provider_refreshes_once_for_concurrent_401s_and_stores_first() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/connect/token"))
        .and(body_string_contains("refresh_token=refresh-1"))
        .respond_with(token_response("access-2", "refresh-2").set_delay(Duration::from_millis(50)))
        .expect(1)
        .mount(&server)
        .await;
    let vault = Arc::new(MemoryVault::new(sample_tokens("access-1", "refresh-1")));
    let provider = Arc::new(RefreshingTokenProvider::new(
        client(&server).await,
        sample_tokens("access-1", "refresh-1"),
        Some(vault.clone()),
        Duration::from_secs(300),
    ));
    let rejected = provider.access_token().await.unwrap();
    assert_eq!(rejected.expose_secret(), "access-1");
    let (a, b) = tokio::join!(provider.refresh(&rejected), provider.refresh(&rejected));
    assert_eq!(a.unwrap().expose_secret(), "access-2");
    assert_eq!(b.unwrap().expose_secret(), "access-2");
    let stored = vault.stored.lock().unwrap().clone();
    assert_eq!(stored.len(), 2, "one refresh written back");
    assert_eq!(stored[1].refresh_token.expose_secret(), "refresh-2");
    assert_eq!(stored[1].tenant_ids, [ORG]);
    assert_eq!(
        provider.current().await.refresh_token.expose_secret(),
        "refresh-2"
    );
}

#[tokio::test]
async fn refreshing_provider_refreshes_ahead_of_expiry() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/connect/token"))
        .respond_with(token_response("access-2", "refresh-2"))
        .expect(1)
        .mount(&server)
        .await;
    let mut tokens = sample_tokens("access-1", "refresh-1");
    tokens.expires_at = OffsetDateTime::now_utc() + time::Duration::minutes(2);
    let provider = RefreshingTokenProvider::new(
        client(&server).await,
        tokens,
        None,
        Duration::from_secs(300),
    );
    assert_eq!(
        provider.access_token().await.unwrap().expose_secret(),
        "access-2"
    );
    // Now fresh for 30 minutes: no second refresh.
    assert_eq!(
        provider.access_token().await.unwrap().expose_secret(),
        "access-2"
    );
}

#[tokio::test]
async fn api_401_refreshes_through_the_token_endpoint_end_to_end() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/connect/token"))
        .and(basic_auth(CLIENT_ID, CLIENT_SECRET))
        .respond_with(token_response("access-2", "refresh-2"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Accounts"))
        .and(bearer_token("access-1"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Accounts"))
        .and(bearer_token("access-2"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"Accounts": [{"AccountID": "x"}]})),
        )
        .mount(&server)
        .await;
    let oauth = client(&server).await;
    let endpoints = oauth.config().endpoints.clone();
    let vault = Arc::new(MemoryVault::new(sample_tokens("access-1", "refresh-1")));
    let provider = Arc::new(RefreshingTokenProvider::new(
        oauth,
        sample_tokens("access-1", "refresh-1"),
        Some(vault.clone()),
        Duration::from_secs(60),
    ));
    let api = XeroClient::builder(ORG, provider)
        .api_base(endpoints.api_base.as_str())
        .limits(RateLimits::with_clock(
            LimitConfig::default(),
            VirtualClock::new(),
        ))
        .build()
        .unwrap();
    let records = api
        .fetch_all(ListRequest::new(Resource::Accounts))
        .await
        .unwrap();
    assert_eq!(records[0].id(), Some("x"));
    assert_eq!(vault.stored.lock().unwrap().len(), 2);
}
