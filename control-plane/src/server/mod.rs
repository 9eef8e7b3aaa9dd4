//! `control-plane serve`: the HTTP service. Xero's consent redirect and
//! webhooks drive onboarding; operators read tenants behind a bearer token;
//! background workers run the reconciler so requests return at once.

mod api_tokens;
pub mod auth;
mod cells;
mod error;
mod limits;
mod listener;
mod meta;
mod observability;
pub mod oidc;
mod onboarding;
pub mod openapi;
mod questions;
pub mod routes;
mod runs;
mod tenants;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use cloud::naming::TenantId;
use cloud::Clouds;
use xero::oauth::OAuthClient;
use xero::secret::SecretString;
use xero::webhook::WebhookKey;

use crate::controller::{Backoff, Controller};
use crate::reconciler::{AbortOnDrop, Reconciler};
use crate::runs::{RunSettings, Runs};
use crate::scheduler::{self, SchedulerSettings};
pub use crate::service::questions::QuerySettings;
use crate::store::{Phase, Retention, Store};
use crate::tokens;
pub use error::ApiError;
pub use limits::ServeLimits;

/// How the service is reached and what it trusts.
#[derive(Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// The base URL browsers and Xero reach us at (builds the redirect URI).
    pub public_url: String,
    /// The Xero app; without it `/connect/xero` answers 503.
    pub oauth: Option<OAuthClient>,
    /// Xero's webhook signing key; without it every webhook is refused.
    pub webhook_key: Option<WebhookKey>,
    /// The operator API's bearer token; without it the operator API is closed.
    pub operator_token: Option<SecretString>,
    /// A bearer token that may read `/metrics` and nothing else (the operator
    /// token may too); without either, `/metrics` answers 401.
    pub metrics_token: Option<SecretString>,
    /// Tenants reconciled at once by the background workers.
    pub workers: usize,
    /// How often the workers look for tenants that are not yet settled
    /// (which also resumes work a crash interrupted).
    pub resync_interval: Duration,
    /// How often the token keep-alive looks for idle token sets.
    pub token_check_interval: Duration,
    /// A token set not refreshed for this long is refreshed by the keep-alive
    /// (Xero's refresh tokens die after 60 days unused).
    pub token_max_idle: Duration,
    /// What the runs this service starts get (the Xero app for refreshes).
    pub run_settings: RunSettings,
    pub scheduler: SchedulerSettings,
    /// Tick the scheduler ourselves this often (a local deployment without
    /// Cloud Scheduler); `None` leaves it to `POST /v1/scheduler/tick`.
    pub local_tick: Option<Duration>,
    /// Connections, timeouts, body sizes and requests at once per route class.
    pub limits: ServeLimits,
    /// The query engine's limits and LLM; `None` when this service does not
    /// serve the query routes (`serve --role control`).
    pub query: Option<QuerySettings>,
    /// Whether this service runs the control plane's routes and workers
    /// (`serve --role query` serves questions only).
    pub control: bool,
}

impl ServeConfig {
    /// Keep-alive defaults: look every hour, refresh what is a week idle.
    pub const TOKEN_CHECK_INTERVAL: Duration = Duration::from_secs(60 * 60);
    pub const TOKEN_MAX_IDLE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

    /// A service at `listen`, reached at `public_url`, with everything that
    /// needs a credential closed (no Xero app, webhook key, operator or
    /// metrics token), one worker resyncing hourly, the default keep-alive,
    /// scheduler and limits, the tick left to `POST /v1/scheduler/tick`, and
    /// the control plane's routes without the query routes. Callers set what
    /// they open with struct update syntax.
    pub fn closed(listen: SocketAddr, public_url: impl Into<String>) -> Self {
        ServeConfig {
            listen,
            public_url: public_url.into(),
            oauth: None,
            webhook_key: None,
            operator_token: None,
            metrics_token: None,
            workers: 1,
            resync_interval: Duration::from_secs(60 * 60),
            token_check_interval: Self::TOKEN_CHECK_INTERVAL,
            token_max_idle: Self::TOKEN_MAX_IDLE,
            run_settings: RunSettings::default(),
            scheduler: SchedulerSettings::default(),
            local_tick: None,
            limits: ServeLimits::default(),
            query: None,
            control: true,
        }
    }
}

