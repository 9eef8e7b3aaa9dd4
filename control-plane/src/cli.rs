//! The operator CLI: `control-plane tenants provision|teardown|list|show|reconcile`,
//! `cells add|list|show|drain|activate`, and more (`--help`).
//!
//! Exit codes: 0 success, 1 failure, 2 usage or invalid input.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use cloud::naming::{DeploymentPrefix, TenantId};
use cloud_adapters::AdapterKind;
use job_contract::env as job_env;
use job_contract::RunCommand;
use xero::oauth::OAuthClient;
use xero::secret::SecretString;

use crate::output::{self, OutputFormat, TenantView};
use crate::platform::{Platform, PlatformConfig};
use crate::reconciler::{Event, EventOutcome, Settings, TenantReport};
use crate::runs::{RunError, RunSettings};
use crate::service::{self, ServiceError};
use crate::store::{RunStatus, RunTrigger};

// Bounds of operator-given durations: beyond them a value is a mistake, and
// a huge one would overflow the deadline or duration computed from it.

/// `runs start --wait-secs` at most: a week.
const WAIT_SECS_MAX: u64 = 7 * 24 * 3600;
/// `--query-timeout-secs` at most: an hour, for a question asked over HTTP.
const QUERY_TIMEOUT_SECS_MAX: u64 = 3600;
/// `--token-max-idle-hours` at most: 59 days, since Xero's refresh tokens
/// die after 60 days unused (and the check runs hourly).
const TOKEN_MAX_IDLE_HOURS_MAX: u64 = 59 * 24;
/// `serve --resync-secs` and `--local-tick-secs` at most: a day, past which
/// unsettled tenants or due syncs would wait longer than anyone means.
const DAY_SECS: u64 = 24 * 3600;

/// Debug by hand: `--database-url` may hold a password.
#[derive(Parser)]
#[command(
    name = "control-plane",
    version,
    about = "ledgerlake control plane: per-tenant cloud provisioning for Xero analytics"
)]
pub struct Cli {
    /// The cloud adapter: local (embedded, the default) or gcp.
    #[arg(long, env = "LEDGERLAKE_CLOUD", default_value = "local", global = true)]
    pub cloud: AdapterKind,
    /// Where the local cloud and the default state store live.
    #[arg(
        long,
        env = "LEDGERLAKE_DATA_DIR",
        default_value = ".ledgerlake",
        global = true
    )]
    pub data_dir: PathBuf,
    /// State store: sqlite://PATH (default: state.db in the data directory) or postgres://…
    #[arg(
        long,
        env = "LEDGERLAKE_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<String>,
    /// Prefix of globally unique names: buckets become {prefix}-client-{id}-bucket.
    #[arg(long, env = "LEDGERLAKE_BUCKET_PREFIX", global = true)]
    pub bucket_prefix: Option<DeploymentPrefix>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, global = true)]
    pub output: OutputFormat,
    /// Seconds a tenant lease lives unrenewed: how soon a killed run's tenants are freed.
    #[arg(long, env = "LEDGERLAKE_LEASE_TTL_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub lease_ttl_secs: u64,
    #[command(subcommand)]
    pub command: Command,
}

impl std::fmt::Debug for Cli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cli")
            .field("cloud", &self.cloud)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(crate::store::redact_url),
            )
            .field("bucket_prefix", &self.bucket_prefix)
            .field("output", &self.output)
            .field("lease_ttl_secs", &self.lease_ttl_secs)
            .field("command", &self.command)
            .finish()
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service: Xero onboarding, webhooks, the operator API and the workers.
    Serve(ServeArgs),
    /// Provision, inspect, reconcile and tear down tenants.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Start and inspect ingestion and transformation runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Issue, list and revoke tenants' API tokens (the query service's credentials).
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Ask a question of a tenant's books, answered as that tenant (and audited).
    Query(QueryCommandArgs),
    /// Register the cells (GCP projects with a region) tenants are placed in;
    /// list them; close them to new tenants or open them again.
    #[command(subcommand)]
    Cells(CellsCommand),
    /// The local cloud's encryption of secrets at rest.
    #[command(subcommand)]
    Secrets(SecretsCommand),
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Re-encrypt every secret of the data directory under a new master key.
    /// The key file's key is replaced by a generated one; a key set in
    /// LEDGERLAKE_MASTER_KEY is replaced by LEDGERLAKE_NEW_MASTER_KEY (then
    /// set that everywhere the data directory is opened). Stop the service
    /// first; refused while a run may still write. Run it again to finish
    /// an interrupted rotation.
    RotateMasterKey,
}

