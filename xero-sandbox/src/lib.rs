//! A local Xero: identity, connections and the Accounting API on one base
//! URL, over deterministic demo books, with Xero's limits, optional faults,
//! changes on request and signed webhooks. Used by the tests, the benchmarks
//! and the demo (binary `xero-sandbox`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), xero_sandbox::SandboxError> {
//! use xero_sandbox::{Sandbox, SandboxConfig};
//! let sandbox = Sandbox::start(SandboxConfig::new("client-id", "client-secret").invoices(2_500)).await?;
//! let endpoints = sandbox.endpoints(); // for OAuthConfig / XeroClient
//! let tenant = &sandbox.tenant_ids()[0];
//! # let _ = (endpoints, tenant);
//! # Ok(()) }
//! ```
//!
//! Paths (all under the base URL):
//!
//! | path | what |
//! | --- | --- |
//! | `GET /identity/connect/authorize` | consent: approve page, or a redirect with `auto_approve` |
//! | `POST /connect/token` | `authorization_code` (PKCE S256) and `refresh_token` grants |
//! | `POST /connect/revocation` | revokes a refresh token (the consent ends) |
//! | `GET /connections`, `DELETE /connections/{id}` | the consent's organisations |
//! | `GET /api.xro/2.0/{Resource}[/{id}]` | the Accounting API |
//! | `GET /sandbox` | base URL, organisations, endpoints |
//! | `GET /sandbox/books?tenant=&detail=` | ground-truth totals and consistency problems |
//! | `POST /sandbox/changes` | create/edit/void/pay invoices, edit/add contacts ([`ChangeRequest`]) |
//! | `GET`/`DELETE /sandbox/stats` | calls per path, statuses, 429s, faults, identity and webhook counters |
//! | `GET`/`POST /sandbox/faults` | fault injection ([`FaultSettings`]) |
//! | `GET`/`POST /sandbox/limits`, `POST /sandbox/limits/reset` | limits ([`SandboxLimits`]) |
//! | `PUT`/`DELETE /sandbox/webhooks`, `POST /sandbox/webhooks/intent` | webhook target and the intent-to-receive handshake |
//! | `POST /sandbox/tokens`, `POST /sandbox/tokens/expire` | a token set without the browser; expire access tokens |
//!
//! Xero's protocol facts (paths, headers, limits, paging, lifetimes, date
//! formats, the webhook signature) are the sandbox's own, in [`wire`], not
//! the client crate's: the `xero` crate is used only for the types callers
//! hand in and get back ([`SecretString`], [`TokenSet`], [`XeroEndpoints`]).

mod books;
mod changes;
mod chart;
mod gen;
mod html;
mod identity;
pub mod ledger;
mod model;
mod org;
mod query;
mod server;
mod traffic;
mod webhooks;
pub mod wire;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use changes::{ChangeReport, ChangeRequest, Changed, MAX_CHANGES_PER_KIND};
pub use identity::IdentityStats;
pub use ledger::Ledger;
pub use traffic::{FaultSettings, SandboxLimits};
pub use webhooks::{IntentResult, WebhookTarget};

use identity::{Identity, IdentityConfig};
use server::{read, Shared, Stats};
use traffic::{Faults, Limiter};
use xero::oauth::{OAuthError, XeroEndpoints};
use xero::secret::SecretString;
use xero::TokenSet;

/// Largest number of invoices per organisation the generator accepts.
pub const MAX_INVOICES: usize = 2_000_000;
/// Largest number of organisations.
pub const MAX_ORGANISATIONS: usize = 20;

/// Every read scope the sandbox knows (granular and legacy), plus
/// `offline_access`.
pub fn all_read_scopes() -> Vec<String> {
    let mut v: Vec<String> = wire::GRANULAR_READ_SCOPES
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.push(wire::TRANSACTIONS_READ.into());
    v.push(wire::OFFLINE_ACCESS.into());
    v
}

