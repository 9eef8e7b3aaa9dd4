//! The HTTP surface: identity, connections, the Accounting API and the
//! `/sandbox/*` control endpoints, on one router.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LOCATION, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use xero::secret::SecretString;

use crate::books;
use crate::changes::{self, ChangeReport, ChangeRequest};
use crate::html;
use crate::identity::{AccessDenied, AuthorizeOutcome, Identity, OAuthFailure};
use crate::model::{Ms, Row};
use crate::org::OrgData;
use crate::query::{self, BadQuery, ListParams, Listable, Pagination};
use crate::traffic::{Fault, FaultSettings, Faults, Limited, Limiter, Remaining, SandboxLimits};
use crate::webhooks::{Event, WebhookTarget, Webhooks};
use crate::wire::{
    self, Resource, API_PATH, APP_MIN_LIMIT_REMAINING, AUTHORIZE_PATH, CONNECTIONS_PATH,
    DAY_LIMIT_REMAINING, MIN_LIMIT_REMAINING, RATE_LIMIT_PROBLEM, REVOCATION_PATH, TENANT_HEADER,
    TOKEN_PATH,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn read(org: &RwLock<OrgData>) -> RwLockReadGuard<'_, OrgData> {
    org.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write(org: &RwLock<OrgData>) -> RwLockWriteGuard<'_, OrgData> {
    org.write().unwrap_or_else(PoisonError::into_inner)
}

/// Request counters for `/sandbox/stats`.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct Stats {
    pub calls: BTreeMap<String, u64>,
    pub statuses: BTreeMap<String, u64>,
    pub rate_limited: BTreeMap<String, u64>,
    pub faults: BTreeMap<String, u64>,
}

/// Everything the handlers share.
pub(crate) struct Shared {
    pub base_url: String,
    pub orgs: Vec<RwLock<OrgData>>,
    pub tenant_index: HashMap<Uuid, usize>,
    pub tenant_names: HashMap<Uuid, String>,
    pub identity: Identity,
    pub limiter: Arc<Limiter>,
    pub faults: Faults,
    pub webhooks: Webhooks,
    pub stats: Mutex<Stats>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("base_url", &self.base_url)
            .field("organisations", &self.orgs.len())
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn org_index(&self, tenant: Option<&str>) -> Option<usize> {
        match tenant {
            None | Some("") => (!self.orgs.is_empty()).then_some(0),
            Some(t) => Uuid::parse_str(t.trim())
                .ok()
                .and_then(|u| self.tenant_index.get(&u).copied()),
        }
    }

    /// Applies changes and sends their webhook events.
    pub(crate) async fn apply_changes(
        self: &Arc<Self>,
        req: &ChangeRequest,
    ) -> Result<ChangeReport, String> {
        let index = self
            .org_index(req.tenant.as_deref())
            .ok_or_else(|| "unknown tenant".to_owned())?;
        let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as Ms;
        let report = {
            let mut org = write(&self.orgs[index]);
            changes::apply(&mut org, req, now_ms)
        };
        let events: Vec<Event> = report
            .changed
            .iter()
            .filter_map(|c| {
                let category = match c.resource.as_str() {
                    "Invoices" => "INVOICE",
                    "Contacts" => "CONTACT",
                    _ => return None,
                };
                Some(Event {
                    resource_url: format!("{}{API_PATH}/{}/{}", self.base_url, c.resource, c.id),
                    resource_id: c.id.clone(),
                    event_type: if c.event == "CREATE" {
                        "CREATE"
                    } else {
                        "UPDATE"
                    },
                    event_category: category,
                    tenant_id: report.tenant_id.clone(),
                    data: None,
                })
            })
            .collect();
        if !events.is_empty() && self.webhooks.target_url().is_some() {
            let me = self.clone();
            let delivery = tokio::spawn(async move { me.webhooks.deliver(events).await });
            if req.await_webhooks {
                let _ = delivery.await;
            }
        }
        Ok(report)
    }
}

