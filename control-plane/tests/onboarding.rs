//! Consent-driven onboarding end to end over real HTTP on free ports: the Xero
//! sandbox and the control plane's service, a real HTTP client following the
//! consent redirects, then the tenant provisioned by the background workers
//! and its secret holding the sandbox's token set.

mod support;

use std::sync::Arc;
use std::time::Duration;

use cloud::naming::TenantId;
use cloud::ports::Credential;
use control_plane::server::{self, ServeConfig};
use xero::oauth::{OAuthClient, OAuthConfig};
use xero::secret::SecretString;
use xero::webhook::WebhookKey;
use xero_sandbox::{Sandbox, SandboxConfig};

const OPERATOR_TOKEN: &str = "operator-token-for-tests-0123456789";
const WEBHOOK_KEY: &str = "webhook-signing-key-for-tests";

struct Harness {
    _dir: tempfile::TempDir,
    sandbox: Sandbox,
    platform: control_plane::platform::Platform,
    state: Arc<server::AppState>,
    base: String,
    http: reqwest::Client,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("tmp");
    let sandbox = Sandbox::start(
        SandboxConfig::new("ll-client", "ll-client-secret")
            .auto_approve(true)
            .invoices(20)
            .seed(11),
    )
    .await
    .expect("sandbox");
    let platform = support::platform(dir.path()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let redirect = format!("{base}/oauth/xero/callback")
        .parse()
        .expect("redirect uri");
    let oauth = OAuthClient::new(
        OAuthConfig::new("ll-client", "ll-client-secret", redirect)
            .with_endpoints(sandbox.endpoints().expect("endpoints")),
    )
    .expect("oauth client");
    let config = ServeConfig {
        oauth: Some(oauth),
        webhook_key: Some(WebhookKey::new(WEBHOOK_KEY)),
        operator_token: Some(SecretString::new(OPERATOR_TOKEN)),
        workers: 2,
        resync_interval: Duration::from_millis(500),
        query: Some(Default::default()),
        ..ServeConfig::closed(listener.local_addr().expect("addr"), base.clone())
    };
    let (state, _workers) = server::start(
        platform.cloud.clone(),
        platform.store.clone(),
        support::reconciler(&platform),
        config,
    );
    let app = server::router(state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Harness {
        _dir: dir,
        sandbox,
        platform,
        state,
        base,
        http: reqwest::Client::new(),
    }
}

/// A connect link for `tenant`, minted through the operator API.
async fn mint(h: &Harness, tenant: &str) -> String {
    mint_with(h, tenant, serde_json::json!({})).await
}

async fn mint_with(h: &Harness, tenant: &str, body: serde_json::Value) -> String {
    let resp = h
        .http
        .post(format!("{}/v1/tenants/{tenant}/connect-link", h.base))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("mint");
    assert_eq!(resp.status(), 201);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert!(body["expires_at"].is_string(), "{body}");
    body["url"].as_str().expect("url").to_owned()
}

/// The link token of a connect link URL.
fn token_of(url: &str) -> &str {
    url.split_once("link=").map(|(_, t)| t).expect("link=")
}

async fn wait_for_phase(h: &Harness, id: &str, phase: &str) -> serde_json::Value {
    for _ in 0..200 {
        let resp = h
            .http
            .get(format!("{}/v1/tenants/{id}", h.base))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await
            .expect("get tenant");
        if resp.status() == 200 {
            let body: serde_json::Value = resp.json().await.expect("json");
            if body["phase"] == phase {
                return body;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("tenant {id} never reached {phase}");
}

#[tokio::test]
async fn consent_provisions_the_tenant_and_stores_the_token_set_in_its_secret() {
    let h = harness().await;
    let link = mint(&h, "acme").await;
    let resp = h
        .http
        .get(&link)
        .header("accept", "application/json")
        .send()
        .await
        .expect("consent flow");
    // The client followed /connect/xero -> Xero's authorize -> our callback.
    assert_eq!(resp.url().path(), "/oauth/xero/callback");
    let callback_url = resp.url().clone();
    assert_eq!(resp.status(), 202);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["tenant"], "acme");
    assert!(body["status_url"]
        .as_str()
        .unwrap_or("")
        .ends_with("/onboarding/acme/status"));

    let shown = wait_for_phase(&h, "acme", "Ready").await;
    let kinds: Vec<&str> = shown["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    for kind in ["bucket", "dataset", "service_account", "secret"] {
        assert!(kinds.contains(&kind), "{kind}: {shown}");
    }
    let id = TenantId::parse("acme").expect("id");
    let (_, tokens) =
        control_plane::tokens::read_token_set(&h.platform.cloud, &Credential::Platform, &id)
            .await
            .expect("token set");
    assert_eq!(tokens.tenant_ids, h.sandbox.tenant_ids());
    assert!(!tokens.refresh_token.expose_secret().is_empty());
    assert_eq!(
        h.platform.store.connections_of(&id).await.expect("orgs"),
        h.sandbox.tenant_ids()
    );

    // The state is single use: replaying the callback is refused and stores nothing.
    let replay = h.http.get(callback_url).send().await.expect("replay");
    assert_eq!(replay.status(), 400);
    let err: serde_json::Value = replay.json().await.expect("json");
    assert_eq!(err["code"], "invalid_state");
    let (version, _) =
        control_plane::tokens::read_token_set(&h.platform.cloud, &Credential::Platform, &id)
            .await
            .expect("tokens");
    assert_eq!(version, 1, "a replay writes no new token version");

    // The link is used up: opening it again starts nothing.
    let again = h.http.get(&link).send().await.expect("again");
    assert_eq!(again.status(), 400);
    let err: serde_json::Value = again.json().await.expect("json");
    assert_eq!(err["code"], "invalid_connect_link");

    // The onboarding page's status endpoint shows the link's holder the phase
    // and whether Xero must be connected again, nothing more; without the
    // link nobody learns whether the tenant exists.
    let anonymous = h
        .http
        .get(format!("{}/onboarding/acme/status", h.base))
        .send()
        .await
        .expect("status");
    assert_eq!(anonymous.status(), 404);
    let status: serde_json::Value = h
        .http
        .get(format!(
            "{}/onboarding/acme/status?link={}",
            h.base,
            token_of(&link)
        ))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(
        status,
        serde_json::json!({"id": "acme", "phase": "Ready", "needs_consent": false})
    );
}

#[tokio::test]
async fn the_html_flow_answers_with_a_page_pointing_at_the_status() {
    let h = harness().await;
    let link = mint(&h, "pageco").await;
    let resp = h.http.get(&link).send().await.expect("flow");
    assert_eq!(resp.status(), 202);
    let page = resp.text().await.expect("html");
    assert!(page.contains("Xero connected"), "{page}");
    assert!(page.contains("/onboarding/pageco/status"), "{page}");
    wait_for_phase(&h, "pageco", "Ready").await;
}

#[tokio::test]
async fn unknown_expired_and_missing_states_get_400_and_store_nothing() {
    let h = harness().await;
    let unknown = h
        .http
        .get(format!(
            "{}/oauth/xero/callback?code=abc&state=never-issued",
            h.base
        ))
        .send()
        .await
        .expect("callback");
    assert_eq!(unknown.status(), 400);
    let body: serde_json::Value = unknown.json().await.expect("json");
    assert_eq!(body["code"], "invalid_state");

    let id = TenantId::parse("late").expect("id");
    h.platform
        .store
        .put_oauth_state("expired-state", &id, "verifier", Duration::ZERO, None)
        .await
        .expect("state");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let expired = h
        .http
        .get(format!(
            "{}/oauth/xero/callback?code=abc&state=expired-state",
            h.base
        ))
        .send()
        .await
        .expect("callback");
    assert_eq!(expired.status(), 400);

    let missing = h
        .http
        .get(format!("{}/oauth/xero/callback?code=abc", h.base))
        .send()
        .await
        .expect("callback");
    assert_eq!(missing.status(), 400);
    assert!(h
        .platform
        .store
        .list_tenants()
        .await
        .expect("list")
        .is_empty());
    assert!(h
        .platform
        .cloud
        .secrets
        .list_secrets(&Default::default())
        .await
        .expect("secrets")
        .is_empty());
}

#[tokio::test]
async fn consent_starts_only_from_a_valid_connect_link() {
    let h = harness().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    // The old open form (any tenant id, no credential) is refused.
    for path in [
        "/connect/xero?tenant=goodco",
        "/connect/xero",
        "/connect/xero?link=",
    ] {
        let resp = no_redirects
            .get(format!("{}{path}", h.base))
            .send()
            .await
            .expect("connect");
        assert_eq!(resp.status(), 400, "{path}");
        let body: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(body["code"], "connect_link_required", "{path}");
    }
    // A forged link is refused.
    let resp = no_redirects
        .get(format!("{}/connect/xero?link=forged-link-value", h.base))
        .send()
        .await
        .expect("connect");
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "invalid_connect_link");
    // Minting needs the operator token and a valid id.
    let resp = h
        .http
        .post(format!("{}/v1/tenants/goodco/connect-link", h.base))
        .send()
        .await
        .expect("mint");
    assert_eq!(resp.status(), 401);
    let resp = h
        .http
        .post(format!("{}/v1/tenants/Bad_Id/connect-link", h.base))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .expect("mint");
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "invalid_tenant_id");
    let resp = h
        .http
        .post(format!("{}/v1/tenants/goodco/connect-link", h.base))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&serde_json::json!({"expires": "90d"}))
        .send()
        .await
        .expect("mint");
    assert_eq!(resp.status(), 400, "longer than 30 days");

    // A good link redirects to Xero's consent page with PKCE, and sets the
    // cookie that lets this browser follow the onboarding status.
    let link = mint(&h, "goodco").await;
    let resp = no_redirects.get(&link).send().await.expect("connect");
    assert!(resp.status().is_redirection());
    let location = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(location.starts_with(h.sandbox.base_url()), "{location}");
    assert!(
        location.contains("code_challenge_method=S256"),
        "{location}"
    );
    let cookie = resp.headers()["set-cookie"].to_str().expect("cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("Path=/onboarding"),
        "{cookie}"
    );

    // Opened again and again without finishing, one link starts a bounded
    // number of consents.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            no_redirects
                .get(&link)
                .send()
                .await
                .expect("connect")
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        statuses,
        [303, 303, 303, 303, 409, 409],
        "one consent was already pending"
    );

