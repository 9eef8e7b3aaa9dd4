//! The query service's credentials and audit, on SQLite and on PostgreSQL
//! (when `LEDGERLAKE_TEST_DATABASE_URL` names a server): tenant API tokens
//! issued, listed and revoked over HTTP and through the real CLI, stored only
//! as hashes, refused once revoked or expired, and good for nothing but their
//! own tenant's questions; the query audit's record, conversation and
//! feedback; and no secret in the service's logs.

mod support;

use support::backends::Env;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use cloud::naming::TenantId;
use control_plane::server::auth::{authorize, Action, Principal};
use control_plane::service::tokens;
use control_plane::store::{
    NewQueryAudit, Phase, QueryOutcome, RunCommand, RunTrigger, StoreError, TOKEN_PREFIX,
};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_control-plane");
const OPERATOR_TOKEN: &str = "operator-token-for-query-tokens-0123456789";

// ----------------------------------------------------------------- backends

impl Env {
    /// A tenant in the store, marked Ready so that a running service's
    /// workers leave it alone (no cloud resources are needed here).
    async fn tenant(&self, id: &str) -> TenantId {
        let id = TenantId::parse(id).expect("tenant id");
        self.platform.store.want_tenant(&id).await.expect("want");
        self.platform
            .store
            .set_phase(&id, Phase::Ready, None)
            .await
            .expect("ready");
        id
    }

    /// `(id, tenant_id, name, token_hash, created_by)` of every stored token,
    /// read with SQL of our own rather than through the store.
    async fn token_rows(&self) -> Vec<(String, String, String, String, String)> {
        use sqlx::Connection;
        const SQL: &str =
            "SELECT id, tenant_id, name, token_hash, created_by FROM api_tokens ORDER BY id";
        match &self.database_url {
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.expect("pg");
                sqlx::query_as(SQL)
                    .fetch_all(&mut conn)
                    .await
                    .expect("rows")
            }
            None => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.dir.path().join("state.db"));
                let mut conn = sqlx::SqliteConnection::connect_with(&options)
                    .await
                    .expect("sqlite");
                sqlx::query_as(SQL)
                    .fetch_all(&mut conn)
                    .await
                    .expect("rows")
            }
        }
    }

    /// The binary with a clean environment on this data directory and store.
    fn cli(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LEDGERLAKE_DATA_DIR", self.dir.path())
            .env("LEDGERLAKE_MASTER_KEY", support::TEST_MASTER_KEY)
            .env("LEDGERLAKE_LOCAL_TICK_SECS", "0")
            .stdin(Stdio::null());
        if let Some(url) = &self.database_url {
            cmd.env("LEDGERLAKE_DATABASE_URL", url);
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cli().args(args).output().expect("run control-plane")
    }
}

both_backends!(
    an_issued_token_authenticates_and_only_its_hash_is_stored,
    revoked_expired_unknown_and_orphaned_tokens_get_the_wrong_token_answer,
    a_tenant_token_may_only_query_its_own_tenant,
    the_query_audit_records_conversations_and_feedback,
    tokens_through_the_cli,
    no_secret_reaches_the_service_logs,
);

// ----------------------------------------------------------------- HTTP

