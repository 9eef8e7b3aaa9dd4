//! Cloud Scheduler's ID tokens on `POST /v1/scheduler/tick`, against a local
//! JWKS server publishing test keys (`tests/fixtures/oidc`, test-only): a
//! good token ticks; a wrong audience, issuer, email, an unverified email,
//! an expired or future token, a forged signature, an unknown key, `alg:
//! none` and an HS256 token keyed with the public key are all 401 with a code
//! naming the check; the operator token still works; the scheduler may do
//! nothing else (403); a key rotated in is fetched; and `serve` configured by
//! its flags logs no token.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use control_plane::scheduler::SchedulerSettings;
use control_plane::server::oidc::{IdTokenVerifier, SchedulerIdentity};
use control_plane::server::{self, ServeConfig};

const OPERATOR_TOKEN: &str = "operator-token-for-the-oidc-tests-0123";
const AUDIENCE: &str = "https://ledgerlake.example/v1/scheduler/tick";
const SCHEDULER: &str = "ledgerlake-scheduler@platform-project.iam.gserviceaccount.com";
const SIGNING_KID: &str = "test-key-1";
const OTHER_KID: &str = "test-key-2";

const SIGNING_KEY: &str = include_str!("fixtures/oidc/signing-key.pem");
const SIGNING_PUBLIC: &str = include_str!("fixtures/oidc/signing-public.pem");
const SIGNING_JWK: &str = include_str!("fixtures/oidc/signing-jwk.json");
const OTHER_KEY: &str = include_str!("fixtures/oidc/other-key.pem");
const OTHER_JWK: &str = include_str!("fixtures/oidc/other-jwk.json");

// ----------------------------------------------------------------- the JWKS

/// A local stand-in for Google's JWKS endpoint: serves `keys` (or 500 when
/// `failing`), counting fetches.
#[derive(Clone, Default)]
struct Jwks {
    keys: Arc<Mutex<Vec<Value>>>,
    failing: Arc<std::sync::atomic::AtomicBool>,
    fetches: Arc<AtomicUsize>,
}

impl Jwks {
    fn publish(&self, jwks: &[&str]) {
        let keys = jwks
            .iter()
            .map(|j| serde_json::from_str(j).expect("a JWK"))
            .collect();
        *self.keys.lock().unwrap_or_else(|e| e.into_inner()) = keys;
    }