/// The router.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    // xero-identity.yaml spells the connections path `/Connections`; Xero
    // answers both.
    const CONNECTIONS_AS_SPECIFIED: &str = "/Connections";
    Router::new()
        .route(AUTHORIZE_PATH, get(authorize).post(approve))
        .route(TOKEN_PATH, post(token))
        .route(REVOCATION_PATH, post(revocation))
        .route(CONNECTIONS_PATH, get(connections))
        .route(CONNECTIONS_AS_SPECIFIED, get(connections))
        .route(
            &format!("{CONNECTIONS_PATH}/{{id}}"),
            axum::routing::delete(disconnect),
        )
        .route(
            &format!("{CONNECTIONS_AS_SPECIFIED}/{{id}}"),
            axum::routing::delete(disconnect),
        )
        .route(&format!("{API_PATH}/{{resource}}"), get(api_list))
        .route(&format!("{API_PATH}/{{resource}}/{{id}}"), get(api_one))
        .route("/sandbox", get(info))
        .route("/sandbox/books", get(books_handler))
        .route("/sandbox/changes", post(changes_handler))
        .route("/sandbox/stats", get(stats).delete(reset_stats))
        .route("/sandbox/faults", get(get_faults).post(set_faults))
        .route("/sandbox/limits", get(get_limits).post(set_limits))
        .route("/sandbox/limits/reset", post(reset_limits))
        .route(
            "/sandbox/webhooks",
            axum::routing::put(set_webhook).delete(clear_webhook),
        )
        .route("/sandbox/webhooks/intent", post(intent))
        .route("/sandbox/tokens", post(issue_tokens))
        .route("/sandbox/tokens/expire", post(expire_tokens))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            count_requests,
        ))
        .with_state(shared)
}

/// The path with ids replaced, for the per-path counters.
fn path_key(method: &Method, path: &str) -> String {
    let api: Option<Vec<&str>> = path
        .strip_prefix(API_PATH)
        .and_then(|rest| rest.strip_prefix('/'))
        .map(|rest| rest.split('/').collect());
    let connections = CONNECTIONS_PATH.trim_start_matches('/');
    let shape = match api.as_deref() {
        Some([r]) => format!("{API_PATH}/{}", canonical(r)),
        Some([r, _]) => format!("{API_PATH}/{}/{{id}}", canonical(r)),
        Some(_) => path.to_owned(),
        None => match path.trim_start_matches('/').split('/').collect::<Vec<_>>()[..] {
            [c, _] if c.eq_ignore_ascii_case(connections) => format!("{CONNECTIONS_PATH}/{{id}}"),
            _ => path.to_owned(),
        },
    };
    format!("{method} {shape}")
}

fn canonical(r: &str) -> String {
    Resource::from_segment(r).map_or_else(|| r.to_owned(), |r| r.name().to_owned())
}

async fn count_requests(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let key = path_key(req.method(), req.uri().path());
    tracing::debug!(request = %key, "sandbox request");
    let response = next.run(req).await;
    let mut st = lock(&s.stats);
    *st.calls.entry(key).or_default() += 1;
    *st.statuses
        .entry(response.status().as_u16().to_string())
        .or_default() += 1;
    response
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"Title": "Not Found", "Status": 404, "Detail": "no such path in the Xero sandbox"}))).into_response()
}

fn parse_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                crate::identity::form_decode(k),
                crate::identity::form_decode(v),
            )
        })
        .collect()
}

fn pairs_map(pairs: Vec<(String, String)>) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for (k, v) in pairs {
        m.entry(k).or_insert(v);
    }
    m
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn bearer(h: &HeaderMap) -> Option<&str> {
    let v = header(h, AUTHORIZATION.as_str())?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

// ---------------------------------------------------------------- identity

fn oauth_error(f: OAuthFailure) -> Response {
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = (status, Json(json!({"error": f.error}))).into_response();
    let h = r.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if f.status == 401 {
        h.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"xero-sandbox\""),
        );
    }
    r
}