#[derive(Debug, Subcommand)]
pub enum CellsCommand {
    /// Register a cell, active: new tenants go to the active cell with the most room.
    Add {
        /// e.g. cell-eu1-001
        id: String,
        /// The GCP project id (one cell per project: its quotas are the cell's).
        #[arg(long)]
        project: String,
        /// e.g. europe-west1
        #[arg(long)]
        region: String,
        /// Tenants at most (Google's default quota: 100 service accounts a project).
        #[arg(long, default_value_t = service::cells::DEFAULT_CAPACITY)]
        capacity: i64,
    },
    /// Every cell: state, tenants, room.
    List,
    /// One cell and its tenants.
    Show { id: String },
    /// Close a cell to new tenants; its tenants stay.
    Drain { id: String },
    /// Open a cell to new tenants again (one without room stays full).
    Activate { id: String },
    /// Write the Xero app's client secret (LEDGERLAKE_XERO_CLIENT_SECRET) into
    /// every cell, or one, where tenant jobs read it: after a rotation, or
    /// when a cell was added without it. Unchanged cells are left alone.
    SyncSecret {
        /// Only this cell.
        #[arg(long)]
        cell: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct QueryCommandArgs {
    tenant: TenantId,
    /// The question, in plain language ("top 10 customers by revenue last quarter").
    question: String,
    /// What "today" is for the question (YYYY-MM-DD; default today, UTC).
    #[arg(long)]
    as_of: Option<String>,
    /// offline (the planner), llm, or auto (the planner, then an LLM for what it declines).
    #[arg(long, value_enum, default_value = "auto")]
    generator: GeneratorArg,
    /// Continue a conversation (its id is printed with every answer).
    #[arg(long)]
    conversation: Option<String>,
    #[command(flatten)]
    query: QueryArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GeneratorArg {
    Auto,
    Offline,
    Llm,
}

impl From<GeneratorArg> for query::engine::GeneratorChoice {
    fn from(g: GeneratorArg) -> Self {
        match g {
            GeneratorArg::Auto => query::engine::GeneratorChoice::Auto,
            GeneratorArg::Offline => query::engine::GeneratorChoice::Offline,
            GeneratorArg::Llm => query::engine::GeneratorChoice::Llm,
        }
    }
}

/// What `serve` runs: everything, the control plane only, or the query routes only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServeRole {
    All,
    Control,
    Query,
}

/// The query engine: its limits and its LLM (none is called unless configured).
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// openai (and compatible servers), vertex or anthropic.
    #[arg(long, env = "LEDGERLAKE_LLM_PROVIDER")]
    llm_provider: Option<String>,
    #[arg(long, env = "LEDGERLAKE_LLM_BASE_URL")]
    llm_base_url: Option<String>,
    #[arg(long, env = "LEDGERLAKE_LLM_MODEL")]
    llm_model: Option<String>,
    /// Prefer the environment: a flag's value is visible to other local users.
    #[arg(long, env = "LEDGERLAKE_LLM_API_KEY", hide_env_values = true)]
    llm_api_key: Option<SecretString>,
    /// Tenants whose questions never go to an LLM (comma-separated ids).
    #[arg(long, env = "LEDGERLAKE_QUERY_OFFLINE_TENANTS", value_delimiter = ',')]
    offline_tenants: Vec<String>,
    /// Rows an answer returns at most.
    #[arg(long, env = "LEDGERLAKE_QUERY_MAX_ROWS", default_value_t = 1000)]
    query_max_rows: usize,
    /// Seconds a query may run (1 to 3600).
    #[arg(long, env = "LEDGERLAKE_QUERY_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=QUERY_TIMEOUT_SECS_MAX))]
    query_timeout_secs: u64,
}

impl QueryArgs {
    fn settings(&self) -> Result<crate::server::QuerySettings, CliFailure> {
        use query::llm::{config::env as llm_env, LlmConfig};
        let flag = |name: &str| -> Option<String> {
            match name {
                n if n == llm_env::PROVIDER => self.llm_provider.clone(),
                n if n == llm_env::BASE_URL => self.llm_base_url.clone(),
                n if n == llm_env::MODEL => self.llm_model.clone(),
                n if n == llm_env::API_KEY => self
                    .llm_api_key
                    .as_ref()
                    .map(|key| key.expose_secret().to_owned()),
                _ => None,
            }
            .or_else(|| std::env::var(name).ok())
        };
        let llm = LlmConfig::from_lookup(flag)
            .map_err(|e| CliFailure::Usage(format!("LLM settings: {e}")))?
            .map(|config| query::llm::build_provider(&config))
            .transpose()
            .map_err(|e| CliFailure::Usage(format!("LLM provider: {e}")))?;
        // --query-timeout-secs is bounded by its parser.
        if self.query_max_rows == 0 {
            return Err(CliFailure::Usage(
                "--query-max-rows must be at least 1".to_owned(),
            ));
        }
        Ok(crate::server::QuerySettings {
            engine: query::engine::EngineConfig {
                max_rows: self.query_max_rows,
                timeout: std::time::Duration::from_secs(self.query_timeout_secs),
                ..Default::default()
            },
            llm,
            offline_only: self
                .offline_tenants
                .iter()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Issue an API token for a tenant; its secret is printed once, and only its hash is kept.
    Issue {
        tenant: TenantId,
        #[arg(long)]
        name: Option<String>,
        /// How long it lives: 30d, 12h, 90m or seconds; without it, it does not expire.
        #[arg(long)]
        expires: Option<String>,
    },
    /// A tenant's tokens (never their secrets).
    List { tenant: TenantId },
    /// Revoke a token: from now on it authenticates nothing.
    Revoke { token_id: String },
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Start a run of a tenant's job (one run per tenant at a time).
    Start {
        tenant: TenantId,
        #[arg(value_enum)]
        command: RunCommand,
        /// Wait for the run to end; the exit code then reflects the run.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this many seconds (1 to 604800, a week).
        #[arg(long, default_value_t = 3600, requires = "wait", value_parser = clap::value_parser!(u64).range(1..=WAIT_SECS_MAX))]
        wait_secs: u64,
    },
    /// The newest runs, of one tenant or all.
    List {
        #[arg(long)]
        tenant: Option<TenantId>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One run: status, per-resource counts, duration, error.
    Show { run_id: String },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port and prints it).
    #[arg(long, env = "LEDGERLAKE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// The base URL browsers and Xero reach this service at; defaults to http://<listen>.
    #[arg(long, env = "LEDGERLAKE_PUBLIC_URL")]
    public_url: Option<String>,
    #[command(flatten)]
    xero: XeroAppArgs,
    #[arg(long, env = "LEDGERLAKE_XERO_WEBHOOK_KEY", hide_env_values = true)]
    xero_webhook_key: Option<SecretString>,
    /// Bearer token of the operator API.
    #[arg(long, env = "LEDGERLAKE_OPERATOR_TOKEN", hide_env_values = true)]
    operator_token: Option<SecretString>,
    /// Bearer token that may read /metrics only (a Prometheus scraper's); the
    /// operator token may too.
    #[arg(long, env = "LEDGERLAKE_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<SecretString>,
    /// Tenants reconciled at once by the background workers.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Seconds between looks for unsettled tenants (also resumes interrupted
    /// work): 1 to 86400, a day.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=DAY_SECS))]
    resync_secs: u64,
    /// Refresh a tenant's Xero token set when it has not been refreshed for
    /// this many hours (1 to 1416, 59 days: refresh tokens die after 60 days
    /// unused).
    #[arg(long, default_value_t = 7 * 24, value_parser = clap::value_parser!(u64).range(1..=TOKEN_MAX_IDLE_HOURS_MAX))]
    token_max_idle_hours: u64,
    /// Tick the scheduler every this many seconds in this process (a local
    /// deployment), at most 86400 (a day); 0 leaves it to Cloud Scheduler calling
    /// POST /v1/scheduler/tick.
    #[arg(long, env = "LEDGERLAKE_LOCAL_TICK_SECS", default_value_t = crate::scheduler::LOCAL_TICK.as_secs(), value_parser = clap::value_parser!(u64).range(0..=DAY_SECS))]
    local_tick_secs: u64,
    /// The cron schedule (UTC) of tenants without their own.
    #[arg(long, env = "LEDGERLAKE_DEFAULT_SCHEDULE", default_value = crate::scheduler::DEFAULT_SCHEDULE)]
    default_schedule: String,
    /// Cloud Scheduler's identity (boxed: [`ServeArgs`] is large).
    #[command(flatten)]
    scheduler_caller: Box<SchedulerCallerArgs>,
    /// Connections, timeouts, body sizes, requests at once.
    #[command(flatten)]
    limits: Box<LimitArgs>,
    /// all: every route and worker; control: no query routes; query: only
    /// the query routes (a service scaled apart, against the same state store).
    #[arg(long, env = "LEDGERLAKE_SERVE_ROLE", value_enum, default_value = "all")]
    role: ServeRole,
    #[command(flatten)]
    query: QueryArgs,
}

/// Who may call the tick with an ID token instead of the operator token.
#[derive(Debug, Args)]
pub struct SchedulerCallerArgs {
    /// Cloud Scheduler's calls: the audience of its ID tokens (usually the
    /// tick's URL). With --scheduler-service-account, the tick also takes
    /// its Google-signed ID token.
    #[arg(long, env = "LEDGERLAKE_SCHEDULER_AUDIENCE")]
    scheduler_audience: Option<String>,
    /// The email of the service account Cloud Scheduler calls the tick as.
    #[arg(long, env = "LEDGERLAKE_SCHEDULER_SERVICE_ACCOUNT")]
    scheduler_service_account: Option<String>,
    /// Where Google publishes the keys of its ID tokens.
    #[arg(long, env = "LEDGERLAKE_GOOGLE_JWKS_URL", default_value = crate::server::oidc::GOOGLE_JWKS_URL)]
    google_jwks_url: String,
}

/// The Xero app: `serve` runs consent and refreshes with it, `tenants
/// teardown` tells Xero with it that a tenant is gone.
#[derive(Debug, Args)]
pub struct XeroAppArgs {
    #[arg(long, env = "LEDGERLAKE_XERO_CLIENT_ID")]
    xero_client_id: Option<String>,
    #[arg(long, env = "LEDGERLAKE_XERO_CLIENT_SECRET", hide_env_values = true)]
    xero_client_secret: Option<SecretString>,
    /// One base URL for every Xero host (identity, login, API), e.g. a local xero-sandbox.
    #[arg(long, env = "LEDGERLAKE_XERO_ENDPOINT")]
    xero_endpoint: Option<String>,
    /// Request the legacy `accounting.transactions.read` scope (apps created before March 2026).
    #[arg(long, env = "LEDGERLAKE_XERO_LEGACY_SCOPES")]
    xero_legacy_scopes: bool,
}

impl XeroAppArgs {
    /// The app's OAuth client, Xero redirecting browsers to `public_url`;
    /// `None` when no app is configured (neither id nor secret).
    fn oauth_client(&self, public_url: &str) -> Result<Option<OAuthClient>, CliFailure> {
        use xero::oauth::{OAuthConfig, Scopes, XeroEndpoints};

        let (id, secret) = match (&self.xero_client_id, &self.xero_client_secret) {
            (Some(id), Some(secret)) => (id, secret),
            (None, None) => return Ok(None),
            _ => return Err(CliFailure::Usage(
                "set both LEDGERLAKE_XERO_CLIENT_ID and LEDGERLAKE_XERO_CLIENT_SECRET, or neither"
                    .to_owned(),
            )),
        };
        let redirect = format!("{}/oauth/xero/callback", public_url.trim_end_matches('/'));
        let redirect = redirect.parse().map_err(|e| {
            CliFailure::Usage(format!(
                "LEDGERLAKE_PUBLIC_URL does not make a valid redirect URI: {e}"
            ))
        })?;
        let mut config = OAuthConfig::new(id.clone(), secret.clone(), redirect);
        if let Some(base) = &self.xero_endpoint {
            let endpoints = XeroEndpoints::from_base(base)
                .map_err(|e| CliFailure::Usage(format!("LEDGERLAKE_XERO_ENDPOINT: {e}")))?;
            config = config.with_endpoints(endpoints);
        }
        if self.xero_legacy_scopes {
            config = config.with_scopes(Scopes::legacy());
        }
        Ok(Some(
            OAuthClient::new(config).context("configuring the Xero OAuth client")?,
        ))
    }
}

/// The limits of `serve` (boxed in [`ServeArgs`]: they are many).
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Connections open at once; one more is answered 503 and closed (lowered
    /// to fit the open-file limit).
    #[arg(long, env = "LEDGERLAKE_MAX_CONNECTIONS", default_value_t = crate::server::ServeLimits::MAX_CONNECTIONS as u64, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
    /// Seconds a client has to send a complete request head, from the
    /// connection's opening or the end of the previous response.
    #[arg(long, env = "LEDGERLAKE_HEADER_READ_TIMEOUT_SECS", default_value_t = crate::server::ServeLimits::HEADER_READ_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_read_timeout_secs: u64,
    /// Seconds an idle connection is kept open.
    #[arg(long, env = "LEDGERLAKE_KEEP_ALIVE_SECS", default_value_t = crate::server::ServeLimits::KEEP_ALIVE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    keep_alive_secs: u64,
    /// Seconds a response write may make no progress (the client reads
    /// nothing) before its connection is dropped.
    #[arg(long, env = "LEDGERLAKE_STALLED_WRITE_SECS", default_value_t = crate::server::ServeLimits::STALLED_WRITE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    stalled_write_secs: u64,
    /// The largest request body accepted by any route, in bytes.
    #[arg(long, env = "LEDGERLAKE_MAX_BODY_BYTES", default_value_t = crate::server::ServeLimits::MAX_BODY_BYTES as u64, value_parser = clap::value_parser!(u64).range(1024..=(1 << 30)))]
    max_body_bytes: u64,
    /// Requests at once to the unauthenticated routes (onboarding, webhooks);
    /// more are answered 503.
    #[arg(long, env = "LEDGERLAKE_MAX_CONCURRENT_PUBLIC", default_value_t = crate::server::ServeLimits::PUBLIC_CONCURRENCY as u64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    max_concurrent_public: u64,
    /// Requests at once to the operator API; more are answered 503.
    #[arg(long, env = "LEDGERLAKE_MAX_CONCURRENT_OPERATOR", default_value_t = crate::server::ServeLimits::OPERATOR_CONCURRENCY as u64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    max_concurrent_operator: u64,
    /// Requests a minute one client address may make to the unauthenticated
    /// routes (consent, callback, onboarding status, webhooks); more get 429.
    #[arg(long, env = "LEDGERLAKE_PUBLIC_RATE_PER_MINUTE", default_value_t = crate::server::ServeLimits::PUBLIC_PER_CLIENT_PER_MINUTE, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    public_rate_per_minute: u32,
    /// Take clients' addresses from the right-most X-Forwarded-For entry
    /// (only behind exactly one trusted proxy or load balancer that appends
    /// it, such as Cloud Run's; entries to its left are the client's own).
    #[arg(long, env = "LEDGERLAKE_TRUST_FORWARDED_FOR")]
    trust_forwarded_for: bool,
}

impl LimitArgs {
    fn limits(&self) -> crate::server::ServeLimits {
        use std::time::Duration;
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        crate::server::ServeLimits {
            max_connections: count(self.max_connections),
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            keep_alive_timeout: Duration::from_secs(self.keep_alive_secs),
            stalled_write_timeout: Duration::from_secs(self.stalled_write_secs),
            max_body_bytes: count(self.max_body_bytes),
            public_concurrency: count(self.max_concurrent_public),
            operator_concurrency: count(self.max_concurrent_operator),
            public_per_client_per_minute: self.public_rate_per_minute,
            trust_forwarded_for: self.trust_forwarded_for,
            ..Default::default()
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Record tenants as wanted and provision them (a no-op for a Ready tenant).
    Provision {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<TenantId>,
        /// Tenants provisioned at once. Every cloud call is paced by its
        /// project's quotas whatever this is, so more only helps up to them.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=512))]
        concurrency: u16,
    },
    /// Remove a tenant's resources and then the tenant. With a Xero app
    /// configured, the tenant's Xero connections are deleted and its refresh
    /// token revoked first (a failure there is reported, not fatal).
    Teardown {
        id: TenantId,
        /// Keep the bucket and both datasets (their IAM bindings still go).
        #[arg(long)]
        keep_data: bool,
        /// Confirm the teardown.
        #[arg(long)]
        yes: bool,
        /// Cancel the tenant's run in progress first (without it, a tenant
        /// with a run in progress is not torn down).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        xero: XeroAppArgs,
    },
    /// List tenants with their phase, by id (every tenant, or one page of
    /// them with --limit or --after).
    List {
        /// Tenants in the page (1 to 1,000).
        #[arg(long)]
        limit: Option<u32>,
        /// Start the page after this tenant id (the cursor the previous
        /// page printed).
        #[arg(long)]
        after: Option<TenantId>,
    },
    /// Show a tenant and the condition of each of its resources.
    Show { id: TenantId },
    /// Drive tenants to their desired state again (repairs drift, resumes crashes).
    Reconcile(ReconcileTarget),
    /// Mint a single-use link that starts Xero consent for a tenant (which the
    /// consent creates if it does not exist yet). Shown once.
    ConnectLink {
        id: TenantId,
        /// How long the link lives: 7d, 12h, 90m or seconds (at most 30d).
        #[arg(long, default_value = "7d")]
        expires: String,
        /// The base URL the client's browser reaches the service at.
        #[arg(
            long,
            env = "LEDGERLAKE_PUBLIC_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        public_url: String,
    },
    /// Forget a tenant's Xero organisations, so that it may connect another.
    Disconnect {
        id: TenantId,
        /// Confirm: the tenant's next consent may bring another organisation's books.
        #[arg(long)]
        yes: bool,
    },
    /// Set when a tenant syncs: a cron schedule in UTC ("0 */6 * * *"), or
    /// `--default` for the deployment's default (hourly).
    Schedule {
        id: TenantId,
        #[arg(required_unless_present = "default", conflicts_with = "default")]
        schedule: Option<String>,
        #[arg(long)]
        default: bool,
    },
    /// Print a tenant's resources as Terraform: a call of
    /// terraform/modules/tenant with the reconciler's own plan for it, and an
    /// import block for each resource, so `terraform apply` adopts them.
    ExportTerraform {
        id: TenantId,
        /// The control service's account email (the control_plane module's
        /// control_service_account_email output), owner of the datasets.
        #[arg(long, env = "LEDGERLAKE_PLATFORM_ACCOUNT")]
        platform_account: String,
        /// The module's source, from the root the output goes into.
        #[arg(long, default_value = service::terraform::DEFAULT_MODULE_SOURCE)]
        module_source: String,
        /// Buckets' and datasets' location (default: the gcp adapter's,
        /// LEDGERLAKE_GCP_LOCATION).
        #[arg(long)]
        location: Option<String>,
    },
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ReconcileTarget {
    id: Option<TenantId>,
    /// Every tenant in the store.
    #[arg(long)]
    all: bool,
}

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub enum CliFailure {
    /// Bad input: exit 2.
    Usage(String),
    /// The operation failed: exit 1.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for CliFailure {
    fn from(e: anyhow::Error) -> Self {
        CliFailure::Failed(e)
    }
}

/// A service error as the CLI exits with it: bad input 2; what does not
/// exist or cannot be done now 1, as it is; anything else 1, with `context`.
fn service_failure(e: ServiceError, context: &'static str) -> CliFailure {
    match e {
        e @ ServiceError::Invalid { .. } => usage(e),
        e @ (ServiceError::NotFound { .. } | ServiceError::Conflict { .. }) => {
            CliFailure::Failed(anyhow::Error::new(e))
        }
        e => CliFailure::Failed(anyhow::Error::new(e).context(context)),
    }
}

fn usage(e: ServiceError) -> CliFailure {
    CliFailure::Usage(e.to_string())
}

fn actor() -> String {
    std::env::var("USER").unwrap_or_else(|_| "operator".to_owned())
}

pub async fn run(cli: Cli) -> Result<(), CliFailure> {
    let config = PlatformConfig {
        cloud: cli.cloud,
        data_dir: cli.data_dir.clone(),
        database_url: cli.database_url.clone(),
        bucket_prefix: cli.bucket_prefix.clone(),
        master_key: std::env::var("LEDGERLAKE_MASTER_KEY").ok(),
    };
    if let Command::Tenants(TenantsCommand::Teardown { id, yes: false, .. }) = &cli.command {
        return Err(CliFailure::Usage(format!(
            "refusing to tear down tenant {id} without --yes"
        )));
    }
    if let Command::Secrets(SecretsCommand::RotateMasterKey) = &cli.command {
        return rotate_master_key(config, cli.output).await;
    }
    let platform = Platform::open(config)
        .await
        .context("cannot open the platform; nothing was changed")?;
    let mut settings = Settings {
        lease_ttl: std::time::Duration::from_secs(cli.lease_ttl_secs),
        ..Settings::default()
    };
    // Plain settings for every run of the tenants' jobs, written into their
    // job definitions: a job receives nothing else from this process.
    settings.jobs.xero_endpoint = std::env::var(job_env::XERO_ENDPOINT).ok();
    if let Ok(n) = std::env::var(job_env::XERO_PER_MINUTE) {
        let n = n.trim().parse().map_err(|e| {
            CliFailure::Usage(format!(
                "{}: not a number of calls: {e}",
                job_env::XERO_PER_MINUTE
            ))
        })?;
        settings.jobs.xero_per_minute = Some(n);
    }
    match cli.command {
        Command::Serve(args) => serve(platform, settings, args).await,
        Command::Tenants(cmd) => tenants(&platform, &settings, cmd, cli.output).await,
        Command::Runs(cmd) => runs(&platform, cmd, cli.output).await,
        Command::Tokens(cmd) => tokens(&platform, cmd, cli.output).await,
        Command::Query(args) => ask(&platform, args, cli.output).await,
        Command::Cells(cmd) => cells(&platform, cmd, cli.output).await,
        // Answered before the platform opened (see above).
        Command::Secrets(_) => Ok(()),
    }
}

async fn cells(
    platform: &Platform,
    cmd: CellsCommand,
    format: OutputFormat,
) -> Result<(), CliFailure> {
    use service::cells;
    let fail = |e: ServiceError| service_failure(e, "managing cells");
    let store = &platform.store;
    match cmd {
        CellsCommand::Add {
            id,
            project,
            region,
            capacity,
        } => {
            let cell = crate::store::NewCell {
                id,
                project,
                region,
                capacity,
            };
            let secret = run_settings().xero_client_secret;
            let added = cells::add(store, &platform.clouds, cell, secret.as_ref(), &actor())
                .await
                .map_err(fail)?;
            if !added.created && format != OutputFormat::Json {
                eprintln!(
                    "cell {} was registered already; nothing changed",
                    added.cell.id
                );
            }
            if platform.clouds.needs_cells() && secret.is_none() {
                eprintln!(
                    "warning: {} is not set, so the Xero app's client secret was not written \
                     into cell {}: its tenants' jobs cannot sync until \
                     `control-plane cells sync-secret --cell {}` runs with it set",
                    job_env::XERO_CLIENT_SECRET,
                    added.cell.id,
                    added.cell.id
                );
            }
            output::print_cell(&added.cell, &added, format)?;
            if let (Some(change), false) = (added.app_secret, format == OutputFormat::Json) {
                println!("  Xero app secret {change}");
            }
        }
        CellsCommand::List => {
            let list = cells::list(store).await.map_err(fail)?;
            output::print_cells(&list, format)?;
        }
        CellsCommand::Show { id } => {
            let cell = cells::show(store, &id).await.map_err(fail)?;
            output::print_cell(&cell, &cell, format)?;
        }
        CellsCommand::Drain { id } => {
            let cell = cells::drain(store, &id, &actor()).await.map_err(fail)?;
            output::print_cell(&cell, &cell, format)?;
        }
        CellsCommand::Activate { id } => {
            let cell = cells::activate(store, &id, &actor()).await.map_err(fail)?;
            output::print_cell(&cell, &cell, format)?;
        }
        CellsCommand::SyncSecret { cell } => {
            if !platform.clouds.needs_cells() {
                return Err(CliFailure::Usage(
                    "this cloud keeps no tenants in cells (--cloud local): each run carries \
                     the Xero app's client secret"
                        .into(),
                ));
            }
            let Some(secret) = run_settings().xero_client_secret else {
                return Err(CliFailure::Usage(format!(
                    "{} must be set: it is the value written into the cells",
                    job_env::XERO_CLIENT_SECRET
                )));
            };
            let synced =
                cells::sync_app_secret(store, &platform.clouds, cell.as_deref(), &secret, &actor())
                    .await
                    .map_err(fail)?;
            output::print_app_secret_syncs(&synced, format)?;
        }
    }
    Ok(())
}

/// `secrets rotate-master-key`, before anything opens the data directory
/// (an interrupted rotation must be finishable, and nothing else may hold
/// the old key meanwhile).
async fn rotate_master_key(config: PlatformConfig, format: OutputFormat) -> Result<(), CliFailure> {
    if config.cloud == AdapterKind::Gcp {
        return Err(CliFailure::Usage(
            "on Google Cloud the tenants' secrets are in Secret Manager, encrypted by Google: \
             the master key encrypts nothing stored (infra/RUNBOOK.md, Rotating the master key)"
                .into(),
        ));
    }
    let local = cloud_adapters::LocalConfig {
        master_key: config.master_key.clone(),
        ..cloud_adapters::LocalConfig::new(&config.data_dir)
    };
    let new_key = std::env::var(cloud_adapters::NEW_MASTER_KEY_ENV).ok();
    let rotation = tokio::task::spawn_blocking(move || {
        cloud_adapters::rotate_master_key(&local, new_key.as_deref())
    })
    .await
    .context("rotating the master key")?
    .context("rotating the master key")?;
    // Recorded where operators look for what was done; the rotation stands
    // even if the store cannot say so.
    match crate::store::Store::open(&config.database_url()).await {
        Ok(store) => {
            let detail = serde_json::json!({
                "reencrypted": rotation.reencrypted,
                "already_new": rotation.already_new,
            });
            if let Err(e) = store
                .audit(&actor(), "master_key.rotate", None, &detail)
                .await
            {
                eprintln!(
                    "warning: the rotation is done, but the audit log could not record it: {e}"
                );
            }
        }
        Err(e) => {
            eprintln!(
                "warning: the rotation is done, but the state store did not open to record it: {e}"
            )
        }
    }
    if format == OutputFormat::Json {
        output::print_json(&rotation)?;
        return Ok(());
    }
    println!(
        "re-encrypted {} secret version(s) under the new master key ({} already were)",
        rotation.reencrypted, rotation.already_new
    );
    match &rotation.key_file {
        Some(file) => println!("the new key is in {}", file.display()),
        None => println!(
            "set LEDGERLAKE_MASTER_KEY to the value of {} wherever this data directory is opened \
             (the service, and the jobs it starts)",
            cloud_adapters::NEW_MASTER_KEY_ENV
        ),
    }
    Ok(())
}

/// `control-plane query`: one question, answered as the tenant and audited.
async fn ask(
    platform: &Platform,
    args: QueryCommandArgs,
    format: OutputFormat,
) -> Result<(), CliFailure> {
    use service::questions::{Asker, QueryService, Question};
    let settings = args.query.settings()?;
    let as_of = args
        .as_of
        .as_deref()
        .map(|d| {
            query::plan::iso_date::parse(d).map_err(|_| {
                CliFailure::Usage(format!("--as-of {d}: write the date as YYYY-MM-DD"))
            })
        })
        .transpose()?;
    let model = query::semantic::SemanticModel::builtin()
        .map_err(|e| CliFailure::Failed(anyhow::Error::new(e)))?;
    let service = QueryService::new(
        platform.clouds.clone(),
        platform.store.clone(),
        Arc::new(model),
        &settings,
    );
    let question = Question {
        text: args.question,
        as_of,
        generator: args.generator.into(),
        conversation: args.conversation,
    };
    let asker = Asker {
        actor: actor(),
        token_id: None,
    };
    let recorded = service
        .ask(&args.tenant, &asker, &question)
        .await
        .map_err(|e| service_failure(e, "answering the question"))?;
    output::print_answer(&recorded, format)?;
    if recorded.answer.answered {
        Ok(())
    } else {
        // Declined or refused: the explanation is printed; the exit code says so.
        Err(CliFailure::Failed(anyhow::anyhow!(
            "not answered ({})",
            recorded.answer.refusal.as_deref().unwrap_or("declined")
        )))
    }
}

async fn tokens(
    platform: &Platform,
    cmd: TokensCommand,
    format: OutputFormat,
) -> Result<(), CliFailure> {
    use service::tokens;
    let fail = |e: ServiceError| service_failure(e, "managing API tokens");
    let store = &platform.store;
    match cmd {
        TokensCommand::Issue {
            tenant,
            name,
            expires,
        } => {
            let ttl = expires
                .as_deref()
                .map(tokens::parse_ttl)
                .transpose()
                .map_err(usage)?;
            let issued = tokens::issue(store, &tenant, name.as_deref(), ttl, &actor())
                .await
                .map_err(fail)?;
            output::print_issued_token(&issued, format)?;
        }
        TokensCommand::List { tenant } => {
            let list = tokens::list(store, &tenant).await.map_err(fail)?;
            output::print_tokens(&list, format)?;
        }
        TokensCommand::Revoke { token_id } => {
            let token = tokens::revoke(store, &token_id, &actor())
                .await
                .map_err(fail)?;
            output::print_revoked_token(&token, format)?;
        }
    }
    Ok(())
}

/// The base of the redirect URI of the Xero client a teardown builds (never used).
const TEARDOWN_REDIRECT_BASE: &str = "http://127.0.0.1:8080";

/// The Xero app from the environment, for the runs this process starts.
fn run_settings() -> RunSettings {
    RunSettings {
        xero_client_id: std::env::var(job_env::XERO_CLIENT_ID).ok(),
        xero_client_secret: std::env::var(job_env::XERO_CLIENT_SECRET)
            .ok()
            .map(SecretString::new),
    }
}

async fn runs(
    platform: &Platform,
    cmd: RunsCommand,
    format: OutputFormat,
) -> Result<(), CliFailure> {
    let runs = platform.runs(run_settings());
    // The operator's next step, where the error has one.
    let fail = |e: RunError| {
        CliFailure::Failed(match &e {
            RunError::NotReady { tenant, .. } => {
                anyhow::anyhow!("{e}; provision it first: control-plane tenants provision {tenant}")
            }
            _ => anyhow::Error::new(e),
        })
    };
    match cmd {
        RunsCommand::Start {
            tenant,
            command,
            wait,
            wait_secs,
        } => {
            let mut run = runs
                .start(&tenant, command, RunTrigger::Operator)
                .await
                .map_err(fail)?;
            if wait {
                let progress = progress_bar(format, 0);
                progress.set_message(format!("{command} of tenant {tenant}: run {}", run.id));
                run = runs
                    .wait(&run.id, std::time::Duration::from_secs(wait_secs))
                    .await
                    .map_err(fail)?;
                progress.finish_and_clear();
            }
            output::print_run(&run, format)?;
            match run.status {
                RunStatus::Failed => Err(CliFailure::Failed(anyhow::anyhow!(
                    "tenant {tenant}: run {} failed: {}",
                    run.id,
                    run.message.as_deref().unwrap_or("no message")
                ))),
                _ => Ok(()),
            }
        }
        RunsCommand::List { tenant, limit } => {
            runs.follow_active().await.map_err(fail)?;
            let list = platform
                .store
                .list_runs(tenant.as_ref(), limit)
                .await
                .context("listing runs")?;
            output::print_runs(&list, format)?;
            Ok(())
        }
        RunsCommand::Show { run_id } => {
            let run = runs.get(&run_id).await.map_err(fail)?;
            let run = runs.follow(&run).await.map_err(fail)?;
            output::print_run(&run, format)?;
            Ok(())
        }
    }
}

async fn serve(platform: Platform, settings: Settings, args: ServeArgs) -> Result<(), CliFailure> {
    use crate::server::{self, ServeConfig};

    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", args.listen));
    let oauth = args.xero.oauth_client(&public_url)?;
    if oauth.is_none() {
        tracing::warn!("no Xero app configured: /connect/xero will answer 503");
    }
    crate::scheduler::parse_schedule(&args.default_schedule)
        .map_err(|e| CliFailure::Usage(e.to_string()))?;
    let id_token = scheduler_id_token(&args.scheduler_caller)?;
    // Bounded by its parser; checked all the same, as a wrap would be silent.
    let token_max_idle = args
        .token_max_idle_hours
        .checked_mul(3600)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| {
            CliFailure::Usage(format!(
                "--token-max-idle-hours is at most {TOKEN_MAX_IDLE_HOURS_MAX}"
            ))
        })?;
    let config = ServeConfig {
        listen: args.listen,
        public_url,
        oauth,
        webhook_key: args.xero_webhook_key.map(xero::webhook::WebhookKey::new),
        operator_token: args.operator_token,
        metrics_token: args.metrics_token,
        workers: args.workers,
        resync_interval: std::time::Duration::from_secs(args.resync_secs.max(1)),
        token_check_interval: ServeConfig::TOKEN_CHECK_INTERVAL,
        token_max_idle,
        run_settings: RunSettings {
            xero_client_id: args.xero.xero_client_id.clone(),
            xero_client_secret: args.xero.xero_client_secret.clone(),
        },
        scheduler: crate::scheduler::SchedulerSettings {
            default_schedule: args.default_schedule.clone(),
            id_token,
            ..Default::default()
        },
        local_tick: (args.local_tick_secs > 0)
            .then(|| std::time::Duration::from_secs(args.local_tick_secs)),
        limits: args.limits.limits(),
        query: match args.role {
            ServeRole::Control => None,
            ServeRole::All | ServeRole::Query => Some(args.query.settings()?),
        },
        control: args.role != ServeRole::Query,
    };
    let reconciler = platform.reconciler(settings);
    // Cloud Run and systemd stop with SIGTERM, a terminal with Ctrl-C.
    let shutdown = async {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
        }
    };
    server::serve(
        platform.clouds.clone(),
        platform.store.clone(),
        reconciler,
        config,
        shutdown,
    )
    .await
    .with_context(|| format!("serving on {}", args.listen))?;
    Ok(())
}

/// Cloud Scheduler's ID-token verifier, when both its audience and its
/// service account are set (one alone is a mistake, refused).
fn scheduler_id_token(
    args: &SchedulerCallerArgs,
) -> Result<Option<Arc<crate::server::oidc::IdTokenVerifier>>, CliFailure> {
    use crate::server::oidc::{IdTokenVerifier, SchedulerIdentity};
    const ONE_OF_TWO: &str = "set both LEDGERLAKE_SCHEDULER_AUDIENCE and \
        LEDGERLAKE_SCHEDULER_SERVICE_ACCOUNT (--scheduler-audience, \
        --scheduler-service-account), or neither";
    fn nonempty(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
    let identity = match (
        nonempty(&args.scheduler_audience),
        nonempty(&args.scheduler_service_account),
    ) {
        (None, None) => return Ok(None),
        (Some(audience), Some(service_account)) => SchedulerIdentity {
            audience: audience.to_owned(),
            service_account: service_account.to_owned(),
            jwks_url: args.google_jwks_url.clone(),
        },
        _ => return Err(CliFailure::Usage(ONE_OF_TWO.to_owned())),
    };
    if reqwest::Url::parse(&identity.jwks_url).is_err() {
        return Err(CliFailure::Usage(format!(
            "--google-jwks-url {:?} is not a URL",
            identity.jwks_url
        )));
    }
    let verifier = IdTokenVerifier::new(identity).context("building the JWKS client")?;
    Ok(Some(Arc::new(verifier)))
}

async fn tenants(
    platform: &Platform,
    settings: &Settings,
    cmd: TenantsCommand,
    format: OutputFormat,
) -> Result<(), CliFailure> {
    match cmd {
        TenantsCommand::Provision { ids, concurrency } => {
            let reconciler = platform.reconciler(settings.clone());
            let steps: usize = ids.iter().map(|id| reconciler.plan_size(id)).sum();
            let progress = progress_bar(format, steps as u64);
            let reconciler = reconciler.with_events(progress_sink(progress.clone()));
            progress.set_message(format!("provisioning {} tenant(s)", ids.len()));
            let actor = actor();
            // In order of the arguments; one tenant's failure does not stop the others.
            let outcomes: Vec<_> = futures::stream::iter(ids.iter())
                .map(|id| {
                    let (reconciler, actor) = (&reconciler, &actor);
                    async move { service::tenants::provision(reconciler, id, actor).await }
                })
                .buffered(usize::from(concurrency))
                .collect()
                .await;
            progress.finish_and_clear();
            let mut reports = Vec::new();
            for (id, outcome) in ids.iter().zip(outcomes) {
                reports.push(outcome.with_context(|| format!("tenant {id}: provisioning failed"))?);
            }
            let mut views = Vec::new();
            for id in &ids {
                views.push(view(platform, id).await?);
            }
            output::print_views(&views, format)?;
            check_reports(&reports)
        }
        TenantsCommand::Teardown {
            id,
            keep_data,
            force,
            xero,
            ..
        } => {
            // A teardown sends no browser anywhere: the client only needs a
            // well-formed redirect URI.
            let oauth = xero.oauth_client(TEARDOWN_REDIRECT_BASE)?;
            let runs = platform.runs(RunSettings::default());
            let reconciler = platform.reconciler(settings.clone());
            let progress = progress_bar(format, reconciler.plan_size(&id) as u64);
            progress.set_message(format!("tearing down {id}"));
            let reconciler = reconciler.with_events(progress_sink(progress.clone()));
            let torn_down = service::tenants::teardown(
                &reconciler,
                &runs,
                oauth.as_ref(),
                &id,
                keep_data,
                force,
                &actor(),
            )
            .await;
            progress.finish_and_clear();
            let outcome = match torn_down {
                Err(ServiceError::NotFound { .. }) => {
                    return Err(CliFailure::Failed(anyhow::anyhow!(
                        "tenant {id} does not exist; nothing to tear down"
                    )))
                }
                Err(ServiceError::Conflict {
                    code: "run_in_progress",
                    message,
                }) => {
                    return Err(CliFailure::Failed(anyhow::anyhow!(
                        "{message}: control-plane tenants teardown {id} --yes --force"
                    )))
                }
                other => other.with_context(|| format!("tenant {id}: teardown failed"))?,
            };
            for run in &outcome.cancelled {
                eprintln!(
                    "cancelled run {} ({} of tenant {id}): {}",
                    run.id,
                    run.command,
                    run.message.as_deref().unwrap_or("ended")
                );
            }
            let told = &outcome.xero;
            if !told.problems.is_empty() {
                eprintln!(
                    "warning: Xero was not wholly told that tenant {id} is gone \
                     ({} connection(s) deleted, refresh token {}revoked): {}",
                    told.connections_deleted,
                    if told.refresh_token_revoked {
                        ""
                    } else {
                        "not "
                    },
                    told.problems.join("; ")
                );
            } else if let Some(why) = &told.skipped {
                eprintln!("note: Xero was not told that tenant {id} is gone: {why}");
            }
            output::print_teardown(&outcome.report, format)?;
            check_reports(std::slice::from_ref(&outcome.report))
        }
        TenantsCommand::List { limit, after } => {
            if limit.is_none() && after.is_none() {
                let views = service::tenants::list(&platform.store)
                    .await
                    .context("listing tenants")?;
                output::print_list(&views, format)?;
                return Ok(());
            }
            let limit = limit.unwrap_or(service::tenants::PAGE_DEFAULT);
            let page = service::tenants::list_page(&platform.store, after.as_ref(), limit)
                .await
                .context("listing tenants")?;
            output::print_list(&page.tenants, format)?;
            if let Some(next) = page.next {
                eprintln!("more tenants follow: --after {next}");
            }
            Ok(())
        }
        TenantsCommand::Schedule { id, schedule, .. } => {
            match service::tenants::set_schedule(
                &platform.store,
                &id,
                schedule.as_deref(),
                &actor(),
            )
            .await
            {
                Err(ServiceError::Invalid { message, .. }) => {
                    return Err(CliFailure::Usage(message))
                }
                Err(e @ ServiceError::NotFound { .. }) => {
                    return Err(CliFailure::Failed(anyhow::anyhow!(e)))
                }
                other => other.with_context(|| format!("setting tenant {id}'s schedule"))?,
            }
            match (&schedule, format) {
                (_, OutputFormat::Json) => println!(
                    "{}",
                    serde_json::json!({ "id": id.as_str(), "schedule": schedule })
                ),
                (Some(s), _) => println!("tenant {id} syncs on \"{s}\" (UTC)"),
                (None, _) => println!("tenant {id} syncs on the default schedule"),
            }
            Ok(())
        }
        TenantsCommand::ConnectLink {
            id,
            expires,
            public_url,
        } => {
            let ttl = service::onboarding::parse_expiry(&expires).map_err(usage)?;
            let link = service::onboarding::mint_connect_link(
                &platform.store,
                &public_url,
                &id,
                ttl,
                &actor(),
            )
            .await
            .map_err(|e| match e {
                e @ ServiceError::Invalid { .. } => usage(e),
                e => CliFailure::Failed(anyhow::Error::new(e).context("minting a connect link")),
            })?;
            match format {
                OutputFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&link).map_err(anyhow::Error::from)?
                ),
                OutputFormat::Table | OutputFormat::Csv => {
                    println!("{}", link.url);
                    println!(
                        "single use; expires {}",
                        link.expires_at
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
        TenantsCommand::Disconnect { id, yes } => {
            if !yes {
                return Err(CliFailure::Usage(format!(
                    "refusing to disconnect tenant {id} without --yes"
                )));
            }
            service::onboarding::disconnect(&platform.store, &id, &actor())
                .await
                .map_err(|e| match e {
                    e @ ServiceError::NotFound { .. } => CliFailure::Failed(anyhow::Error::new(e)),
                    e => CliFailure::Failed(anyhow::Error::new(e).context("disconnecting")),
                })?;
            println!(
                "tenant {id} disconnected from Xero; its next consent may name any organisation"
            );
            Ok(())
        }
        TenantsCommand::ExportTerraform {
            id,
            platform_account,
            module_source,
            location,
        } => {
            let Some(location) = location.or_else(|| platform.gcp_location().map(str::to_owned))
            else {
                return Err(CliFailure::Usage(
                    "--location is needed with --cloud local (the gcp adapter's is the default)"
                        .into(),
                ));
            };
            let options = service::terraform::ExportOptions {
                module_source,
                location,
                platform_member: cloud::ports::member_for(&platform_account),
            };
            let reconciler = platform.reconciler(settings.clone());
            let rendered = service::terraform::export_tenant(&reconciler, &id, &options)
                .await
                .map_err(|e| service_failure(e, "exporting the tenant as Terraform"))?;
            print!("{rendered}");
            Ok(())
        }
        TenantsCommand::Show { id } => {
            let v = view(platform, &id).await?;
            output::print_views(std::slice::from_ref(&v), format)?;
            Ok(())
        }
        TenantsCommand::Reconcile(target) => {
            let reconciler = platform.reconciler(settings.clone());
            let reports: Vec<TenantReport> = match target.id {
                Some(id) => vec![reconciler
                    .reconcile(&id)
                    .await
                    .with_context(|| format!("tenant {id}: reconcile failed"))?],
                None => {
                    let mut reports = Vec::new();
                    let mut errors = Vec::new();
                    for result in reconciler
                        .reconcile_all()
                        .await
                        .context("listing tenants")?
                    {
                        match result {
                            Ok(r) => reports.push(r),
                            Err(e) => errors.push(e.to_string()),
                        }
                    }
                    if !errors.is_empty() {
                        output::print_reconcile(&reports, format)?;
                        return Err(CliFailure::Failed(anyhow::anyhow!(errors.join("\n"))));
                    }
                    reports
                }
            };
            output::print_reconcile(&reports, format)?;
            check_reports(&reports)
        }
    }
}

async fn view(platform: &Platform, id: &TenantId) -> Result<TenantView, CliFailure> {
    match service::tenants::view(&platform.store, id).await {
        Ok(v) => Ok(v),
        Err(e @ ServiceError::NotFound { .. }) => Err(CliFailure::Failed(anyhow::anyhow!(e))),
        Err(e) => Err(CliFailure::Failed(
            anyhow::Error::new(e).context(format!("reading tenant {id}")),
        )),
    }
}

fn check_reports(reports: &[TenantReport]) -> Result<(), CliFailure> {
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.is_success())
        .map(TenantReport::failure_summary)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliFailure::Failed(anyhow::anyhow!(failed.join("\n"))))
    }
}

fn progress_bar(format: OutputFormat, len: u64) -> ProgressBar {
    // Progress goes to stderr for people; scripts asking for JSON get none.
    let target = match format {
        OutputFormat::Table => ProgressDrawTarget::stderr(),
        OutputFormat::Json | OutputFormat::Csv => ProgressDrawTarget::hidden(),
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} {wide_msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn progress_sink(bar: ProgressBar) -> crate::reconciler::EventSink {
    Arc::new(move |e: &Event| {
        bar.inc(1);
        if e.outcome == EventOutcome::Failed {
            bar.println(format!("failed: tenant {} {} {}", e.tenant, e.kind, e.name));
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    /// Far past any bound, and past what `* 3600` or `Instant + secs` survive.
    const HUGE: &str = "18446744073709551615";

    /// The refusal of `args`, which must be one of a value out of range.
    fn refusal(args: &[&str]) -> String {
        match Cli::try_parse_from(args) {
            Ok(cli) => panic!("{args:?} was accepted: {cli:?}"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::ValueValidation, "{e}");
                e.to_string()
            }
        }
    }

    fn accepted(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn huge_durations_are_refused_with_their_bounds() {
        let base = ["control-plane"];
        for (args, flag, bound) in [
            (
                &[
                    "runs",
                    "start",
                    "acme",
                    "ingest",
                    "--wait",
                    "--wait-secs",
                    HUGE,
                ][..],
                "--wait-secs",
                "1..=604800",
            ),
            (
                &["serve", "--token-max-idle-hours", HUGE][..],
                "--token-max-idle-hours",
                "1..=1416",
            ),
            (
                &["serve", "--query-timeout-secs", HUGE][..],
                "--query-timeout-secs",
                "1..=3600",
            ),
            (
                &["query", "acme", "revenue", "--query-timeout-secs", HUGE][..],
                "--query-timeout-secs",
                "1..=3600",
            ),
            (
                &["serve", "--resync-secs", HUGE][..],
                "--resync-secs",
                "1..=86400",
            ),
        ] {
            let all: Vec<&str> = base.iter().chain(args).copied().collect();
            let message = refusal(&all);
            assert!(message.contains(flag), "{message}");
            assert!(message.contains(bound), "{message}");
            // One past the bound is refused too; zero, which means nothing, as well.
            let top = bound.rsplit('=').next().unwrap_or_default();
            let past = (top.parse::<u64>().unwrap_or_default() + 1).to_string();
            for bad in [past.as_str(), "0"] {
                let mut args = all.clone();
                let last = args.len() - 1;
                args[last] = bad;
                refusal(&args);
            }
        }
    }

    #[test]
    fn durations_at_their_bounds_are_accepted() {
        let cli = accepted(&[
            "control-plane",
            "runs",
            "start",
            "acme",
            "ingest",
            "--wait",
            "--wait-secs",
            "604800",
        ]);
        assert!(matches!(
            cli.command,
            Command::Runs(RunsCommand::Start {
                wait_secs: 604_800,
                ..
            })
        ));
        let cli = accepted(&[
            "control-plane",
            "serve",
            "--token-max-idle-hours",
            "1416",
            "--query-timeout-secs",
            "3600",
        ]);
        let Command::Serve(serve) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(serve.token_max_idle_hours, TOKEN_MAX_IDLE_HOURS_MAX);
        // The local tick may be 0 (off) or up to a day; past a day it is refused.
        for (tick, ok) in [
            ("0", true),
            ("86400", true),
            ("86401", false),
            (HUGE, false),
        ] {
            let args = ["control-plane", "serve", "--local-tick-secs", tick];
            if ok {
                accepted(&args);
            } else {
                assert!(refusal(&args).contains("0..=86400"));
            }
        }
        assert_eq!(serve.query.query_timeout_secs, QUERY_TIMEOUT_SECS_MAX);
        // The defaults are within the bounds.
        let cli = accepted(&["control-plane", "serve"]);
        let Command::Serve(serve) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(
            (serve.token_max_idle_hours, serve.query.query_timeout_secs),
            (7 * 24, 10)
        );
    }
}