    async fn serve(&self) -> String {
        async fn certs(State(jwks): State<Jwks>) -> axum::response::Response {
            jwks.fetches.fetch_add(1, Ordering::SeqCst);
            if jwks.failing.load(Ordering::SeqCst) {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            let keys = jwks.keys.lock().unwrap_or_else(|e| e.into_inner()).clone();
            Json(json!({ "keys": keys })).into_response()
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/oauth2/v3/certs",
            listener.local_addr().expect("addr")
        );
        let app = Router::new()
            .route("/oauth2/v3/certs", get(certs))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

// ----------------------------------------------------------------- tokens

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The claims of a good token, as Google issues them for Cloud Scheduler.
fn good_claims() -> Value {
    json!({
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "azp": "112233445566778899000",
        "sub": "112233445566778899000",
        "email": SCHEDULER,
        "email_verified": true,
        "iat": now(),
        "exp": now() + 3600,
    })
}

/// `claims` with `changes` merged in (a null value removes the claim).
fn with(changes: Value) -> Value {
    let mut claims = good_claims();
    for (k, v) in changes.as_object().expect("an object") {
        match v {
            Value::Null => {
                claims.as_object_mut().expect("object").remove(k);
            }
            v => claims[k] = v.clone(),
        }
    }
    claims
}

fn sign(claims: &Value, kid: &str, key_pem: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let key = EncodingKey::from_rsa_pem(key_pem.as_bytes()).expect("a test key");
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

fn good_token() -> String {
    sign(&good_claims(), SIGNING_KID, SIGNING_KEY)
}

fn b64(value: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

// ----------------------------------------------------------------- the service

struct Service {
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    workers: tokio::task::JoinHandle<()>,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.workers.abort();
        self.serving.abort();
    }
}

impl Service {
    /// The service with the scheduler's identity (the JWKS at `jwks_url`),
    /// fetching the JWKS for an unknown key at most every `min_refresh`.
    async fn start(jwks_url: Option<&str>, min_refresh: Duration) -> Service {
        let dir = tempfile::tempdir().expect("tmp");
        let platform = support::platform(dir.path()).await;
        let id_token = jwks_url.map(|url| {
            Arc::new(
                IdTokenVerifier::with_refresh(
                    SchedulerIdentity {
                        audience: AUDIENCE.to_owned(),
                        service_account: SCHEDULER.to_owned(),
                        jwks_url: url.to_owned(),
                    },
                    min_refresh,
                )
                .expect("verifier"),
            )
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = ServeConfig {
            operator_token: Some(xero::secret::SecretString::new(OPERATOR_TOKEN)),
            scheduler: SchedulerSettings {
                id_token,
                ..SchedulerSettings::default()
            },
            query: Some(Default::default()),
            ..ServeConfig::closed(addr, format!("http://{addr}"))
        };
        let (state, workers) = server::start(
            platform.cloud.clone(),
            platform.store.clone(),
            support::reconciler(&platform),
            config,
        );
        let app = server::router(state);
        let serving = tokio::spawn(async move { axum::serve(listener, app).await });
        Service {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            _dir: dir,
            workers,
            serving,
        }
    }

    /// `(status, code)` of a call with `bearer` and a JSON `body`.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: &str,
        body: Value,
    ) -> (u16, String) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(bearer)
            .json(&body)
            .send()
            .await
            .expect("call");
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let code = body["code"].as_str().unwrap_or_default().to_owned();
        (status, code)
    }

    async fn tick(&self, bearer: &str) -> (u16, String) {
        self.call(
            reqwest::Method::POST,
            "/v1/scheduler/tick",
            bearer,
            json!({}),
        )
        .await
    }
}

// ----------------------------------------------------------------- the tests

#[tokio::test]
async fn a_good_id_token_ticks_and_every_bad_one_is_401_with_its_reason() {
    let jwks = Jwks::default();
    jwks.publish(&[SIGNING_JWK]);
    let url = jwks.serve().await;
    let service = Service::start(Some(&url), Duration::from_secs(3600)).await;

    assert_eq!(service.tick(&good_token()).await, (200, String::new()));
    // Google's issuer in its other spelling, and a small clock skew, pass.
    let skewed = with(json!({"iss": "accounts.google.com", "iat": now() + 20, "nbf": now() + 20}));
    assert_eq!(
        service
            .tick(&sign(&skewed, SIGNING_KID, SIGNING_KEY))
            .await
            .0,
        200
    );
    // Some Google endpoints spell email_verified as a string.
    let spelt = with(json!({"email_verified": "true"}));
    assert_eq!(
        service
            .tick(&sign(&spelt, SIGNING_KID, SIGNING_KEY))
            .await
            .0,
        200
    );

    let none_alg = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": SIGNING_KID})),
        b64(&good_claims())
    );
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(SIGNING_KID.to_owned());
    let hs256_with_the_public_key = jsonwebtoken::encode(
        &hs_header,
        &good_claims(),
        &EncodingKey::from_secret(SIGNING_PUBLIC.as_bytes()).expect("an HMAC key"),
    )
    .expect("sign HS256");
    // A good token's header and signature around claims of another caller.
    let good = good_token();
    let spliced = format!(
        "{}.{}.{}",
        good.split('.').next().unwrap_or_default(),
        b64(&with(json!({"email": "x@y.z"}))),
        good.rsplit('.').next().unwrap_or_default()
    );

    let bad: Vec<(&str, String, &str)> = vec![
        (
            "wrong audience",
            sign(
                &with(json!({"aud": "https://elsewhere.example/tick"})),
                SIGNING_KID,
                SIGNING_KEY,
            ),
            "id_token_audience",
        ),
        (
            "wrong issuer",
            sign(
                &with(json!({"iss": "https://evil.example"})),
                SIGNING_KID,
                SIGNING_KEY,
            ),
            "id_token_issuer",
        ),
        (
            "another service account",
            sign(
                &with(json!({"email": "someone@platform-project.iam.gserviceaccount.com"})),
                SIGNING_KID,
                SIGNING_KEY,
            ),
            "id_token_caller",
        ),
        (
            "no email",
            sign(&with(json!({"email": null})), SIGNING_KID, SIGNING_KEY),
            "id_token_caller",
        ),
        (
            "unverified email",
            sign(
                &with(json!({"email_verified": false})),
                SIGNING_KID,
                SIGNING_KEY,
            ),
            "id_token_email_unverified",
        ),
        (
            "email_verified missing",
            sign(
                &with(json!({"email_verified": null})),
                SIGNING_KID,
                SIGNING_KEY,
            ),
            "id_token_email_unverified",
        ),
        (
            "expired",
            sign(
                &with(json!({"iat": now() - 7200, "exp": now() - 3600})),
                SIGNING_KID,
                SIGNING_KEY,
            ),
            "id_token_expired",
        ),
        (
            "not before the future",
            sign(&with(json!({"nbf": now() + 600})), SIGNING_KID, SIGNING_KEY),
            "id_token_not_yet_valid",
        ),
        (
            "issued in the future",
            sign(&with(json!({"iat": now() + 600})), SIGNING_KID, SIGNING_KEY),
            "id_token_not_yet_valid",
        ),
        (
            "no expiry",
            sign(&with(json!({"exp": null})), SIGNING_KID, SIGNING_KEY),
            "id_token_malformed",
        ),
        (
            "signed by another key under the published kid",
            sign(&good_claims(), SIGNING_KID, OTHER_KEY),
            "id_token_signature",
        ),
        (
            "claims changed after signing",
            spliced,
            "id_token_signature",
        ),
        (
            "a key the JWKS does not have",
            sign(&good_claims(), "test-key-9", SIGNING_KEY),
            "id_token_unknown_key",
        ),
        ("alg none", none_alg, "id_token_malformed"),
        (
            "HS256 keyed with the public key",
            hs256_with_the_public_key,
            "id_token_algorithm",
        ),
        (
            "no kid",
            {
                let key = EncodingKey::from_rsa_pem(SIGNING_KEY.as_bytes()).expect("key");
                jsonwebtoken::encode(&Header::new(Algorithm::RS256), &good_claims(), &key)
                    .expect("sign")
            },
            "id_token_malformed",
        ),
        ("garbage", "a.b.c".to_owned(), "id_token_malformed"),
    ];
    for (what, token, code) in &bad {
        assert_eq!(
            service.tick(token).await,
            (401, (*code).to_owned()),
            "{what}"
        );
    }

    // The operator token still works; a wrong one is the plain 401.
    assert_eq!(service.tick(OPERATOR_TOKEN).await, (200, String::new()));
    assert_eq!(
        service.tick("not-the-operator-token").await,
        (401, "unauthorized".to_owned())
    );
}

#[tokio::test]
async fn the_scheduler_may_tick_and_nothing_else() {
    let jwks = Jwks::default();
    jwks.publish(&[SIGNING_JWK]);
    let url = jwks.serve().await;
    let service = Service::start(Some(&url), Duration::from_secs(3600)).await;
    let token = good_token();
    use reqwest::Method;
    // Each with a body its route accepts, so that only authorisation refuses.
    let question = json!({"question": "revenue last month"});
    for (method, path, body) in [
        (Method::GET, "/v1/tenants/acme", json!({})),
        (Method::POST, "/v1/tenants/acme/runs", json!({})),
        (Method::GET, "/v1/tenants/acme/runs", json!({})),
        (Method::POST, "/v1/tenants/acme/connect-link", json!({})),
        (Method::POST, "/v1/tenants/acme/disconnect", json!({})),
        (Method::POST, "/v1/tenants/acme/tokens", json!({})),
        (Method::GET, "/v1/runs/run-1", json!({})),
        (Method::GET, "/v1/cells", json!({})),
        (Method::POST, "/v1/cells/cell-1/drain", json!({})),
        (Method::POST, "/v1/tenants/acme/query", question.clone()),
        (Method::POST, "/v1/query", question.clone()),
        (Method::GET, "/v1/conversations/c-1", json!({})),
    ] {
        assert_eq!(
            service.call(method.clone(), path, &token, body).await,
            (403, "forbidden".to_owned()),
            "{method} {path}"
        );
    }
    assert_eq!(service.tick(&token).await.0, 200);
}

#[tokio::test]
async fn without_a_scheduler_identity_an_id_token_is_just_a_wrong_token() {
    let service = Service::start(None, Duration::from_secs(3600)).await;
    assert_eq!(
        service.tick(&good_token()).await,
        (401, "unauthorized".to_owned())
    );
    assert_eq!(service.tick(OPERATOR_TOKEN).await.0, 200);
}

#[tokio::test]
async fn keys_are_cached_a_rotated_key_is_fetched_and_a_dead_jwks_is_401() {
    let jwks = Jwks::default();
    jwks.publish(&[SIGNING_JWK]);
    let url = jwks.serve().await;
    let service = Service::start(Some(&url), Duration::ZERO).await;

    for _ in 0..3 {
        assert_eq!(service.tick(&good_token()).await.0, 200);
    }
    assert_eq!(jwks.fetches(), 1, "the JWKS is cached");

    // Google publishes a new key; a token signed with it makes us look again.
    let rotated = sign(&good_claims(), OTHER_KID, OTHER_KEY);
    assert_eq!(service.tick(&rotated).await.0, 401);
    assert_eq!(jwks.fetches(), 2);
    jwks.publish(&[SIGNING_JWK, OTHER_JWK]);
    assert_eq!(service.tick(&rotated).await.0, 200);
    assert_eq!(jwks.fetches(), 3);
    assert_eq!(service.tick(&good_token()).await.0, 200);
    assert_eq!(jwks.fetches(), 3);

    // Unknown key ids are not a way to make us fetch on every request.
    let limited = Service::start(Some(&url), Duration::from_secs(3600)).await;
    assert_eq!(limited.tick(&good_token()).await.0, 200);
    let before = jwks.fetches();
    for n in 0..5 {
        let made_up = sign(&good_claims(), &format!("made-up-{n}"), SIGNING_KEY);
        assert_eq!(
            limited.tick(&made_up).await,
            (401, "id_token_unknown_key".to_owned())
        );
    }
    assert_eq!(
        jwks.fetches(),
        before,
        "no fetch within the refresh interval"
    );

    // A JWKS that cannot be had: 401 saying so, never a 500.
    jwks.failing.store(true, Ordering::SeqCst);
    let fresh = Service::start(Some(&url), Duration::ZERO).await;
    assert_eq!(
        fresh.tick(&good_token()).await,
        (401, "id_token_keys_unavailable".to_owned())
    );
    // A server that does not answer at all: the same, within the timeout.
    let dead = Service::start(Some("http://127.0.0.1:9/certs"), Duration::ZERO).await;
    assert_eq!(
        dead.tick(&good_token()).await,
        (401, "id_token_keys_unavailable".to_owned())
    );
}

// ----------------------------------------------------------------- the binary

/// `serve` configured by its flags and environment alone, at trace level:
/// the tokens, good or bad, appear in no log line.
#[test]
fn serve_takes_the_settings_and_logs_no_token() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let jwks = Jwks::default();
    jwks.publish(&[SIGNING_JWK]);
    let url = runtime.block_on(jwks.serve());
    let dir = tempfile::tempdir().expect("tmp");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_control-plane"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LEDGERLAKE_DATA_DIR", dir.path())
        .env("LEDGERLAKE_MASTER_KEY", support::TEST_MASTER_KEY)
        .env("LEDGERLAKE_LOCAL_TICK_SECS", "0")
        .env("LEDGERLAKE_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .env("LEDGERLAKE_SCHEDULER_AUDIENCE", AUDIENCE)
        .env("RUST_LOG", "trace")
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--resync-secs",
            "3600",
            "--scheduler-service-account",
            SCHEDULER,
            "--google-jwks-url",
            &url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start serve");
    let logs = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().expect("stderr");
    let sink = logs.clone();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_str(&line);
            line.clear();
        }
    });
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("control-plane listening on http://") {
                let _ = tx.send(addr.trim().parse::<SocketAddr>().ok());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).ok().flatten();
    let stop = |mut child: Child| {
        let _ = child.kill();
        let _ = child.wait();
    };
    let Some(addr) = addr else {
        stop(child);
        let _ = reader.join();
        panic!(
            "serve did not start: {}",
            logs.lock().unwrap_or_else(|e| e.into_inner())
        );
    };
    let good = good_token();
    let bad = sign(
        &with(json!({"aud": "https://elsewhere"})),
        SIGNING_KID,
        SIGNING_KEY,
    );
    let statuses = runtime.block_on(async {
        let http = reqwest::Client::new();
        let mut statuses = Vec::new();
        for token in [&good, &bad] {
            let r = http
                .post(format!("http://{addr}/v1/scheduler/tick"))
                .bearer_auth(token)
                .send()
                .await
                .expect("tick");
            statuses.push(r.status().as_u16());
        }
        statuses
    });
    stop(child);
    let _ = reader.join();
    assert_eq!(statuses, [200, 401]);
    let logs = logs.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(logs.contains("id_token_audience"), "the refusal is logged");
    for token in [&good, &bad] {
        // The signature part alone would be enough to replay nothing, but
        // no part of a token belongs in the logs.
        for part in token.split('.') {
            assert!(!logs.contains(part), "a token part in the logs");
        }
    }
    assert!(!logs.contains(OPERATOR_TOKEN));

    // One of the two settings alone is a mistake, refused before serving.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_control-plane"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LEDGERLAKE_DATA_DIR", dir.path())
        .env("LEDGERLAKE_MASTER_KEY", support::TEST_MASTER_KEY)
        .env("LEDGERLAKE_SCHEDULER_AUDIENCE", AUDIENCE)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .expect("run serve");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LEDGERLAKE_SCHEDULER_SERVICE_ACCOUNT"));
}