fn outcome(o: AuthorizeOutcome) -> Response {
    match o {
        AuthorizeOutcome::Redirect(url) => match HeaderValue::from_str(&url) {
            Ok(v) => (StatusCode::FOUND, [(LOCATION, v)]).into_response(),
            Err(_) => (
                StatusCode::BAD_REQUEST,
                html::error_page("the redirect URI is not a valid header value"),
            )
                .into_response(),
        },
        AuthorizeOutcome::Error(message) => {
            (StatusCode::BAD_REQUEST, html::error_page(&message)).into_response()
        }
        AuthorizeOutcome::Page { .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, "unexpected").into_response()
        }
    }
}

async fn authorize(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let q = pairs_map(parse_pairs(req.uri().query().unwrap_or("")));
    let tenants: Vec<Uuid> = s.orgs.iter().map(|o| read(o).tenant_id()).collect();
    match s.identity.authorize(&q, &tenants) {
        AuthorizeOutcome::Page { nonce, pending } => {
            let orgs: Vec<(Uuid, String)> = tenants
                .iter()
                .map(|t| (*t, s.tenant_names.get(t).cloned().unwrap_or_default()))
                .collect();
            html::approve_page(&nonce, &s.identity.cfg.client_id, &pending.scopes, &orgs)
                .into_response()
        }
        other => outcome(other),
    }
}

async fn approve(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let pairs = parse_pairs(&String::from_utf8_lossy(&body));
    let mut nonce = String::new();
    let mut allow = false;
    let mut tenants = Vec::new();
    for (k, v) in pairs {
        match k.as_str() {
            "nonce" => nonce = v,
            "action" => allow = v == "allow",
            "tenant" => {
                if let Ok(t) = Uuid::parse_str(&v) {
                    if s.tenant_index.contains_key(&t) {
                        tenants.push(t);
                    }
                }
            }
            _ => {}
        }
    }
    outcome(s.identity.decide(&nonce, allow, tenants))
}

async fn token(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = pairs_map(parse_pairs(&String::from_utf8_lossy(&body)));
    match s
        .identity
        .token(header(&headers, AUTHORIZATION.as_str()), &form)
    {
        Ok(_) if s.faults.lose_token_response() => {
            *lock(&s.stats)
                .faults
                .entry("lost_token_response".into())
                .or_default() += 1;
            dropped_response()
        }
        Ok(t) => {
            let mut r = Json(t).into_response();
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r.headers_mut()
                .insert(PRAGMA, HeaderValue::from_static("no-cache"));
            r
        }
        Err(f) => oauth_error(f),
    }
}

/// A response whose connection breaks before any of the body arrives.
fn dropped_response() -> Response {
    let broken = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "injected connection drop",
        ))
    });
    let mut r = Response::new(Body::from_stream(broken));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

async fn revocation(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = pairs_map(parse_pairs(&String::from_utf8_lossy(&body)));
    match s
        .identity
        .revoke(header(&headers, AUTHORIZATION.as_str()), &form)
    {
        Ok(()) => StatusCode::OK.into_response(),
        Err(f) => oauth_error(f),
    }
}

fn unauthorized(why: AccessDenied) -> Response {
    let detail = match why {
        AccessDenied::Expired => "TokenExpired: token expired",
        _ => "AuthenticationUnsuccessful",
    };
    let mut r = (
        StatusCode::UNAUTHORIZED,
        Json(json!({"Type": null, "Title": "Unauthorized", "Status": 401, "Detail": detail, "Instance": Uuid::new_v4(), "Extensions": {}})),
    )
        .into_response();
    let challenge = if why == AccessDenied::Expired {
        "Bearer error=\"invalid_token\", error_description=\"The token expired\""
    } else {
        "Bearer"
    };
    r.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    r
}

fn forbidden(detail: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(json!({"Type": null, "Title": "Forbidden", "Status": 403, "Detail": detail, "Instance": Uuid::new_v4(), "Extensions": {}})),
    )
        .into_response()
}

async fn connections(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let q = pairs_map(parse_pairs(req.uri().query().unwrap_or("")));
    let auth_event = q
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authEventId"))
        .map(|(_, v)| v.as_str());
    let names = |t: &Uuid| s.tenant_names.get(t).cloned().unwrap_or_default();
    match s
        .identity
        .connections(bearer(req.headers()), names, auth_event)
    {
        Ok(c) => Json(c).into_response(),
        Err(e) => unauthorized(e),
    }
}