    // An expired link starts nothing.
    let short = mint_with(&h, "shortco", serde_json::json!({"expires": "1"})).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resp = no_redirects.get(&short).send().await.expect("connect");
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn a_connected_tenant_refuses_a_consent_for_another_organisation() {
    let h = harness().await;
    let id = TenantId::parse("victim").expect("id");
    // The victim is connected to an organisation of its own.
    h.platform.store.want_tenant(&id).await.expect("want");
    h.platform
        .store
        .record_connections(
            &id,
            &[("victims-own-org".to_owned(), Some("Victim Ltd".to_owned()))],
        )
        .await
        .expect("connections");
    // An attacker holding a link for the victim consents with another
    // organisation (the sandbox's): refused before any token set is written.
    let link = mint(&h, "victim").await;
    let resp = h
        .http
        .get(&link)
        .header("accept", "application/json")
        .send()
        .await
        .expect("consent");
    assert_eq!(resp.status(), 409);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "organisation_mismatch");
    assert!(
        control_plane::tokens::read_token_set(&h.platform.cloud, &Credential::Platform, &id)
            .await
            .is_err(),
        "no token set may be written"
    );
    assert_eq!(
        h.platform.store.connections_of(&id).await.expect("orgs"),
        vec!["victims-own-org".to_owned()]
    );

