//! Every route of the service in one table: its class, method, path template
//! and handler. The router is built from this table, so the two cannot
//! differ; the OpenAPI document (`control-plane/openapi/openapi.yaml`) is
//! checked against it by the tests in `openapi.rs`, and the metrics name a
//! route's class from it.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{delete, get, post, MethodRouter};

use super::{api_tokens, cells, meta, onboarding, questions, runs, tenants, webhooks};
use super::{healthz, readyz, AppState};

/// A class of routes: each has its own limit of requests at once, and `serve
/// --role` picks classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    /// `/healthz`, `/readyz`.
    Health,
    /// `/metrics` and `/openapi.json`: what tools read about the service.
    Meta,
    /// Unauthenticated: consent, the OAuth callback, onboarding status, webhooks.
    Public,
    /// The operator API.
    Operator,
    /// The query service's routes.
    Query,
}

impl RouteClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Health => "health",
            RouteClass::Meta => "meta",
            RouteClass::Public => "public",
            RouteClass::Operator => "operator",
            RouteClass::Query => "query",
        }
    }
}

/// The methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Delete,
}

impl Verb {
    pub fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Post => Method::POST,
            Verb::Delete => Method::DELETE,
        }
    }

    fn on<H, T>(self, handler: H) -> MethodRouter<Arc<AppState>>
    where
        H: Handler<T, Arc<AppState>>,
        T: 'static,
    {
        match self {
            Verb::Get => get(handler),
            Verb::Post => post(handler),
            Verb::Delete => delete(handler),
        }
    }
}

/// One route, without its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub class: RouteClass,
    pub verb: Verb,
    /// axum's template: `/v1/tenants/{id}` (OpenAPI spells it the same way).
    pub path: &'static str,
}

type Entry = (Route, MethodRouter<Arc<AppState>>);

fn route<H, T>(class: RouteClass, verb: Verb, path: &'static str, handler: H) -> Entry
where
    H: Handler<T, Arc<AppState>>,
    T: 'static,
{
    (Route { class, verb, path }, verb.on(handler))
}

/// Every route with its handler. A new route goes here (and into the
/// OpenAPI document: a test fails until it is).
pub(super) fn table() -> Vec<Entry> {
    use RouteClass::*;
    use Verb::*;
    vec![
        route(Health, Get, "/healthz", healthz),
        route(Health, Get, "/readyz", readyz),
        route(Meta, Get, "/metrics", meta::metrics),
        route(Meta, Get, "/openapi.json", meta::openapi),
        route(Public, Get, "/connect/xero", onboarding::connect),
        route(Public, Get, "/oauth/xero/callback", onboarding::callback),
        route(Public, Get, "/onboarding/{id}/status", onboarding::status),
        route(Public, Post, "/webhooks/xero", webhooks::receive),
        route(Operator, Get, "/v1/tenants", tenants::list),
        route(Operator, Get, "/v1/tenants/{id}", tenants::view),
        route(
            Operator,
            Post,
            "/v1/tenants/{id}/connect-link",
            tenants::connect_link,
        ),
        route(
            Operator,
            Post,
            "/v1/tenants/{id}/disconnect",
            tenants::disconnect,
        ),
        route(Operator, Get, "/v1/tenants/{id}/runs", runs::list),
        route(Operator, Post, "/v1/tenants/{id}/runs", runs::start),
        route(Operator, Get, "/v1/tenants/{id}/tokens", api_tokens::list),
        route(Operator, Post, "/v1/tenants/{id}/tokens", api_tokens::issue),
        route(
            Operator,
            Delete,
            "/v1/tokens/{token_id}",
            api_tokens::revoke,
        ),
        route(Operator, Get, "/v1/runs/{run_id}", runs::show),
        route(Operator, Post, "/v1/scheduler/tick", runs::tick),
        route(Operator, Get, "/v1/cells", cells::list),
        route(Operator, Post, "/v1/cells", cells::add),
        route(Operator, Post, "/v1/cells/sync-secret", cells::sync_secret),
        route(Operator, Get, "/v1/cells/{id}", cells::show),
        route(Operator, Post, "/v1/cells/{id}/drain", cells::drain),
        route(Operator, Post, "/v1/cells/{id}/activate", cells::activate),
        // Questions: a class of their own, so slow queries cannot starve the
        // control plane's routes (or the other way round).
        route(Query, Post, "/v1/query", questions::ask),
        route(Query, Post, "/v1/query/stream", questions::stream),
        route(Query, Post, "/v1/query/{id}/feedback", questions::feedback),
        route(
            Query,
            Get,
            "/v1/query/{id}/result.csv",
            questions::result_csv,
        ),
        route(
            Query,
            Get,
            "/v1/conversations/{id}",
            questions::conversation,
        ),
        route(
            Query,
            Post,
            "/v1/tenants/{id}/query",
            questions::ask_for_tenant,
        ),
        route(
            Query,
            Get,
            "/v1/tenants/{id}/conversations/{conversation}",
            questions::tenant_conversation,
        ),
    ]
}

/// Every route, without handlers: what the tests compare with the OpenAPI
/// document.
pub fn routes() -> Vec<Route> {
    table().into_iter().map(|(route, _)| route).collect()
}

/// The class of a matched route template, for the metrics' `class` label.
pub(super) fn class_of(path: &str) -> Option<RouteClass> {
    static CLASSES: OnceLock<HashMap<&'static str, RouteClass>> = OnceLock::new();
    CLASSES
        .get_or_init(|| routes().into_iter().map(|r| (r.path, r.class)).collect())
        .get(path)
        .copied()
}