async fn disconnect(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match s.identity.disconnect(bearer(&headers), &id) {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => unauthorized(e),
    }
}

// --------------------------------------------------------------- accounting

fn api_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, Json(json!({"ErrorNumber": if status == StatusCode::NOT_FOUND { 17 } else { 10 }, "Type": kind, "Message": message}))).into_response()
}

fn limit_headers(h: &mut HeaderMap, r: Remaining) {
    for (name, v) in [
        (MIN_LIMIT_REMAINING, r.minute),
        (DAY_LIMIT_REMAINING, r.day),
        (APP_MIN_LIMIT_REMAINING, r.app_minute),
    ] {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&v.to_string()),
        ) {
            h.insert(n, v);
        }
    }
}

fn rate_limited(l: Limited) -> Response {
    // Like Xero's, a 429 names the problem and the wait; the remaining
    // counts come with successful calls.
    let mut r = StatusCode::TOO_MANY_REQUESTS.into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&l.retry_after_secs.to_string()) {
        h.insert(RETRY_AFTER, v);
    }
    if let Ok(n) = HeaderName::from_bytes(RATE_LIMIT_PROBLEM.as_bytes()) {
        h.insert(n, HeaderValue::from_static(l.problem));
    }
    r
}

/// Whether the consent's scopes cover `r` (granular, legacy and write
/// scopes all count).
pub(crate) fn scope_allows(scopes: &[String], r: Resource) -> bool {
    let has = |s: &str| {
        scopes
            .iter()
            .any(|x| x == s || Some(x.as_str()) == s.strip_suffix(".read"))
    };
    let tx = has(wire::TRANSACTIONS_READ);
    match r {
        Resource::Organisation
        | Resource::Accounts
        | Resource::TaxRates
        | Resource::TrackingCategories
        | Resource::Currencies
        | Resource::Items => has(wire::SETTINGS_READ),
        Resource::Contacts => has(wire::CONTACTS_READ),
        Resource::Invoices | Resource::CreditNotes => tx || has(wire::INVOICES_READ),
        Resource::Payments => tx || has(wire::PAYMENTS_READ),
        Resource::BankTransactions => tx || has(wire::BANK_TRANSACTIONS_READ),
        Resource::ManualJournals => tx || has(wire::MANUAL_JOURNALS_READ),
        Resource::Journals => has(wire::JOURNALS_READ),
    }
}

async fn api_list(
    State(s): State<Arc<Shared>>,
    Path(resource): Path<String>,
    req: Request,
) -> Response {
    api(s, resource, None, req).await
}