/// How to run a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where to listen (port 0 = a free port). Default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// The URL clients use, if not `http://<listen address>`.
    pub public_url: Option<String>,
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: SecretString,
    /// Redirect URIs the app registered (empty = any http(s) URI).
    pub redirect_uris: Vec<String>,
    /// Seed of the demo books (and of fault injection).
    pub seed: u64,
    /// Invoices per organisation.
    pub invoices: usize,
    /// Organisations (each consent grants the ones the user ticks; all with
    /// auto-approve).
    pub organisations: usize,
    /// Approve consents at once (a redirect instead of the approve page).
    pub auto_approve: bool,
    /// The generated books end before this day (default: today, UTC).
    pub as_of: Option<time::Date>,
    /// Access-token lifetime (Xero: 30 minutes).
    pub access_token_ttl: Duration,
    /// How long a rotated refresh token stays usable (Xero: 30 minutes).
    pub refresh_grace: Duration,
    /// Lifetime of an unused refresh token (Xero: 60 days).
    pub refresh_token_ttl: Duration,
    /// Lifetime of an authorization code.
    pub code_ttl: Duration,
    /// Rate limits.
    pub limits: SandboxLimits,
    /// Fault injection.
    pub faults: FaultSettings,
    /// Where to send webhooks.
    pub webhook: Option<WebhookTarget>,
}

impl SandboxConfig {
    /// Defaults: 127.0.0.1 on a free port, seed 1, 1,000 invoices, one
    /// organisation, Xero's lifetimes and limits, no faults, no webhooks.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<SecretString>) -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            public_url: None,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            redirect_uris: Vec::new(),
            seed: 1,
            invoices: 1_000,
            organisations: 1,
            auto_approve: false,
            as_of: None,
            access_token_ttl: Duration::from_secs(wire::ACCESS_TOKEN_TTL_SECS),
            refresh_grace: Duration::from_secs(wire::REFRESH_GRACE_SECS),
            refresh_token_ttl: Duration::from_secs(wire::REFRESH_TOKEN_TTL_SECS),
            code_ttl: Duration::from_secs(5 * 60),
            limits: SandboxLimits::default(),
            faults: FaultSettings::default(),
            webhook: None,
        }
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the number of invoices per organisation.
    pub fn invoices(mut self, n: usize) -> Self {
        self.invoices = n;
        self
    }

    /// Sets the number of organisations.
    pub fn organisations(mut self, n: usize) -> Self {
        self.organisations = n;
        self
    }

    /// Approves consents at once.
    pub fn auto_approve(mut self, yes: bool) -> Self {
        self.auto_approve = yes;
        self
    }

    /// Sets the limits.
    pub fn limits(mut self, limits: SandboxLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the webhook target and its signing key.
    pub fn webhook(mut self, url: impl Into<String>, key: impl Into<SecretString>) -> Self {
        self.webhook = Some(WebhookTarget {
            url: url.into(),
            key: key.into(),
        });
        self
    }

    /// Sets the as-of day.
    pub fn as_of(mut self, day: time::Date) -> Self {
        self.as_of = Some(day);
        self
    }
}

/// Why a sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A setting is out of range.
    #[error("invalid sandbox configuration: {0}")]
    Config(String),
    /// Binding the address failed.
    #[error("could not listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Generating the books failed (a panic in the generator).
    #[error("generating the demo books failed")]
    Generate,
    /// Webhook delivery or another runtime failure.
    #[error("sandbox failure: {0}")]
    Runtime(String),
}