/// `control-plane serve` on a free port over the test's data directory and
/// store, killed when dropped; its stderr (the logs) is kept.
struct Server {
    child: Child,
    base: String,
    logs: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Kills the process and returns all it logged.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader thread drains the pipe; give it a moment to finish.
        for _ in 0..50 {
            let before = self.logs().len();
            std::thread::sleep(Duration::from_millis(100));
            if self.logs().len() == before {
                break;
            }
        }
        self.logs()
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn serve(env: &Env, rust_log: &str) -> Server {
    let mut child = env
        .cli()
        .env("LEDGERLAKE_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .env("RUST_LOG", rust_log)
        .args(["serve", "--listen", "127.0.0.1:0", "--resync-secs", "3600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start control-plane serve");
    let logs = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().expect("stderr");
    let sink = logs.clone();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut line = String::new();
        // Ends when the process closes its stderr.
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
    let mut server = Server {
        child,
        base: String::new(),
        logs,
    };
    match rx.recv_timeout(Duration::from_secs(60)).ok().flatten() {
        Some(addr) => server.base = format!("http://{addr}"),
        None => panic!("serve did not start listening: {}", server.logs()),
    }
    server
}

/// `(status, body)` of one request with `bearer`.
async fn call(
    method: reqwest::Method,
    url: &str,
    bearer: &str,
    body: Option<Value>,
) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(bearer);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

/// Issues a token through the operator API; returns the whole answer.
async fn issue(base: &str, tenant: &str, body: Value) -> Value {
    let (status, text) = call(
        reqwest::Method::POST,
        &format!("{base}/v1/tenants/{tenant}/tokens"),
        OPERATOR_TOKEN,
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    serde_json::from_str(&text).expect("json")
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

// ----------------------------------------------------------------- tests

async fn an_issued_token_authenticates_and_only_its_hash_is_stored(env: Env) {
    env.tenant("acme").await;
    let server = serve(&env, "warn");
    let base = server.base.clone();
    let issued = issue(&base, "acme", json!({"name": "ci", "expires": "30d"})).await;
    let secret = issued["secret"].as_str().expect("secret").to_owned();
    let id = issued["id"].as_str().expect("id").to_owned();
    assert!(secret.starts_with(TOKEN_PREFIX), "{issued}");
    assert_eq!(secret.len(), 4 + 43);
    assert!(id.starts_with("tok_"), "{issued}");
    assert_eq!(issued["tenant"], "acme");
    assert_eq!(issued["name"], "ci");
    assert!(issued["expires_at"].is_string(), "{issued}");
    assert!(issued.get("token_hash").is_none(), "{issued}");

    // It authenticates: the store finds it, and the service tells the
    // tenant principal "forbidden" (not "unauthorised") on an operator route.
    let found = tokens::authenticate(&env.platform.store, &secret)
        .await
        .expect("authenticate")
        .expect("an active token");
    assert_eq!(found.id, id);
    assert_eq!(found.tenant.as_str(), "acme");
    assert!(found.last_used_at.is_some());
    let (status, _) = call(
        reqwest::Method::GET,
        &format!("{base}/v1/tenants/acme"),
        &secret,
        None,
    )
    .await;
    assert_eq!(status, 403);

    // A second token without a name or expiry.
    let other = issue(&base, "acme", json!({})).await;
    assert_eq!(other["name"], "default");
    assert!(other["expires_at"].is_null(), "{other}");
    let other_secret = other["secret"].as_str().expect("secret").to_owned();
    assert_ne!(other_secret, secret);

    // Listing shows both, never a secret or a hash.
    let (status, listed) = call(
        reqwest::Method::GET,
        &format!("{base}/v1/tenants/acme/tokens"),
        OPERATOR_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    for s in [&secret, &other_secret] {
        assert!(!listed.contains(s.as_str()), "a secret listed: {listed}");
        assert!(!listed.contains(&s[4..20]), "part of a secret listed");
        assert!(!listed.contains(&sha256_hex(s)), "a hash listed: {listed}");
    }
    let listed: Value = serde_json::from_str(&listed).expect("json");
    let listed = listed.as_array().expect("array");
    assert_eq!(listed.len(), 2);
    assert!(listed
        .iter()
        .any(|t| t["id"] == id.as_str() && t["name"] == "ci"));
    for t in listed {
        let keys: Vec<&str> = t
            .as_object()
            .expect("object")
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert!(
            !keys
                .iter()
                .any(|k| k.contains("secret") || k.contains("hash")),
            "{keys:?}"
        );
    }

    // The database holds the hash and nothing of the secret.
    let rows = env.token_rows().await;
    assert_eq!(rows.len(), 2);
    let row = rows.iter().find(|r| r.0 == id).expect("the row");
    assert_eq!(row.3, sha256_hex(&secret));
    for r in &rows {
        for column in [&r.0, &r.1, &r.2, &r.3, &r.4] {
            assert!(!column.contains(&secret[4..20]) && !column.contains(&other_secret[4..20]));
        }
    }
    if env.database_url.is_none() {
        // Nowhere in the SQLite files either (the write-ahead log included).
        for file in ["state.db", "state.db-wal"] {
            let bytes = std::fs::read(env.dir.path().join(file)).unwrap_or_default();
            for s in [&secret, &other_secret] {
                let part = &s.as_bytes()[4..24];
                assert!(
                    !bytes.windows(part.len()).any(|w| w == part),
                    "a secret in {file}"
                );
            }
        }
    }

    // The audit log says who issued what, without the secret.
    let audit = env
        .platform
        .store
        .list_audit(Some(&TenantId::parse("acme").expect("id")), 10)
        .await
        .expect("audit");
    let issued_lines: Vec<_> = audit
        .iter()
        .filter(|a| a.action == "tenant.token_issued")
        .collect();
    assert_eq!(issued_lines.len(), 2);
    assert_eq!(issued_lines[0].actor, "operator-api");
    let text = format!("{audit:?}");
    assert!(!text.contains(&secret[4..20]) && !text.contains(&sha256_hex(&secret)));

    // Issuing for a tenant that does not exist, or with bad input.
    let (status, text) = call(
        reqwest::Method::POST,
        &format!("{base}/v1/tenants/ghost/tokens"),
        OPERATOR_TOKEN,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("tenant_not_found"), "{text}");
    for bad in [
        json!({"expires": "0"}),
        json!({"expires": "soon"}),
        json!({"expires": "99999d"}),
        json!({"name": ""}),
        json!({"name": "x".repeat(65)}),
        json!({"name": "a\u{7}b"}),
        json!({"scope": "all"}),
    ] {
        let (status, text) = call(
            reqwest::Method::POST,
            &format!("{base}/v1/tenants/acme/tokens"),
            OPERATOR_TOKEN,
            Some(bad.clone()),
        )
        .await;
        assert!(status == 400 || status == 422, "{bad}: {status} {text}");
    }
}

async fn revoked_expired_unknown_and_orphaned_tokens_get_the_wrong_token_answer(env: Env) {
    let acme = env.tenant("acme").await;
    let server = serve(&env, "warn");
    let base = server.base.clone();
    let probe = |bearer: String| {
        let base = base.clone();
        async move {
            call(
                reqwest::Method::GET,
                &format!("{base}/v1/tenants/acme"),
                &bearer,
                None,
            )
            .await
        }
    };
    let (status, wrong) = probe("wrong-token".to_owned()).await;
    assert_eq!(status, 401);

    // Revoked: 204, again 204 (nothing changes), an unknown id 404.
    let issued = issue(&base, "acme", json!({"name": "revoke-me"})).await;
    let secret = issued["secret"].as_str().expect("secret").to_owned();
    let id = issued["id"].as_str().expect("id").to_owned();
    assert_eq!(probe(secret.clone()).await.0, 403);
    for _ in 0..2 {
        let (status, text) = call(
            reqwest::Method::DELETE,
            &format!("{base}/v1/tokens/{id}"),
            OPERATOR_TOKEN,
            None,
        )
        .await;
        assert_eq!(status, 204, "{text}");
    }
    let (status, text) = call(
        reqwest::Method::DELETE,
        &format!("{base}/v1/tokens/tok_0000000000000000"),
        OPERATOR_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("token_not_found"), "{text}");
    assert_eq!(probe(secret.clone()).await, (401, wrong.clone()));
    let revoked = env
        .platform
        .store
        .get_api_token(&id)
        .await
        .expect("get")
        .expect("kept");
    assert!(revoked.revoked_at.is_some());
    let audit = env
        .platform
        .store
        .list_audit(Some(&acme), 10)
        .await
        .expect("audit");
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.action == "tenant.token_revoked")
            .count(),
        1,
        "revoking twice is audited once"
    );

    // Expired.
    let (expired, expired_secret) = env
        .platform
        .store
        .issue_api_token(
            &acme,
            "expired",
            "test",
            Some(time::OffsetDateTime::now_utc() - time::Duration::seconds(1)),
        )
        .await
        .expect("issue");
    assert_eq!(
        probe(expired_secret.expose_secret().to_owned()).await,
        (401, wrong.clone())
    );
    let listed = tokens::list(&env.platform.store, &acme)
        .await
        .expect("list");
    let now = time::OffsetDateTime::now_utc();
    let state_of = |id: &str| {
        listed
            .iter()
            .find(|t| t.id == id)
            .map(|t| t.state(now))
            .expect("listed")
    };
    assert_eq!(state_of(&expired.id), "expired");
    assert_eq!(state_of(&id), "revoked");

    // Unknown, of the right shape and not; an empty bearer.
    let unknown = format!("{TOKEN_PREFIX}{}", "A".repeat(43));
    for bearer in [unknown.as_str(), "llt_", "llt_short"] {
        assert_eq!(
            probe(bearer.to_owned()).await,
            (401, wrong.clone()),
            "{bearer}"
        );
    }

    // A tenant being torn down, then gone: its tokens stop at once, and go.
    let live = issue(&base, "acme", json!({"name": "live"})).await;
    let live_secret = live["secret"].as_str().expect("secret").to_owned();
    assert_eq!(probe(live_secret.clone()).await.0, 403);
    env.platform
        .store
        .mark_deleting(&acme, false)
        .await
        .expect("mark deleting");
    assert_eq!(probe(live_secret.clone()).await, (401, wrong.clone()));
    let (status, text) = call(
        reqwest::Method::POST,
        &format!("{base}/v1/tenants/acme/tokens"),
        OPERATOR_TOKEN,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 409, "no new tokens while deleting: {text}");
    assert!(env
        .platform
        .store
        .delete_tenant(&acme)
        .await
        .expect("delete"));
    assert!(
        env.token_rows().await.is_empty(),
        "tokens go with their tenant"
    );
    // A tenant created again under the same id gets none of the old tokens.
    env.tenant("acme").await;
    assert_eq!(probe(live_secret).await, (401, wrong));
}

async fn a_tenant_token_may_only_query_its_own_tenant(env: Env) {
    let acme = env.tenant("acme").await;
    let other = env.tenant("other").await;
    let server = serve(&env, "warn");
    let base = server.base.clone();
    let issued = issue(&base, "acme", json!({"name": "reader"})).await;
    let secret = issued["secret"].as_str().expect("secret").to_owned();
    let token_id = issued["id"].as_str().expect("id").to_owned();
    let others = issue(&base, "other", json!({})).await;
    let others_id = others["id"].as_str().expect("id").to_owned();
    let run = env
        .platform
        .store
        .create_run(&other, RunCommand::Sync, RunTrigger::Operator)
        .await
        .expect("a run of the other tenant");

    use reqwest::Method;
    let refused = [
        (Method::GET, "/v1/tenants/acme".to_owned(), None),
        (Method::GET, "/v1/tenants/other".to_owned(), None),
        (
            Method::POST,
            "/v1/tenants/acme/runs".to_owned(),
            Some(json!({})),
        ),
        (
            Method::POST,
            "/v1/tenants/other/runs".to_owned(),
            Some(json!({})),
        ),
        (Method::GET, "/v1/tenants/acme/runs".to_owned(), None),
        (Method::GET, format!("/v1/runs/{}", run.id), None),
        (Method::GET, "/v1/runs/run-unknown".to_owned(), None),
        (Method::POST, "/v1/scheduler/tick".to_owned(), None),
        (
            Method::POST,
            "/v1/tenants/acme/connect-link".to_owned(),
            Some(json!({})),
        ),
        (Method::POST, "/v1/tenants/acme/disconnect".to_owned(), None),
        (
            Method::POST,
            "/v1/tenants/acme/tokens".to_owned(),
            Some(json!({})),
        ),
        (Method::GET, "/v1/tenants/acme/tokens".to_owned(), None),
        (Method::GET, "/v1/tenants/other/tokens".to_owned(), None),
        (Method::DELETE, format!("/v1/tokens/{token_id}"), None),
        (Method::DELETE, format!("/v1/tokens/{others_id}"), None),
        (Method::DELETE, "/v1/tokens/tok_unknown".to_owned(), None),
    ];
    for (method, path, body) in refused {
        let (status, text) = call(method.clone(), &format!("{base}{path}"), &secret, body).await;
        assert_eq!(status, 403, "{method} {path}: {text}");
        let body: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(body["code"], "forbidden", "{text}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("operator token")),
            "{text}"
        );
    }
    // There is no route listing tenants at all.
    let (status, _) = call(Method::GET, &format!("{base}/v1/tenants"), &secret, None).await;
    assert!(!(200..300).contains(&status), "{status}");
    // Nothing it tried changed anything: both tokens are still active, and
    // no run or link was started.
    for id in [&token_id, &others_id] {
        let t = env
            .platform
            .store
            .get_api_token(id)
            .await
            .expect("get")
            .expect("kept");
        assert!(t.revoked_at.is_none());
    }
    assert_eq!(
        env.platform
            .store
            .list_runs(Some(&acme), 10)
            .await
            .expect("runs")
            .len(),
        0
    );
    assert_eq!(
        env.platform
            .store
            .list_api_tokens(&acme)
            .await
            .expect("tokens")
            .len(),
        1
    );

    // The one thing it may do: query its own tenant, named explicitly.
    let principal = Principal::Tenant {
        tenant: acme.clone(),
        token_id: token_id.clone(),
    };
    assert_eq!(principal.actor(), format!("token:{token_id}"));
    assert!(!principal.actor().contains(&secret[4..]));
    assert_eq!(principal.tenant(), Some(&acme));
    assert!(authorize(&principal, Some(&acme), Action::Query).is_ok());
    let refused = authorize(&principal, Some(&other), Action::Query).expect_err("other tenant");
    assert_eq!(refused.status, 403);
    assert!(authorize(&principal, None, Action::Query).is_err());
    for action in [
        Action::ReadTenant,
        Action::ManageTenant,
        Action::StartRun,
        Action::ReadRun,
        Action::Tick,
        Action::ManageTokens,
    ] {
        for tenant in [Some(&acme), Some(&other), None] {
            let e = authorize(&principal, tenant, action).expect_err("refused");
            assert_eq!(e.status, 403, "{action:?}");
        }
    }
    for action in [
        Action::Query,
        Action::ManageTokens,
        Action::ReadTenant,
        Action::Tick,
    ] {
        assert!(authorize(&Principal::Operator, Some(&other), action).is_ok());
    }

    // Another tenant's query audit is out of its reach: the question's own
    // tenant is what a route authorises on, and the tenant-scoped reads
    // find nothing of another tenant's.
    let theirs = env
        .platform
        .store
        .record_query(&audit_entry(
            &other,
            "conv-other",
            "revenue last month",
            None,
        ))
        .await
        .expect("record");
    let read = env
        .platform
        .store
        .get_query(&theirs.id)
        .await
        .expect("get")
        .expect("recorded");
    assert_eq!(
        authorize(&principal, Some(&read.tenant), Action::Query).map_err(|e| e.status),
        Err(axum::http::StatusCode::FORBIDDEN)
    );
    assert!(env
        .platform
        .store
        .conversation("conv-other", &acme)
        .await
        .expect("conversation")
        .is_empty());
    assert!(env
        .platform
        .store
        .latest_plan("conv-other", &acme)
        .await
        .expect("latest")
        .is_none());
    match env
        .platform
        .store
        .set_query_feedback(&theirs.id, &acme, false, Some("not mine"))
        .await
    {
        Err(StoreError::QueryNotFound(id)) => assert_eq!(id, theirs.id),
        other => panic!("feedback on another tenant's question: {other:?}"),
    }
    let untouched = env
        .platform
        .store
        .get_query(&theirs.id)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(untouched.feedback_helpful, None);
}

fn audit_entry(
    tenant: &TenantId,
    conversation: &str,
    question: &str,
    token_id: Option<&str>,
) -> NewQueryAudit {
    NewQueryAudit {
        tenant: tenant.clone(),
        token_id: token_id.map(str::to_owned),
        actor: token_id.map_or("operator-api".to_owned(), |t| format!("token:{t}")),
        conversation_id: conversation.to_owned(),
        question: question.to_owned(),
        plan: Some(json!({"metrics": ["revenue"], "period": "last_month"})),
        sql: Some("SELECT SUM(sub_total) AS revenue FROM fct_invoices LIMIT 1000".to_owned()),
        generator: "offline".to_owned(),
        row_count: 1,
        duration_ms: 7,
        outcome: QueryOutcome::Answered,
        refusal_reason: None,
    }
}

async fn the_query_audit_records_conversations_and_feedback(env: Env) {
    let acme = env.tenant("acme").await;
    let store = &env.platform.store;
    let (token, _secret) = store
        .issue_api_token(&acme, "app", "test", None)
        .await
        .expect("token");

    // Four turns, recorded back to back (within a millisecond, some of them).
    let first = store
        .record_query(&audit_entry(
            &acme,
            "conv-1",
            "revenue last month",
            Some(&token.id),
        ))
        .await
        .expect("record");
    let mut follow_up = audit_entry(&acme, "conv-1", "and by customer?", Some(&token.id));
    follow_up.plan = Some(json!({"metrics": ["revenue"], "dimensions": ["customer"]}));
    follow_up.row_count = 12;
    let second = store.record_query(&follow_up).await.expect("record");
    let mut declined = audit_entry(&acme, "conv-1", "what is the weather", Some(&token.id));
    declined.plan = None;
    declined.sql = None;
    declined.row_count = 0;
    declined.outcome = QueryOutcome::Declined;
    let third = store.record_query(&declined).await.expect("record");
    let mut refused = audit_entry(&acme, "conv-1", "DROP TABLE fct_invoices", Some(&token.id));
    refused.plan = Some(json!({"raw": true}));
    refused.sql = Some("DROP TABLE fct_invoices".to_owned());
    refused.outcome = QueryOutcome::Refused;
    refused.refusal_reason = Some("not_a_query".to_owned());
    let fourth = store.record_query(&refused).await.expect("record");
    // An operator's question in a conversation of its own.
    let operators = store
        .record_query(&audit_entry(
            &acme,
            "conv-2",
            "cash received this year",
            None,
        ))
        .await
        .expect("record");

    // get: everything as recorded.
    let got = store
        .get_query(&second.id)
        .await
        .expect("get")
        .expect("there");
    assert_eq!(got, second);
    assert_eq!(got.tenant, acme);
    assert_eq!(got.token_id.as_deref(), Some(token.id.as_str()));
    assert_eq!(got.actor, format!("token:{}", token.id));
    assert_eq!(got.question, "and by customer?");
    assert_eq!(got.plan, follow_up.plan);
    assert_eq!(got.sql, follow_up.sql);
    assert_eq!(got.generator, "offline");
    assert_eq!((got.row_count, got.duration_ms), (12, 7));
    assert_eq!(got.outcome, QueryOutcome::Answered);
    assert_eq!(got.feedback_helpful, None);
    assert!(uuid::Uuid::parse_str(&got.id).is_ok(), "{}", got.id);
    let refused_got = store
        .get_query(&fourth.id)
        .await
        .expect("get")
        .expect("there");
    assert_eq!(refused_got.outcome, QueryOutcome::Refused);
    assert_eq!(refused_got.refusal_reason.as_deref(), Some("not_a_query"));
    let declined_got = store
        .get_query(&third.id)
        .await
        .expect("get")
        .expect("there");
    assert_eq!((declined_got.plan, declined_got.sql), (None, None));
    assert_eq!(operators.token_id, None);
    assert!(store.get_query("no-such-id").await.expect("get").is_none());

    // conversation: the turns in the order asked, only that conversation's.
    let turns = store.conversation("conv-1", &acme).await.expect("turns");
    let ids: Vec<&str> = turns.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, [&first.id, &second.id, &third.id, &fourth.id]);
    assert!(turns.windows(2).all(|w| w[0].created_at < w[1].created_at));
    assert_eq!(turns[1].question, "and by customer?");
    assert_eq!(turns[2].outcome, QueryOutcome::Declined);
    assert_eq!(turns[3].sql.as_deref(), Some("DROP TABLE fct_invoices"));
    assert_eq!(
        store
            .conversation("conv-2", &acme)
            .await
            .expect("turns")
            .len(),
        1
    );
    assert!(store
        .conversation("conv-none", &acme)
        .await
        .expect("turns")
        .is_empty());

    // conversation_turn_count and conversation_tail: counted and cut short
    // in the store, latest turns last.
    assert_eq!(
        store
            .conversation_turn_count("conv-1", &acme)
            .await
            .expect("count"),
        4
    );
    assert_eq!(
        store
            .conversation_turn_count("conv-none", &acme)
            .await
            .expect("count"),
        0
    );
    let tail = store
        .conversation_tail("conv-1", &acme, 2)
        .await
        .expect("tail");
    let ids: Vec<&str> = tail.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, [&third.id, &fourth.id]);
    assert_eq!(
        store
            .conversation_tail("conv-1", &acme, 10)
            .await
            .expect("tail")
            .len(),
        4
    );

    // latest_plan: the last answered turn's, not the declined or refused one's.
    let latest = store
        .latest_plan("conv-1", &acme)
        .await
        .expect("latest")
        .expect("a plan");
    assert_eq!(latest.id, second.id);
    assert_eq!(latest.plan, follow_up.plan);
    assert!(store
        .latest_plan("conv-none", &acme)
        .await
        .expect("latest")
        .is_none());

    // feedback: recorded for the right tenant, replaced by later feedback,
    // NotFound for the wrong tenant or an unknown id.
    let rated = store
        .set_query_feedback(&second.id, &acme, false, Some("missing credit notes"))
        .await
        .expect("feedback");
    assert_eq!(rated.feedback_helpful, Some(false));
    assert_eq!(
        rated.feedback_comment.as_deref(),
        Some("missing credit notes")
    );
    assert!(rated.feedback_at.is_some());
    let rated = store
        .set_query_feedback(&second.id, &acme, true, None)
        .await
        .expect("feedback");
    assert_eq!(rated.feedback_helpful, Some(true));
    assert_eq!(rated.feedback_comment, None);
    let stranger = TenantId::parse("stranger").expect("id");
    for (id, tenant) in [(second.id.as_str(), &stranger), ("no-such-id", &acme)] {
        match store.set_query_feedback(id, tenant, false, None).await {
            Err(e @ StoreError::QueryNotFound(_)) => {
                assert!(e.to_string().contains(id), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        store
            .get_query(&second.id)
            .await
            .expect("get")
            .expect("there")
            .feedback_helpful,
        Some(true)
    );

    // The audit outlives the tenant's teardown (its tokens do not).
    store.mark_deleting(&acme, false).await.expect("deleting");
    assert!(store.delete_tenant(&acme).await.expect("delete"));
    assert!(store.get_api_token(&token.id).await.expect("get").is_none());
    assert_eq!(
        store
            .conversation("conv-1", &acme)
            .await
            .expect("turns")
            .len(),
        4
    );
    assert!(store.get_query(&first.id).await.expect("get").is_some());
    // And is kept by the retention pass.
    store.prune(&Default::default()).await.expect("prune");
    assert_eq!(
        store
            .conversation("conv-1", &acme)
            .await
            .expect("turns")
            .len(),
        4
    );
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn tokens_through_the_cli(env: Env) {
    // The tenant must exist.
    let out = env.run(&["tokens", "issue", "ghost"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("tenant ghost does not exist"),
        "{}",
        text(&out.stderr)
    );
    let out = env.run(&["tokens", "list", "ghost"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let acme = env.tenant("acme").await;

    // issue: the secret alone on stdout, the warning on stderr.
    let out = env.run(&[
        "tokens",
        "issue",
        "acme",
        "--name",
        "dashboard",
        "--expires",
        "30d",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let secret = text(&out.stdout).trim().to_owned();
    assert!(
        secret.starts_with(TOKEN_PREFIX) && secret.len() == 47,
        "{secret}"
    );
    let said = text(&out.stderr);
    assert!(said.contains("shown this once"), "{said}");
    assert!(
        said.contains("dashboard") && said.contains("tok_"),
        "{said}"
    );
    assert!(!said.contains(&secret[4..]), "the secret on stderr");
    let found = tokens::authenticate(&env.platform.store, &secret)
        .await
        .expect("authenticate")
        .expect("the issued token authenticates");
    assert_eq!(found.tenant, acme);
    assert_eq!(found.name, "dashboard");
    assert!(found.expires_at.is_some());

    // --output json: the token with its secret.
    let out = env.run(&["tokens", "issue", "acme", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let issued: Value = serde_json::from_slice(&out.stdout).expect("json");
    let json_secret = issued["secret"].as_str().expect("secret").to_owned();
    let json_id = issued["id"].as_str().expect("id").to_owned();
    assert_eq!(issued["tenant"], "acme");
    assert_eq!(issued["name"], "default");
    assert!(issued["expires_at"].is_null());
    assert!(issued.get("token_hash").is_none());
    assert!(tokens::authenticate(&env.platform.store, &json_secret)
        .await
        .expect("authenticate")
        .is_some());

    // Bad input exits 2 and issues nothing.
    for args in [
        &["tokens", "issue", "acme", "--expires", "0"][..],
        &["tokens", "issue", "acme", "--expires", "forever"][..],
        &["tokens", "issue", "acme", "--expires", "99999d"][..],
        &["tokens", "issue", "acme", "--name", ""][..],
        &["tokens", "issue", "NOT-A-TENANT"][..],
    ] {
        let out = env.run(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }

    // list: both, never a secret or a hash, in JSON and in the table.
    let out = env.run(&["tokens", "list", "acme", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    let out_table = env.run(&["tokens", "list", "acme"]);
    assert_eq!(out_table.status.code(), Some(0));
    let table = text(&out_table.stdout);
    assert!(
        table.contains("dashboard") && table.contains(&json_id),
        "{table}"
    );
    assert!(table.contains("active"), "{table}");
    for s in [&secret, &json_secret] {
        for shown in [text(&out.stdout), table.clone()] {
            assert!(
                !shown.contains(&s[4..20]) && !shown.contains(&sha256_hex(s)),
                "{shown}"
            );
        }
    }

    // revoke: done, again done, an unknown id exits 1.
    let out = env.run(&["tokens", "revoke", &json_id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("revoked"),
        "{}",
        text(&out.stdout)
    );
    let out = env.run(&["tokens", "revoke", &json_id, "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let revoked: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let out = env.run(&["tokens", "revoke", "tok_0000000000000000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("does not exist"),
        "{}",
        text(&out.stderr)
    );
    assert!(tokens::authenticate(&env.platform.store, &json_secret)
        .await
        .expect("authenticate")
        .is_none());
    assert!(tokens::authenticate(&env.platform.store, &secret)
        .await
        .expect("authenticate")
        .is_some());
    let out = env.run(&["tokens", "list", "acme"]);
    assert!(
        text(&out.stdout).contains("revoked"),
        "{}",
        text(&out.stdout)
    );
}

// ----------------------------------------------------------------- logs

/// `serve` logging at trace level: issue, use, list and revoke tokens, and
/// neither a secret nor its hash (nor the operator token) is logged.
async fn no_secret_reaches_the_service_logs(env: Env) {
    env.tenant("acme").await;
    let server = serve(&env, "trace");
    let base = server.base.clone();
    let kept = issue(&base, "acme", json!({"name": "kept", "expires": "1d"})).await;
    let gone = issue(&base, "acme", json!({"name": "gone"})).await;
    let secret = kept["secret"].as_str().expect("secret").to_owned();
    let revoked = gone["secret"].as_str().expect("secret").to_owned();
    let tenant_url = format!("{base}/v1/tenants/acme");
    for s in [&secret, &revoked] {
        let (status, _) = call(reqwest::Method::GET, &tenant_url, s, None).await;
        assert_eq!(status, 403);
    }
    let (status, _) = call(
        reqwest::Method::DELETE,
        &format!("{base}/v1/tokens/{}", gone["id"].as_str().expect("id")),
        OPERATOR_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(reqwest::Method::GET, &tenant_url, &revoked, None).await;
    assert_eq!(status, 401);
    let (status, listed) = call(
        reqwest::Method::GET,
        &format!("{base}/v1/tenants/acme/tokens"),
        OPERATOR_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    let logs = server.stop();
    assert!(
        logs.contains("/v1/tenants/acme/tokens"),
        "no request logged:\n{logs}"
    );
    for s in [&secret, &revoked] {
        assert!(!logs.contains(&s[4..]), "a token secret was logged");
        assert!(!logs.contains(&sha256_hex(s)), "a token hash was logged");
    }
    assert!(
        !logs.contains(OPERATOR_TOKEN),
        "the operator token was logged"
    );
}