async fn api_one(
    State(s): State<Arc<Shared>>,
    Path((resource, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    api(s, resource, Some(id), req).await
}

async fn api(s: Arc<Shared>, resource: String, id: Option<String>, req: Request) -> Response {
    let headers = req.headers();
    let Some(resource) = Resource::from_segment(&resource) else {
        return api_error(
            StatusCode::NOT_FOUND,
            "NotFoundException",
            "the sandbox does not serve this resource",
        );
    };
    let access = match s.identity.access(bearer(headers)) {
        Ok(a) => a,
        Err(e) => return unauthorized(e),
    };
    let Some(tenant_raw) = header(headers, TENANT_HEADER)
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "the xero-tenant-id header is required",
        );
    };
    let Ok(tenant) = Uuid::parse_str(tenant_raw) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "the xero-tenant-id header is not a GUID",
        );
    };
    let Some(&org_index) = s
        .tenant_index
        .get(&tenant)
        .filter(|_| access.tenants.contains(&tenant))
    else {
        return forbidden("AuthorizationUnsuccessful");
    };
    if !scope_allows(&access.scopes, resource) {
        return forbidden(
            "AuthorizationUnsuccessful: the consent's scopes do not cover this resource",
        );
    }
    let params = match ListParams::parse(
        &parse_pairs(req.uri().query().unwrap_or("")),
        header(headers, "if-modified-since"),
    ) {
        Ok(p) => p,
        Err(BadQuery(m)) => return api_error(StatusCode::BAD_REQUEST, "ValidationException", &m),
    };
    let (in_flight, remaining) = match s.limiter.acquire(tenant) {
        Ok(ok) => ok,
        Err(l) => {
            *lock(&s.stats)
                .rate_limited
                .entry(l.problem.to_owned())
                .or_default() += 1;
            return rate_limited(l);
        }
    };
    let fault = s.faults.decide(resource);
    let mut response = match fault {
        Fault::Fail(code) => {
            *lock(&s.stats).faults.entry("failed".into()).or_default() += 1;
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            api_error(status, "ServiceUnavailableException", "injected fault")
        }
        Fault::Drop => {
            *lock(&s.stats).faults.entry("dropped".into()).or_default() += 1;
            dropped_response()
        }
        Fault::Slow(_) | Fault::None => {
            if let Fault::Slow(ms) = fault {
                *lock(&s.stats).faults.entry("slowed".into()).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let shared = s.clone();
            let result = tokio::task::spawn_blocking(move || {
                respond(&shared, org_index, resource, id.as_deref(), &params)
            })
            .await;
            match result {
                Ok(Ok(body)) => {
                    let mut r = Response::new(Body::from(body));
                    r.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/json; charset=utf-8"),
                    );
                    r
                }
                Ok(Err((status, kind, message))) => api_error(status, kind, &message),
                Err(_) => api_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "the sandbox failed to answer",
                ),
            }
        }
    };
    limit_headers(response.headers_mut(), remaining);
    drop(in_flight);
    response
}