/// A running sandbox. Dropping it stops the server.
pub struct Sandbox {
    addr: SocketAddr,
    base_url: String,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("base_url", &self.base_url)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

fn generate_all(config: &SandboxConfig, as_of_ms: i64) -> Vec<org::OrgData> {
    let cfgs: Vec<gen::GenConfig> = (0..config.organisations)
        .map(|org_index| gen::GenConfig {
            seed: config.seed,
            org_index,
            invoices: config.invoices,
            as_of_ms,
        })
        .collect();
    if cfgs.len() == 1 {
        return cfgs.iter().map(gen::generate).collect();
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = cfgs
            .iter()
            .map(|c| scope.spawn(move || gen::generate(c)))
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    })
}

impl Sandbox {
    /// Generates the books, binds and serves. Returns once the server
    /// accepts connections.
    pub async fn start(config: SandboxConfig) -> Result<Self, SandboxError> {
        if config.client_id.is_empty() || config.client_secret.is_empty() {
            return Err(SandboxError::Config(
                "client id and secret must not be empty".into(),
            ));
        }
        if config.invoices > MAX_INVOICES {
            return Err(SandboxError::Config(format!(
                "at most {MAX_INVOICES} invoices"
            )));
        }
        if config.organisations == 0 || config.organisations > MAX_ORGANISATIONS {
            return Err(SandboxError::Config(format!(
                "1 to {MAX_ORGANISATIONS} organisations"
            )));
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| SandboxError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
            addr: config.listen,
            source,
        })?;
        let base_url = config
            .public_url
            .clone()
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| format!("http://{addr}"));
        let as_of = config
            .as_of
            .unwrap_or_else(|| OffsetDateTime::now_utc().date());
        let as_of_ms = (as_of.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        let gen_config = config.clone();
        let orgs = tokio::task::spawn_blocking(move || generate_all(&gen_config, as_of_ms))
            .await
            .map_err(|_| SandboxError::Generate)?;
        if orgs.len() != config.organisations {
            return Err(SandboxError::Generate);
        }
        let tenant_index: HashMap<_, _> = orgs
            .iter()
            .enumerate()
            .map(|(i, o)| (o.tenant_id(), i))
            .collect();
        let tenant_names = orgs
            .iter()
            .map(|o| (o.tenant_id(), o.org.name.clone()))
            .collect();
        let shared = Arc::new(Shared {
            base_url: base_url.clone(),
            orgs: orgs.into_iter().map(RwLock::new).collect(),
            tenant_index,
            tenant_names,
            identity: Identity::new(IdentityConfig {
                client_id: config.client_id.clone(),
                client_secret: config.client_secret.clone(),
                redirect_uris: config.redirect_uris.clone(),
                auto_approve: config.auto_approve,
                access_token_ttl: config.access_token_ttl,
                refresh_grace: config.refresh_grace,
                refresh_token_ttl: config.refresh_token_ttl,
                code_ttl: config.code_ttl,
            }),
            limiter: Limiter::new(config.limits),
            faults: Faults::new(config.faults, config.seed),
            webhooks: webhooks::Webhooks::new(config.webhook.clone()),
            stats: Mutex::new(Stats::default()),
        });
        let app = server::router(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "xero sandbox server stopped");
            }
        });
        Ok(Self {
            addr,
            base_url,
            shared,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every Xero endpoint under this sandbox.
    pub fn endpoints(&self) -> Result<XeroEndpoints, OAuthError> {
        XeroEndpoints::from_base(&self.base_url)
    }

    /// The Accounting API base (`…/api.xro/2.0`).
    pub fn api_base(&self) -> String {
        format!("{}{}", self.base_url, wire::API_PATH)
    }

    /// The organisations' ids (`xero-tenant-id` values).
    pub fn tenant_ids(&self) -> Vec<String> {
        self.shared
            .orgs
            .iter()
            .map(|o| read(o).tenant_id().to_string())
            .collect()
    }

    /// The organisations: (tenant id, name).
    pub fn organisations(&self) -> Vec<(String, String)> {
        self.shared
            .orgs
            .iter()
            .map(|o| {
                let o = read(o);
                (o.tenant_id().to_string(), o.org.name.clone())
            })
            .collect()
    }

    /// A token set as if a user had consented to `scopes` (all read scopes
    /// when `None`) for every organisation: for tests that are not about
    /// the consent flow.
    pub fn issue_tokens(&self, scopes: Option<Vec<String>>) -> TokenSet {
        let tenants: Vec<_> = self
            .shared
            .orgs
            .iter()
            .map(|o| read(o).tenant_id())
            .collect();
        let t = self
            .shared
            .identity
            .grant_directly(tenants.clone(), scopes.unwrap_or_else(all_read_scopes));
        TokenSet {
            access_token: SecretString::new(t.access_token),
            refresh_token: SecretString::new(t.refresh_token.unwrap_or_default()),
            expires_at: OffsetDateTime::now_utc() + time::Duration::seconds(t.expires_in as i64),
            scopes: t.scope.split_whitespace().map(str::to_owned).collect(),
            tenant_ids: tenants.iter().map(ToString::to_string).collect(),
        }
    }

    /// Applies changes (as `POST /sandbox/changes`).
    pub async fn apply_changes(&self, req: &ChangeRequest) -> Result<ChangeReport, SandboxError> {
        self.shared
            .apply_changes(req)
            .await
            .map_err(SandboxError::Runtime)
    }

    /// The ground truth (as `GET /sandbox/books`); `None` for an unknown
    /// tenant.
    pub fn books(&self, tenant: Option<&str>, detail: bool) -> Option<serde_json::Value> {
        let i = self.shared.org_index(tenant)?;
        Some(books::books(&read(&self.shared.orgs[i]), detail))
    }

    /// A read-only snapshot of an organisation's records, for tests that
    /// compute expected answers from the books themselves; `None` for an
    /// unknown tenant.
    pub fn ledger(&self, tenant: Option<&str>) -> Option<Ledger> {
        let i = self.shared.org_index(tenant)?;
        Some(ledger::snapshot(&read(&self.shared.orgs[i])))
    }

    /// Consistency problems of an organisation's books (empty when sound).
    pub fn problems(&self, tenant: Option<&str>) -> Option<Vec<String>> {
        let i = self.shared.org_index(tenant)?;
        Some(books::problems(&read(&self.shared.orgs[i])))
    }

    /// Replaces the fault settings.
    pub fn set_faults(&self, faults: FaultSettings) {
        self.shared.faults.set(faults);
    }

    /// Replaces the limits (counted calls are kept).
    pub fn set_limits(&self, limits: SandboxLimits) {
        self.shared.limiter.set_config(limits);
    }

    /// Forgets counted calls.
    pub fn reset_limits(&self) {
        self.shared.limiter.reset();
    }

    /// Sets (or clears) the webhook target.
    pub fn set_webhook(&self, target: Option<WebhookTarget>) {
        self.shared.webhooks.set_target(target);
    }

    /// Runs the intent-to-receive handshake against the webhook target.
    pub async fn webhook_intent(&self) -> Option<IntentResult> {
        self.shared.webhooks.intent().await
    }

    /// What the identity service did: refreshes (and how many used the
    /// previous token within its grace), `invalid_grant` answers…
    pub fn identity_stats(&self) -> IdentityStats {
        self.shared.identity.stats()
    }

    /// Requests served per path (`GET /api.xro/2.0/Invoices` …).
    pub fn calls(&self, path: &str) -> u64 {
        self.shared
            .stats
            .lock()
            .map(|s| s.calls.get(path).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// 429s served per problem (`minute`, `day`, `appminute`).
    pub fn rate_limited(&self, problem: &str) -> u64 {
        self.shared
            .stats
            .lock()
            .map(|s| s.rate_limited.get(problem).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Resets the request counters.
    pub fn reset_stats(&self) {
        if let Ok(mut s) = self.shared.stats.lock() {
            *s = Stats::default();
        }
    }

    /// Stops accepting, lets requests in flight finish (up to 5 s).
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