pub struct AppState {
    /// The adapters of each cell (one shared Cloud locally).
    pub clouds: Clouds,
    pub store: Store,
    pub reconciler: Reconciler,
    pub runs: Runs,
    pub config: ServeConfig,
    pub controller: Controller,
    /// The query service, when this service serves questions.
    pub query: Option<crate::service::questions::QueryService>,
    /// One permit per streamed answer still being worked out: the stream's
    /// task outlives its handler (and so the query class's limit), so it
    /// holds one of these, as many as that limit allows.
    pub query_streams: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// Asks the background workers to reconcile `tenant` soon (once more after
    /// the current pass, when one is under way).
    pub fn enqueue(&self, tenant: TenantId) {
        self.controller.request(&tenant);
    }
}

/// The routes, over shared state, built from the table in `routes.rs`. Each
/// class of routes has its own limit of requests at once, so that a flood of
/// one cannot starve the others.
pub fn router(state: Arc<AppState>) -> Router {
    use routes::RouteClass;
    let limits = state.config.limits;
    let serves = |class: RouteClass| match class {
        RouteClass::Health | RouteClass::Meta => true,
        RouteClass::Public | RouteClass::Operator => state.config.control,
        RouteClass::Query => state.query.is_some(),
    };
    let mut classes: Vec<(RouteClass, Router<Arc<AppState>>)> = Vec::new();
    for (route, handler) in routes::table() {
        if !serves(route.class) {
            continue;
        }
        // Two methods of one path are merged into one route by axum.
        match classes.iter_mut().find(|(class, _)| *class == route.class) {
            Some((_, routes)) => {
                *routes = std::mem::replace(routes, Router::new()).route(route.path, handler)
            }
            None => classes.push((route.class, Router::new().route(route.path, handler))),
        }
    }
    let mut app = Router::new();
    for (class, routes) in classes {
        let (routes, max) = match class {
            RouteClass::Health | RouteClass::Meta => (routes, limits.health_concurrency),
            // Unauthenticated: anyone on the internet can reach these.
            RouteClass::Public => (
                routes.route_layer(axum::middleware::from_fn_with_state(
                    limits::PerClient::new(
                        limits.public_per_client_per_minute,
                        limits.trust_forwarded_for,
                    ),
                    limits::per_client,
                )),
                limits.public_concurrency,
            ),
            RouteClass::Operator | RouteClass::Query => (routes, limits.operator_concurrency),
        };
        app = app.merge(limits::class(routes, max));
    }
    app.fallback(limits::no_route)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(axum::middleware::map_response(limits::rejections_as_json))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            limits.request_timeout,
        ))
        // Outside the limits, so that 413s and 504s are counted too.
        .layer(axum::middleware::from_fn(observability::track))
        // The path only: the callback's query carries the code and the state.
        .layer(TraceLayer::new_for_http().make_span_with(limits::request_span))
        .with_state(state)
}

/// Binds, starts the workers and serves until `shutdown` resolves.
pub async fn serve(
    cloud: impl Into<Clouds>,
    store: Store,
    reconciler: Reconciler,
    config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let local = listener.local_addr()?;
    let connections = config.limits.connections();
    let (state, workers) = start(cloud, store, reconciler, config);
    tracing::info!(%local, "serving");
    // Scripts and tests read the bound address (port 0 picks a free one).
    println!("control-plane listening on http://{local}");
    let result = listener::serve_connections(listener, router(state), connections, shutdown).await;
    workers.abort();
    result
}

/// Builds the shared state and starts the background workers.
pub fn start(
    cloud: impl Into<Clouds>,
    store: Store,
    reconciler: Reconciler,
    config: ServeConfig,
) -> (Arc<AppState>, tokio::task::JoinHandle<()>) {
    let clouds: Clouds = cloud.into();
    let (controller, controller_task) =
        Controller::start(reconciler.clone(), config.workers, Backoff::default());
    let runs = Runs::new(
        clouds.clone(),
        store.clone(),
        reconciler.prefix().cloned(),
        config.run_settings.clone(),
    );
    let model = query::semantic::SemanticModel::builtin()
        .map_err(
            |e| tracing::error!(error = %e, "the semantic model does not load: no query routes"),
        )
        .ok()
        .map(Arc::new);
    let query = config.query.as_ref().zip(model).map(|(q, model)| {
        crate::service::questions::QueryService::new(clouds.clone(), store.clone(), model, q)
    });
    let query_streams = Arc::new(tokio::sync::Semaphore::new(
        config.limits.operator_concurrency.max(1),
    ));
    let state = Arc::new(AppState {
        clouds,
        store,
        reconciler,
        runs,
        config,
        controller,
        query,
        query_streams,
    });
    // A query-only service (`serve --role query`) runs none of the control
    // plane's loops: another service does, against the same state store.
    let control = state.config.control;
    let spawn_if = |task: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>| {
        tokio::spawn(async move {
            if control {
                task.await
            }
        })
    };
    let resync = spawn_if(Box::pin(run_resync(state.clone())));
    let keepalive = spawn_if(Box::pin(run_token_keepalive(state.clone())));
    let ticks = spawn_if(Box::pin(run_local_ticks(state.clone())));
    let workers = tokio::spawn(async move {
        // The loops run until aborted; aborting this task aborts them all.
        let _guards = (
            controller_task,
            AbortOnDrop(resync),
            AbortOnDrop(keepalive),
            AbortOnDrop(ticks),
        );
        std::future::pending::<()>().await
    });
    (state, workers)
}