type ApiFailure = (StatusCode, &'static str, String);

fn bad(m: impl Into<String>) -> ApiFailure {
    (StatusCode::BAD_REQUEST, "ValidationException", m.into())
}

fn missing() -> ApiFailure {
    (
        StatusCode::NOT_FOUND,
        "NotFoundException",
        "The resource you're looking for cannot be found".into(),
    )
}

/// Writes `{"pagination": …, "<Envelope>": [...]}`.
fn envelope<'a, T: Serialize + 'a>(
    name: &str,
    items: impl Iterator<Item = &'a T>,
    pagination: Option<Pagination>,
    summary_only: bool,
) -> Result<Vec<u8>, ApiFailure> {
    let fail = |e: serde_json::Error| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            e.to_string(),
        )
    };
    let mut out = Vec::with_capacity(64 * 1024);
    out.push(b'{');
    if let Some(p) = pagination {
        out.extend_from_slice(b"\"pagination\":");
        serde_json::to_writer(&mut out, &p).map_err(fail)?;
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":[");
    for (k, item) in items.enumerate() {
        if k > 0 {
            out.push(b',');
        }
        if summary_only {
            let mut v = serde_json::to_value(item).map_err(fail)?;
            if let Some(m) = v.as_object_mut() {
                m.remove("LineItems");
            }
            serde_json::to_writer(&mut out, &v).map_err(fail)?;
        } else {
            serde_json::to_writer(&mut out, item).map_err(fail)?;
        }
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

fn one<T: Row + Serialize>(
    name: &str,
    rows: &[T],
    by_id: &HashMap<Uuid, usize>,
    id: &str,
) -> Result<Vec<u8>, ApiFailure> {
    let uuid = Uuid::parse_str(id.trim()).map_err(|_| missing())?;
    let i = by_id.get(&uuid).copied().ok_or_else(missing)?;
    envelope(name, rows.get(i).into_iter(), None, false)
}

fn paged<T: Listable>(
    name: &str,
    rows: &[T],
    p: &ListParams,
    org: &OrgData,
) -> Result<Vec<u8>, ApiFailure> {
    let sel =
        query::select(name, rows, p, &org.cache, org.version).map_err(|BadQuery(m)| bad(m))?;
    let page = query::page_of(sel.as_deref().map(Vec::as_slice), rows.len(), p);
    envelope(
        name,
        page.indices.iter().filter_map(|&i| rows.get(i as usize)),
        Some(page.pagination),
        p.summary_only,
    )
}

fn unpaged<T: Listable>(
    name: &str,
    rows: &[T],
    p: &ListParams,
    org: &OrgData,
) -> Result<Vec<u8>, ApiFailure> {
    let sel =
        query::select(name, rows, p, &org.cache, org.version).map_err(|BadQuery(m)| bad(m))?;
    match sel {
        None => envelope(name, rows.iter().filter(|r| !r.deleted()), None, false),
        Some(sel) => envelope(
            name,
            sel.iter()
                .filter_map(|&i| rows.get(i as usize))
                .filter(|r| !r.deleted()),
            None,
            false,
        ),
    }
}

fn respond(
    s: &Shared,
    org_index: usize,
    resource: Resource,
    id: Option<&str>,
    p: &ListParams,
) -> Result<Vec<u8>, ApiFailure> {
    let org = read(&s.orgs[org_index]);
    let org = &*org;
    let name = resource.envelope();
    if let Some(id) = id {
        return match resource {
            Resource::Invoices => {
                let by_number = || {
                    org.invoices
                        .rows
                        .iter()
                        .position(|i| i.invoice_number.eq_ignore_ascii_case(id.trim()))
                        .ok_or_else(missing)
                        .and_then(|i| {
                            envelope(name, org.invoices.rows.get(i).into_iter(), None, false)
                        })
                };
                one(name, &org.invoices.rows, &org.invoices.by_id, id).or_else(|_| by_number())
            }
            Resource::Contacts => one(name, &org.contacts.rows, &org.contacts.by_id, id),
            Resource::CreditNotes => one(name, &org.credit_notes.rows, &org.credit_notes.by_id, id),
            Resource::Payments => one(name, &org.payments.rows, &org.payments.by_id, id),
            Resource::BankTransactions => one(
                name,
                &org.bank_transactions.rows,
                &org.bank_transactions.by_id,
                id,
            ),
            Resource::ManualJournals => one(
                name,
                &org.manual_journals.rows,
                &org.manual_journals.by_id,
                id,
            ),
            Resource::Accounts => {
                let uuid = Uuid::parse_str(id.trim()).map_err(|_| missing())?;
                envelope(
                    name,
                    org.accounts.iter().filter(|a| a.id == uuid && !a.deleted),
                    None,
                    false,
                )
                .and_then(|b| {
                    if b.ends_with(b"[]}") {
                        Err(missing())
                    } else {
                        Ok(b)
                    }
                })
            }
            Resource::Items => {
                let uuid = Uuid::parse_str(id.trim()).ok();
                let code = id.trim();
                let found: Vec<_> = org
                    .items
                    .iter()
                    .filter(|i| {
                        Some(i.id) == uuid
                            || crate::chart::ITEMS[i.def].code.eq_ignore_ascii_case(code)
                    })
                    .collect();
                if found.is_empty() {
                    Err(missing())
                } else {
                    envelope(name, found.into_iter(), None, false)
                }
            }
            Resource::Journals => {
                let by_number = id
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|n| org.journals.get(n));
                let uuid = Uuid::parse_str(id.trim()).ok();
                let j = by_number
                    .or_else(|| uuid.and_then(|u| org.journals.iter().find(|j| j.id == u)))
                    .ok_or_else(missing)?;
                envelope(name, std::iter::once(j), None, false)
            }
            _ => Err(missing()),
        };
    }
    match resource {
        Resource::Organisation => envelope(name, std::iter::once(&org.org), None, false),
        Resource::Accounts => unpaged(name, &org.accounts, p, org),
        Resource::Items => unpaged(name, &org.items, p, org),
        Resource::TaxRates => envelope(name, org.tax_rates.iter(), None, false),
        Resource::Currencies => envelope(name, org.currencies.iter(), None, false),
        Resource::TrackingCategories => {
            let cats: Vec<_> = org
                .tracking
                .iter()
                .filter(|c| p.include_archived || c.status == "ACTIVE")
                .map(|c| {
                    let mut c = c.clone();
                    if !p.include_archived {
                        c.options.retain(|o| o.status == "ACTIVE");
                    }
                    c
                })
                .collect();
            envelope(name, cats.iter(), None, false)
        }
        Resource::Contacts => paged(name, &org.contacts.rows, p, org),
        Resource::Invoices => paged(name, &org.invoices.rows, p, org),
        Resource::CreditNotes => paged(name, &org.credit_notes.rows, p, org),
        Resource::Payments => paged(name, &org.payments.rows, p, org),
        Resource::BankTransactions => paged(name, &org.bank_transactions.rows, p, org),
        Resource::ManualJournals => paged(name, &org.manual_journals.rows, p, org),
        Resource::Journals => {
            let page = query::journal_page(&org.journals, p);
            envelope(
                name,
                page.iter().filter_map(|&i| org.journals.get(i as usize)),
                None,
                false,
            )
        }
    }
}