    // After an operator's explicit disconnect, a new consent may bring
    // another organisation.
    let resp = h
        .http
        .post(format!("{}/v1/tenants/victim/disconnect", h.base))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .expect("disconnect");
    assert_eq!(resp.status(), 204);
    let link = mint(&h, "victim").await;
    let resp = h
        .http
        .get(&link)
        .header("accept", "application/json")
        .send()
        .await
        .expect("consent");
    assert_eq!(resp.status(), 202);
    assert_eq!(
        h.platform.store.connections_of(&id).await.expect("orgs"),
        h.sandbox.tenant_ids()
    );
}

#[tokio::test]
async fn the_operator_api_needs_the_token_and_never_echoes_it() {
    let h = harness().await;
    h.platform
        .store
        .want_tenant(&TenantId::parse("opco").expect("id"))
        .await
        .expect("want");
    let none = h
        .http
        .get(format!("{}/v1/tenants/opco", h.base))
        .send()
        .await
        .expect("get");
    assert_eq!(none.status(), 401);
    let wrong = h
        .http
        .get(format!("{}/v1/tenants/opco", h.base))
        .bearer_auth("wrong-token-value")
        .send()
        .await
        .expect("get");
    assert_eq!(wrong.status(), 401);
    let text = wrong.text().await.expect("text");
    assert!(
        !text.contains("wrong-token-value") && !text.contains(OPERATOR_TOKEN),
        "{text}"
    );
    let body: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["code"], "unauthorized");
    let unknown = h
        .http
        .get(format!("{}/v1/tenants/nobody", h.base))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(unknown.status(), 404);
    let bad = h
        .http
        .get(format!("{}/v1/tenants/NO", h.base))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(bad.status(), 400);
    let ok = h
        .http
        .get(format!("{}/v1/tenants/opco", h.base))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(ok.status(), 200);
    let shown: serde_json::Value = ok.json().await.expect("json");
    assert_eq!(shown["id"], "opco");
}