/// Ticks the scheduler every `local_tick`, when configured.
async fn run_local_ticks(state: Arc<AppState>) {
    let Some(every) = state.config.local_tick else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if let Err(e) = scheduler::tick(
            &state.runs,
            &state.config.scheduler,
            time::OffsetDateTime::now_utc(),
        )
        .await
        {
            tracing::warn!(error = %e, "scheduler tick failed");
        }
    }
}

/// Refreshes idle token sets every `token_check_interval` (when a Xero app is
/// configured), so that no tenant's connection lapses for want of use.
async fn run_token_keepalive(state: Arc<AppState>) {
    let Some(oauth) = state.config.oauth.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(state.config.token_check_interval);
    loop {
        tick.tick().await;
        match tokens::refresh_idle_token_sets(
            &state.clouds,
            &state.store,
            &oauth,
            state.reconciler.prefix(),
            state.config.token_max_idle,
            tokens::TokenLeaseSettings::default(),
        )
        .await
        {
            Ok(report) if report.refreshed + report.needs_consent + report.failed > 0 => {
                tracing::info!(?report, "token keep-alive pass")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "token keep-alive could not read the store"),
        }
    }
}

/// How often the service prunes records past their retention.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Rotated-out token-set versions are destroyed after this long.
const TOKEN_VERSION_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Every `resync_interval`: follows runs whose process ended, and asks the
/// controller for a pass over each tenant that is not settled (a failed one
/// when its recorded backoff is over, which survives restarts).
async fn run_resync(state: Arc<AppState>) {
    let backoff = Backoff::default();
    let mut resync = tokio::time::interval(state.config.resync_interval);
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        resync.tick().await;
        // Records kept only for a while (OAuth states, webhook deliveries,
        // expired links and leases) are pruned about once an hour.
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(tokio::time::Instant::now());
            match state.store.prune(&Retention::default()).await {
                Ok(pruned) if pruned.total() > 0 => tracing::info!(?pruned, "pruned old records"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning old records failed"),
            }
            match tokens::prune_token_versions(&state.clouds, &state.store, TOKEN_VERSION_RETENTION)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(destroyed = n, "destroyed rotated-out token-set versions"),
                Err(e) => tracing::warn!(error = %e, "pruning token-set versions failed"),
            }
        }
        if let Err(e) = state.runs.follow_active().await {
            tracing::warn!(error = %e, "following runs failed");
        }
        let tenants = match state.store.list_tenants().await {
            Ok(tenants) => tenants,
            Err(e) => {
                tracing::warn!(error = %e, "resync could not list tenants");
                continue;
            }
        };
        let unsettled: Vec<_> = tenants
            .into_iter()
            .filter(|t| !matches!(t.phase, Phase::Ready))
            .collect();
        let failed_rows = if unsettled.iter().any(|t| t.phase == Phase::Failed) {
            state
                .store
                .resources_of_failed_tenants()
                .await
                .unwrap_or_default()
        } else {
            Default::default()
        };
        for t in unsettled {
            let next = failed_rows
                .get(&t.id)
                .and_then(|rows| backoff.next_attempt(rows));
            match next {
                Some(next) if t.phase == Phase::Failed => {
                    state.controller.request_at(&t.id, next.at)
                }
                _ => state.controller.request_unless_backing_off(&t.id),
            }
        }
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: state store unreachable");
            ApiError::unavailable("store_unreachable", "the state store does not answer")
                .into_response()
        }
    }
}

pub(crate) fn parse_tenant(raw: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(raw).map_err(|e| ApiError::bad_request("invalid_tenant_id", e.to_string()))
}