// ------------------------------------------------------------------ control

fn bad_request(message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "bad_request", "message": message.into()})),
    )
        .into_response()
}

async fn info(State(s): State<Arc<Shared>>) -> Response {
    let orgs: Vec<Value> = s
        .orgs
        .iter()
        .map(|o| {
            let o = read(o);
            json!({"tenant_id": o.tenant_id(), "name": o.org.name, "invoices": o.invoices.len(), "contacts": o.contacts.len(), "journals": o.journals.len()})
        })
        .collect();
    Json(json!({
        "base_url": s.base_url,
        "client_id": s.identity.cfg.client_id,
        "auto_approve": s.identity.cfg.auto_approve,
        "organisations": orgs,
        "endpoints": {
            "authorize": format!("{}{AUTHORIZE_PATH}", s.base_url),
            "token": format!("{}{TOKEN_PATH}", s.base_url),
            "revocation": format!("{}{REVOCATION_PATH}", s.base_url),
            "connections": format!("{}{CONNECTIONS_PATH}", s.base_url),
            "api": format!("{}{API_PATH}", s.base_url),
        },
        "limits": s.limiter.config(),
        "webhook_url": s.webhooks.target_url(),
    }))
    .into_response()
}

#[derive(Deserialize)]
struct BooksQuery {
    tenant: Option<String>,
    detail: Option<bool>,
}

async fn books_handler(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let pairs = pairs_map(parse_pairs(req.uri().query().unwrap_or("")));
    let q = BooksQuery {
        tenant: pairs.get("tenant").cloned(),
        detail: pairs.get("detail").map(|d| d != "false"),
    };
    let Some(i) = s.org_index(q.tenant.as_deref()) else {
        return bad_request("unknown tenant");
    };
    let shared = s.clone();
    let detail = q.detail.unwrap_or(true);
    match tokio::task::spawn_blocking(move || books::books(&read(&shared.orgs[i]), detail)).await {
        Ok(v) => Json(v).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "books failed").into_response(),
    }
}

async fn changes_handler(
    State(s): State<Arc<Shared>>,
    body: Result<Json<ChangeRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return bad_request(e.body_text()),
    };
    match s.apply_changes(&req).await {
        Ok(r) => Json(r).into_response(),
        Err(m) => bad_request(m),
    }
}

async fn stats(State(s): State<Arc<Shared>>) -> Response {
    let st = lock(&s.stats).clone();
    Json(json!({
        "calls": st.calls,
        "statuses": st.statuses,
        "rate_limited": st.rate_limited,
        "faults": st.faults,
        "identity": s.identity.stats(),
        "webhooks": s.webhooks.stats(),
    }))
    .into_response()
}

async fn reset_stats(State(s): State<Arc<Shared>>) -> Response {
    *lock(&s.stats) = Stats::default();
    StatusCode::NO_CONTENT.into_response()
}

async fn get_faults(State(s): State<Arc<Shared>>) -> Response {
    Json(s.faults.settings()).into_response()
}

async fn set_faults(
    State(s): State<Arc<Shared>>,
    body: Result<Json<FaultSettings>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(f)) => {
            s.faults.set(f);
            Json(f).into_response()
        }
        Err(e) => bad_request(e.body_text()),
    }
}