#[tokio::test]
async fn webhooks_verify_signatures_answer_the_handshake_and_mark_tenants() {
    let h = harness().await;
    let key = WebhookKey::new(WEBHOOK_KEY);
    // Connect a tenant so its organisation is known.
    let link = mint(&h, "hooked").await;
    h.http.get(&link).send().await.expect("consent");
    let org = h.sandbox.tenant_ids()[0].clone();
    let post = |body: Vec<u8>, signature: Option<String>| {
        let mut req = h.http.post(format!("{}/webhooks/xero", h.base)).body(body);
        if let Some(sig) = signature {
            req = req.header("x-xero-signature", sig);
        }
        req.send()
    };
    // Intent to receive: a correctly and an incorrectly signed empty batch.
    let empty =
        br#"{"events":[],"firstEventSequence":0,"lastEventSequence":0,"entropy":"ABCDEFGHIJ"}"#
            .to_vec();
    let good = post(empty.clone(), Some(key.sign(&empty)))
        .await
        .expect("post");
    assert_eq!(good.status(), 200);
    assert!(good.bytes().await.expect("body").is_empty());
    let forged = post(
        empty.clone(),
        Some(WebhookKey::new("another-key").sign(&empty)),
    )
    .await
    .expect("post");
    assert_eq!(forged.status(), 401);
    let unsigned = post(empty.clone(), None).await.expect("post");
    assert_eq!(unsigned.status(), 401);

    let event = serde_json::json!({
        "events": [{
            "resourceUrl": "https://api.xero.com/api.xro/2.0/Invoices/0f4e3c3e-2f3b-4b5b-9b1e-6a3f8a6b7c8d",
            "resourceId": "0f4e3c3e-2f3b-4b5b-9b1e-6a3f8a6b7c8d",
            "eventDateUtc": "2026-11-20T10:00:00.000",
            "eventType": "UPDATE",
            "eventCategory": "INVOICE",
            "tenantId": org,
            "tenantType": "ORGANISATION"
        }],
        "firstEventSequence": 1,
        "lastEventSequence": 1,
        "entropy": "KLMNOPQRST"
    });
    let body = serde_json::to_vec(&event).expect("json");
    // A tampered body with the original signature is forged.
    let mut tampered = body.clone();
    tampered.push(b' ');
    assert_eq!(
        post(tampered, Some(key.sign(&body)))
            .await
            .expect("post")
            .status(),
        401
    );
    assert!(h
        .platform
        .store
        .tenants_with_sync_requested()
        .await
        .expect("marked")
        .is_empty());
    let ok = post(body.clone(), Some(key.sign(&body)))
        .await
        .expect("post");
    assert_eq!(ok.status(), 200);
    assert!(ok.bytes().await.expect("body").is_empty());
    let marked = h
        .platform
        .store
        .tenants_with_sync_requested()
        .await
        .expect("marked");
    assert_eq!(marked, vec![TenantId::parse("hooked").expect("id")]);
}

#[tokio::test]
async fn health_and_readiness() {
    let h = harness().await;
    assert_eq!(
        h.http
            .get(format!("{}/healthz", h.base))
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    assert_eq!(
        h.http
            .get(format!("{}/readyz", h.base))
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    // Shut the store: readiness reports it, liveness does not.
    h.state.store.close().await;
    assert_eq!(
        h.http
            .get(format!("{}/readyz", h.base))
            .send()
            .await
            .expect("get")
            .status(),
        503
    );
    assert_eq!(
        h.http
            .get(format!("{}/healthz", h.base))
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
}