async fn get_limits(State(s): State<Arc<Shared>>) -> Response {
    Json(s.limiter.config()).into_response()
}

async fn set_limits(
    State(s): State<Arc<Shared>>,
    body: Result<Json<SandboxLimits>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(l)) => {
            s.limiter.set_config(l);
            Json(l).into_response()
        }
        Err(e) => bad_request(e.body_text()),
    }
}

async fn reset_limits(State(s): State<Arc<Shared>>) -> Response {
    s.limiter.reset();
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookBody {
    url: String,
    key: String,
}

async fn set_webhook(
    State(s): State<Arc<Shared>>,
    body: Result<Json<WebhookBody>, JsonRejection>,
) -> Response {
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return bad_request(e.body_text()),
    };
    if reqwest::Url::parse(&b.url).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
        return bad_request("url must be an http(s) URL");
    }
    s.webhooks.set_target(Some(WebhookTarget {
        url: b.url.clone(),
        key: SecretString::new(b.key),
    }));
    Json(json!({"url": b.url})).into_response()
}

async fn clear_webhook(State(s): State<Arc<Shared>>) -> Response {
    s.webhooks.set_target(None);
    StatusCode::NO_CONTENT.into_response()
}

async fn intent(State(s): State<Arc<Shared>>) -> Response {
    match s.webhooks.intent().await {
        Some(r) => Json(r).into_response(),
        None => bad_request("no webhook URL is configured"),
    }
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct TokensBody {
    scopes: Option<Vec<String>>,
    tenants: Option<Vec<String>>,
}

async fn issue_tokens(State(s): State<Arc<Shared>>, body: Option<Json<TokensBody>>) -> Response {
    let b = body.map(|Json(b)| b).unwrap_or_default();
    let tenants: Vec<Uuid> = match b.tenants {
        None => s.orgs.iter().map(|o| read(o).tenant_id()).collect(),
        Some(list) => {
            let mut out = Vec::new();
            for t in list {
                match Uuid::parse_str(&t)
                    .ok()
                    .filter(|u| s.tenant_index.contains_key(u))
                {
                    Some(u) => out.push(u),
                    None => return bad_request("unknown tenant"),
                }
            }
            out
        }
    };
    let scopes = b.scopes.unwrap_or_else(crate::all_read_scopes);
    let t = s.identity.grant_directly(tenants.clone(), scopes);
    Json(json!({
        "access_token": t.access_token,
        "refresh_token": t.refresh_token,
        "expires_in": t.expires_in,
        "token_type": t.token_type,
        "scope": t.scope,
        "tenant_ids": tenants,
    }))
    .into_response()
}

async fn expire_tokens(State(s): State<Arc<Shared>>) -> Response {
    Json(json!({"expired": s.identity.expire_access_tokens()})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let g: Vec<String> = wire::GRANULAR_READ_SCOPES
            .iter()
            .map(|s| s.to_string())
            .collect();
        let l: Vec<String> = wire::LEGACY_READ_SCOPES
            .iter()
            .map(|s| s.to_string())
            .collect();
        for r in Resource::ALL {
            assert!(scope_allows(&g, r), "{r}");
            assert!(scope_allows(&l, r), "{r}");
        }
        let only_contacts = vec!["accounting.contacts".to_owned()];
        assert!(scope_allows(&only_contacts, Resource::Contacts));
        assert!(!scope_allows(&only_contacts, Resource::Invoices));
        assert!(!scope_allows(&only_contacts, Resource::Journals));
    }

    #[test]
    fn path_keys() {
        assert_eq!(
            path_key(&Method::GET, "/api.xro/2.0/invoices"),
            "GET /api.xro/2.0/Invoices"
        );
        assert_eq!(
            path_key(&Method::GET, "/api.xro/2.0/Invoices/abc"),
            "GET /api.xro/2.0/Invoices/{id}"
        );
        assert_eq!(
            path_key(&Method::POST, "/connect/token"),
            "POST /connect/token"
        );
    }
}
