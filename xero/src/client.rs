//! The Accounting API client for one organisation.
//!
//! Built for ingestion: records come back as raw JSON (nothing dropped), one
//! page at a time so each page can be made durable before the next is asked
//! for, with the cursor of the next page exposed for checkpoints. Every call
//! goes through the organisation's [`OrgLimiter`] and a retry loop that knows
//! which failures are worth repeating:
//!
//! - 5xx, timeouts and connection failures: bounded exponential backoff with
//!   jitter (backon's schedule), then a typed error;
//! - 429 minute/appminute: wait `Retry-After` (every caller sharing the
//!   limiter waits too), then retry; 429 day: [`ClientError::DayLimitReached`]
//!   at once — waiting hours inside a job is worse than rescheduling it;
//! - 401: ask the [`TokenProvider`] for a fresh token once, retry once;
//! - any other 4xx: [`ClientError::Api`] with Xero's message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::Stream;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, IF_MODIFIED_SINCE};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::dates::{self, DateError};
use crate::limits::{
    retry_after, Clock, DayLimitReached, LimitConfig, OrgLimiter, RateLimitProblem, RateLimits,
};
use crate::oauth::XERO_API_BASE;
use crate::resources::{Paging, Resource, MAX_PAGE_SIZE, OFFSET_PAGE_SIZE};
use crate::secret::{scrub, SecretString};
use crate::token::{TokenError, TokenProvider};

/// The longest `Retry-After` of a 5xx this client waits out before retrying.
const MAX_SERVER_RETRY_AFTER: Duration = Duration::from_secs(120);

/// The header naming the organisation of a call.
pub const TENANT_HEADER: &str = "xero-tenant-id";

/// When to try again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Tries in all for a call failing with 5xx or a transport error.
    pub max_attempts: u32,
    /// First backoff delay.
    pub min_delay: Duration,
    /// Largest backoff delay.
    pub max_delay: Duration,
    /// Randomise delays (spreads retries of many jobs).
    pub jitter: bool,
    /// How many minute/appminute 429s one call may wait out.
    pub max_rate_limit_waits: u32,
    /// Wait for a minute 429 without a usable `Retry-After`.
    pub default_minute_retry_after: Duration,
    /// Wait reported for a day 429 without a usable `Retry-After`.
    pub default_day_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            jitter: true,
            max_rate_limit_waits: 10,
            default_minute_retry_after: Duration::from_secs(60),
            default_day_retry_after: Duration::from_secs(60 * 60),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self) -> impl Iterator<Item = Duration> {
        let mut b = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize);
        if self.jitter {
            b = b.with_jitter();
        }
        b.build()
    }
}

/// Why a call failed. Never carries a token.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The organisation's day limit is used up: reschedule after `retry_after`.
    #[error("Xero day limit reached; retry after {}s", retry_after.as_secs())]
    DayLimitReached {
        /// Time until calls may succeed again.
        retry_after: Duration,
    },
    /// Minute limits kept answering 429 beyond the allowed waits.
    #[error("Xero {problem} rate limit still hit after {waits} waits")]
    RateLimited {
        /// Which limit.
        problem: RateLimitProblem,
        /// Waits made.
        waits: u32,
    },
    /// 401 again after a refresh.
    #[error("Xero rejected the access token after a refresh: {message}")]
    Unauthorized {
        /// Xero's message.
        message: String,
    },
    /// A 4xx other than 401/429.
    #[error("Xero answered HTTP {status} for {path}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The resource path.
        path: String,
        /// Xero's error `Type`, when given.
        error_type: Option<String>,
        /// Xero's message (validation messages included).
        message: String,
    },
    /// 5xx on every attempt.
    #[error("Xero answered HTTP {status} for {path} on all {attempts} attempts: {message}")]
    Server {
        /// Last HTTP status.
        status: u16,
        /// The resource path.
        path: String,
        /// Attempts made.
        attempts: u32,
        /// Xero's message.
        message: String,
    },
    /// Could not talk to Xero (connect, timeout, broken body) on every attempt.
    #[error("could not reach Xero for {path} after {attempts} attempts")]
    Transport {
        /// The resource path.
        path: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        #[source]
        source: reqwest::Error,
    },
    /// A response that does not follow the contract.
    #[error("unexpected Xero response for {path}: {detail}")]
    Decode {
        /// The resource path.
        path: String,
        /// What was wrong.
        detail: String,
    },
    /// No access token.
    #[error("no Xero access token")]
    Token(#[source] TokenError),
    /// Bad configuration.
    #[error("invalid Xero client configuration: {0}")]
    Config(String),
}

impl ClientError {
    /// Whether a person must consent again before anything works.
    pub fn needs_reconsent(&self) -> bool {
        matches!(self, ClientError::Token(TokenError::ReconsentRequired))
    }

    /// `Some(wait)` if the organisation's day limit is the problem.
    pub fn day_limit_retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::DayLimitReached { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

impl From<DayLimitReached> for ClientError {
    fn from(e: DayLimitReached) -> Self {
        ClientError::DayLimitReached {
            retry_after: e.retry_after,
        }
    }
}

/// Builds a [`XeroClient`].
pub struct XeroClientBuilder {
    tenant_id: String,
    tokens: Arc<dyn TokenProvider>,
    api_base: String,
    limits: Option<Arc<RateLimits>>,
    http: Option<reqwest::Client>,
    retry: RetryPolicy,
    timeout: Duration,
}

impl XeroClientBuilder {
    /// Accounting API base (default Xero's; see `XeroEndpoints::api_base`).
    pub fn api_base(mut self, base: impl Into<String>) -> Self {
        self.api_base = base.into();
        self
    }

    /// The shared limiter registry (default: a private one with Xero's
    /// limits; share one per process so organisations and the app limit
    /// are counted once).
    pub fn limits(mut self, limits: Arc<RateLimits>) -> Self {
        self.limits = Some(limits);
        self
    }

    /// A caller-built HTTP client (for connection reuse across clients).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Timeout of one HTTP call (when this builder makes the HTTP client).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<XeroClient, ClientError> {
        let mut api_base = Url::parse(self.api_base.trim())
            .map_err(|e| ClientError::Config(format!("API base {:?}: {e}", self.api_base)))?;
        if !matches!(api_base.scheme(), "http" | "https") || api_base.cannot_be_a_base() {
            return Err(ClientError::Config(format!(
                "API base {:?} is not an http(s) URL",
                self.api_base
            )));
        }
        if !api_base.path().ends_with('/') {
            let p = format!("{}/", api_base.path());
            api_base.set_path(&p);
        }
        let tenant_header = HeaderValue::from_str(&self.tenant_id)
            .map_err(|_| ClientError::Config("tenant id is not a valid header value".into()))?;
        let http = match self.http {
            Some(h) => h,
            None => reqwest::Client::builder()
                .timeout(self.timeout)
                .connect_timeout(Duration::from_secs(10))
                .user_agent(concat!("ledgerlake-xero/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| ClientError::Config(format!("HTTP client: {e}")))?,
        };
        let limits = self
            .limits
            .unwrap_or_else(|| RateLimits::new(LimitConfig::default()));
        let limiter = limits.for_org(&self.tenant_id);
        Ok(XeroClient {
            inner: Arc::new(Inner {
                clock: limits.clock(),
                tenant_id: self.tenant_id,
                tenant_header,
                tokens: self.tokens,
                api_base,
                http,
                limiter,
                retry: self.retry,
                calls: AtomicU64::new(0),
            }),
        })
    }
}

struct Inner {
    tenant_id: String,
    tenant_header: HeaderValue,
    tokens: Arc<dyn TokenProvider>,
    api_base: Url,
    http: reqwest::Client,
    limiter: Arc<OrgLimiter>,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    calls: AtomicU64,
}

/// The Accounting API for one organisation. Cheap to clone; clones share
/// the call counter and limits.
#[derive(Clone)]
pub struct XeroClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for XeroClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XeroClient")
            .field("tenant_id", &self.inner.tenant_id)
            .field("api_base", &self.inner.api_base.as_str())
            .field("calls", &self.calls_made())
            .finish_non_exhaustive()
    }
}

/// A successful raw response.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// 200, or 304 when `If-Modified-Since` matched nothing.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub body: Vec<u8>,
}

impl XeroClient {
    /// A builder for organisation `tenant_id` (the `xero-tenant-id`).
    pub fn builder(
        tenant_id: impl Into<String>,
        tokens: Arc<dyn TokenProvider>,
    ) -> XeroClientBuilder {
        XeroClientBuilder {
            tenant_id: tenant_id.into(),
            tokens,
            api_base: XERO_API_BASE.to_owned(),
            limits: None,
            http: None,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(60),
        }
    }

    /// The organisation.
    pub fn tenant_id(&self) -> &str {
        &self.inner.tenant_id
    }

    /// HTTP requests sent so far (retries included).
    pub fn calls_made(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }

    /// The organisation's limiter.
    pub fn limiter(&self) -> &Arc<OrgLimiter> {
        &self.inner.limiter
    }

    /// Pages through a resource; see [`Pager::next_page`].
    pub fn pages(&self, request: ListRequest) -> Pager {
        let next = Some(request.start.unwrap_or(match request.resource.paging() {
            Paging::Page => PageCursor::Page(1),
            Paging::Offset => PageCursor::Offset(0),
            Paging::None => PageCursor::Single,
        }));
        Pager {
            client: self.clone(),
            request,
            next,
        }
    }

    /// Every record of a request, all pages (convenience for small data).
    pub async fn fetch_all(&self, request: ListRequest) -> Result<Vec<Record>, ClientError> {
        let mut pager = self.pages(request);
        let mut out = Vec::new();
        while let Some(page) = pager.next_page().await? {
            out.extend(page.records);
        }
        Ok(out)
    }

    /// The organisation record.
    pub async fn organisation(&self) -> Result<Record, ClientError> {
        let page = self
            .fetch_page(
                &ListRequest::new(Resource::Organisation),
                PageCursor::Single,
            )
            .await?;
        page.records
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Decode {
                path: Resource::Organisation.path().into(),
                detail: "no organisation in the response".into(),
            })
    }

    /// One page of a resource at `cursor`.
    pub async fn fetch_page(
        &self,
        request: &ListRequest,
        cursor: PageCursor,
    ) -> Result<Page, ClientError> {
        let resource = request.resource;
        let mut query: Vec<(String, String)> = Vec::new();
        match cursor {
            PageCursor::Page(n) => {
                query.push(("page".into(), n.to_string()));
                query.push((
                    "pageSize".into(),
                    request.page_size.clamp(1, MAX_PAGE_SIZE).to_string(),
                ));
            }
            PageCursor::Offset(o) => query.push(("offset".into(), o.to_string())),
            PageCursor::Single => {}
        }
        if resource.info().include_archived && request.include_archived {
            query.push(("includeArchived".into(), "true".into()));
        }
        query.extend(request.params.iter().cloned());
        let since = request
            .if_modified_since
            .filter(|_| resource.supports_if_modified_since());

        let response = self.get(resource.path(), &query, since).await?;
        let envelope = if response.status == StatusCode::NOT_MODIFIED {
            Map::new()
        } else {
            parse_envelope(resource, &response.body)?
        };
        let (records, pagination) = records_and_pagination(resource, envelope)?;
        let next = next_cursor(
            resource,
            cursor,
            request.page_size.clamp(1, MAX_PAGE_SIZE),
            &records,
            &pagination,
        )?;
        Ok(Page {
            resource,
            cursor,
            records,
            pagination,
            next,
        })
    }

    /// A GET under the API base with every rule of this client applied.
    /// `if_modified_since` is sent as UTC `yyyy-MM-ddTHH:mm:ss`.
    pub async fn get(
        &self,
        path: &str,
        query: &[(String, String)],
        if_modified_since: Option<OffsetDateTime>,
    ) -> Result<ApiResponse, ClientError> {
        let inner = &self.inner;
        let url = inner
            .api_base
            .join(path.trim_start_matches('/'))
            .map_err(|e| ClientError::Config(format!("path {path:?}: {e}")))?;
        let retry = inner.retry;
        let mut backoff = retry.backoff();
        let mut attempts = 0u32;
        let mut rate_limit_waits = 0u32;
        let mut refreshed = false;
        let mut token = inner
            .tokens
            .access_token()
            .await
            .map_err(ClientError::Token)?;

        loop {
            let permit = inner.limiter.acquire().await?;
            inner.calls.fetch_add(1, Ordering::Relaxed);
            attempts += 1;
            let mut request = inner
                .http
                .get(url.clone())
                .query(query)
                .bearer_auth(token.expose_secret())
                .header(TENANT_HEADER, inner.tenant_header.clone())
                .header(ACCEPT, "application/json");
            if let Some(t) = if_modified_since {
                request = request.header(IF_MODIFIED_SINCE, dates::format_if_modified_since(t));
            }
            let outcome = match request.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    inner.limiter.observe(&headers);
                    resp.bytes()
                        .await
                        .map(|body| (status, headers, Vec::from(body)))
                }
                Err(e) => Err(e),
            };
            drop(permit);

            let (status, headers, body) = match outcome {
                Ok(ok) => ok,
                Err(e) if is_transient(&e) => match backoff.next() {
                    Some(delay) => {
                        tracing::warn!(
                            tenant = %inner.tenant_id, path, attempt = attempts,
                            delay_ms = delay.as_millis() as u64, error = %e,
                            "Xero call failed; retrying"
                        );
                        inner.clock.sleep(delay).await;
                        continue;
                    }
                    None => {
                        return Err(ClientError::Transport {
                            path: path.into(),
                            attempts,
                            source: e,
                        })
                    }
                },
                Err(e) => {
                    return Err(ClientError::Transport {
                        path: path.into(),
                        attempts,
                        source: e,
                    })
                }
            };
            tracing::debug!(tenant = %inner.tenant_id, path, status = status.as_u16(), "Xero call");

            if status.is_success() || status == StatusCode::NOT_MODIFIED {
                return Ok(ApiResponse {
                    status,
                    headers,
                    body,
                });
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                let problem = RateLimitProblem::from_headers(&headers);
                if problem == RateLimitProblem::Day {
                    let wait = retry_after(&headers).unwrap_or(retry.default_day_retry_after);
                    inner.limiter.rate_limited(&problem, wait);
                    return Err(ClientError::DayLimitReached { retry_after: wait });
                }
                let wait = retry_after(&headers).unwrap_or(retry.default_minute_retry_after);
                inner.limiter.rate_limited(&problem, wait);
                rate_limit_waits += 1;
                if rate_limit_waits > retry.max_rate_limit_waits {
                    return Err(ClientError::RateLimited {
                        problem,
                        waits: rate_limit_waits - 1,
                    });
                }
                tracing::info!(
                    tenant = %inner.tenant_id, path, %problem, wait_s = wait.as_secs(),
                    "Xero rate limit hit; waiting"
                );
                // The limiter now holds every caller until the wait is over.
                continue;
            }
            if status == StatusCode::UNAUTHORIZED {
                if !refreshed {
                    refreshed = true;
                    tracing::info!(tenant = %inner.tenant_id, "Xero returned 401; refreshing token once");
                    token = inner
                        .tokens
                        .refresh(&token)
                        .await
                        .map_err(ClientError::Token)?;
                    continue;
                }
                let (_, message) = error_message(&body, &token);
                return Err(ClientError::Unauthorized { message });
            }
            if status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED {
                if let Some(delay) = backoff.next() {
                    // A 503 may say how long to stay away; honour it, within reason.
                    let delay = retry_after(&headers)
                        .map_or(delay, |ra| ra.min(MAX_SERVER_RETRY_AFTER).max(delay));
                    tracing::warn!(
                        tenant = %inner.tenant_id, path, status = status.as_u16(),
                        attempt = attempts, delay_ms = delay.as_millis() as u64,
                        "Xero server error; retrying"
                    );
                    inner.clock.sleep(delay).await;
                    continue;
                }
                let (_, message) = error_message(&body, &token);
                return Err(ClientError::Server {
                    status: status.as_u16(),
                    path: path.into(),
                    attempts,
                    message,
                });
            }
            let (error_type, message) = error_message(&body, &token);
            return Err(ClientError::Api {
                status: status.as_u16(),
                path: path.into(),
                error_type,
                message,
            });
        }
    }
}

fn is_transient(e: &reqwest::Error) -> bool {
    e.is_timeout() || e.is_connect() || e.is_request() || e.is_body()
}

/// Xero's error text from a body: `Message` (+ validation messages), or the
/// problem-details `Detail`/`Title`, or the text itself; bounded and with
/// the token removed in case it was echoed.
fn error_message(body: &[u8], token: &SecretString) -> (Option<String>, String) {
    let text = String::from_utf8_lossy(body);
    let mut error_type = None;
    let mut message = String::new();
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
        error_type = map.get("Type").and_then(Value::as_str).map(str::to_owned);
        let first = ["Message", "Detail", "Title"]
            .iter()
            .find_map(|k| map.get(*k).and_then(Value::as_str));
        if let Some(m) = first {
            message.push_str(m);
        }
        let validation: Vec<&str> = map
            .get("Elements")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("ValidationErrors").and_then(Value::as_array))
            .flatten()
            .filter_map(|v| v.get("Message").and_then(Value::as_str))
            .take(5)
            .collect();
        if !validation.is_empty() {
            message.push_str(": ");
            message.push_str(&validation.join("; "));
        }
    }
    if message.is_empty() {
        message = text.trim().chars().take(300).collect();
    }
    if message.chars().count() > 500 {
        message = message.chars().take(500).collect();
    }
    (error_type, scrub(&message, token))
}

fn parse_envelope(resource: Resource, body: &[u8]) -> Result<Map<String, Value>, ClientError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ClientError::Decode {
            path: resource.path().into(),
            detail: "response is not a JSON object".into(),
        }),
        Err(e) => Err(ClientError::Decode {
            path: resource.path().into(),
            detail: format!("invalid JSON at line {}, column {}", e.line(), e.column()),
        }),
    }
}

fn records_and_pagination(
    resource: Resource,
    mut envelope: Map<String, Value>,
) -> Result<(Vec<Record>, Option<Pagination>), ClientError> {
    // A 304 produces an empty envelope: no records.
    if envelope.is_empty() {
        return Ok((Vec::new(), None));
    }
    let pagination = match envelope.remove("pagination") {
        Some(v) => {
            Some(
                serde_json::from_value::<Pagination>(v).map_err(|e| ClientError::Decode {
                    path: resource.path().into(),
                    detail: format!("pagination object: {e}"),
                })?,
            )
        }
        None => None,
    };
    let records = match envelope.remove(resource.envelope()) {
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|value| Record { resource, value })
            .collect(),
        Some(Value::Null) => Vec::new(),
        Some(_) => {
            return Err(ClientError::Decode {
                path: resource.path().into(),
                detail: format!("{} is not an array", resource.envelope()),
            })
        }
        None => {
            return Err(ClientError::Decode {
                path: resource.path().into(),
                detail: format!("no {} in the response", resource.envelope()),
            })
        }
    };
    Ok((records, pagination))
}

fn next_cursor(
    resource: Resource,
    cursor: PageCursor,
    requested_page_size: u32,
    records: &[Record],
    pagination: &Option<Pagination>,
) -> Result<Option<PageCursor>, ClientError> {
    if records.is_empty() {
        return Ok(None);
    }
    match cursor {
        PageCursor::Single => Ok(None),
        PageCursor::Page(n) => {
            if let Some(p) = pagination {
                if let Some(count) = p.page_count {
                    if u64::from(n) >= count {
                        return Ok(None);
                    }
                }
                let size = p.page_size.unwrap_or(u64::from(requested_page_size));
                if (records.len() as u64) < size {
                    return Ok(None);
                }
            } else if records.len() < requested_page_size as usize {
                // Without a pagination object, a short page is the last one;
                // except that servers predating pageSize send pages of 100.
                if !(records.len() == 100 && requested_page_size > 100) {
                    return Ok(None);
                }
            }
            Ok(Some(PageCursor::Page(n + 1)))
        }
        PageCursor::Offset(offset) => {
            let mut last = None;
            for r in records {
                let number = r.journal_number().ok_or_else(|| ClientError::Decode {
                    path: resource.path().into(),
                    detail: "journal without a JournalNumber".into(),
                })?;
                last = last.max(Some(number));
            }
            let last = last.unwrap_or(offset);
            if last <= offset {
                return Err(ClientError::Decode {
                    path: resource.path().into(),
                    detail: format!("offset paging did not advance past {offset}"),
                });
            }
            if records.len() < OFFSET_PAGE_SIZE {
                Ok(None)
            } else {
                Ok(Some(PageCursor::Offset(last)))
            }
        }
    }
}

/// What to list.
#[derive(Debug, Clone, PartialEq)]
pub struct ListRequest {
    /// The resource.
    pub resource: Resource,
    /// Only records changed since (sent for resources with a change stamp).
    pub if_modified_since: Option<OffsetDateTime>,
    /// Records per page for page-paged resources (1..=1000; default 1000).
    pub page_size: u32,
    /// Where to start (default: the first page / offset 0).
    pub start: Option<PageCursor>,
    /// Ask for archived records where the API hides them (default true:
    /// archiving is how deletions show up).
    pub include_archived: bool,
    /// Extra query parameters (`where`, `order`, `Statuses`…).
    pub params: Vec<(String, String)>,
}

impl ListRequest {
    /// Everything of `resource`.
    pub fn new(resource: Resource) -> Self {
        Self {
            resource,
            if_modified_since: None,
            page_size: MAX_PAGE_SIZE,
            start: None,
            include_archived: true,
            params: Vec::new(),
        }
    }

    /// Only records changed since `t`.
    pub fn modified_since(mut self, t: OffsetDateTime) -> Self {
        self.if_modified_since = Some(t);
        self
    }

    /// Records per page (clamped to 1..=1000).
    pub fn page_size(mut self, n: u32) -> Self {
        self.page_size = n.clamp(1, MAX_PAGE_SIZE);
        self
    }

    /// Resume at a cursor from a checkpoint.
    pub fn start_at(mut self, cursor: PageCursor) -> Self {
        self.start = Some(cursor);
        self
    }

    /// Whether to ask for archived records.
    pub fn include_archived(mut self, yes: bool) -> Self {
        self.include_archived = yes;
        self
    }

    /// Adds a query parameter.
    pub fn param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((key.into(), value.into()));
        self
    }
}

/// A position in a listing: what the next call asks for. Serialisable so it
/// can be checkpointed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageCursor {
    /// `page=n`.
    Page(u32),
    /// `offset=n` (journals: the last JournalNumber seen).
    Offset(i64),
    /// The only call of an unpaged resource.
    Single,
}

/// The `pagination` object of paged responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    /// This page.
    #[serde(default)]
    pub page: Option<u64>,
    /// Records per page.
    #[serde(default)]
    pub page_size: Option<u64>,
    /// Pages in all.
    #[serde(default)]
    pub page_count: Option<u64>,
    /// Records in all.
    #[serde(default)]
    pub item_count: Option<u64>,
}

/// One page of records.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The resource.
    pub resource: Resource,
    /// The cursor this page was fetched at.
    pub cursor: PageCursor,
    /// The records, raw.
    pub records: Vec<Record>,
    /// The pagination object, when the response had one.
    pub pagination: Option<Pagination>,
    /// Where the next page starts; `None` after the last page.
    pub next: Option<PageCursor>,
}

/// Walks the pages of one [`ListRequest`].
#[derive(Debug)]
pub struct Pager {
    client: XeroClient,
    request: ListRequest,
    next: Option<PageCursor>,
}

impl Pager {
    /// The next page, or `None` when done. On error the position is kept,
    /// so calling again retries the same page.
    pub async fn next_page(&mut self) -> Result<Option<Page>, ClientError> {
        let Some(cursor) = self.next else {
            return Ok(None);
        };
        let page = self.client.fetch_page(&self.request, cursor).await?;
        self.next = page.next;
        Ok(Some(page))
    }

    /// The cursor the next call will fetch (for checkpoints).
    pub fn next_cursor(&self) -> Option<PageCursor> {
        self.next
    }

    /// The request.
    pub fn request(&self) -> &ListRequest {
        &self.request
    }

    /// The pages as a stream (stops after the first error).
    pub fn into_stream(self) -> impl Stream<Item = Result<Page, ClientError>> {
        futures::stream::unfold(Some(self), |state| async move {
            let mut pager = state?;
            match pager.next_page().await {
                Ok(Some(page)) => Some((Ok(page), Some(pager))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }
}

/// One record: the JSON exactly as Xero sent it, with typed access to the
/// fields ingestion needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    resource: Resource,
    value: Value,
}

impl Record {
    /// Wraps a JSON value (e.g. read back from storage).
    pub fn new(resource: Resource, value: Value) -> Self {
        Self { resource, value }
    }

    /// The resource.
    pub fn resource(&self) -> Resource {
        self.resource
    }

    /// The id (`InvoiceID`, `Code` for currencies…).
    pub fn id(&self) -> Option<&str> {
        self.value.get(self.resource.id_field())?.as_str()
    }

    /// The raw change stamp (`UpdatedDateUTC`, `CreatedDateUTC` for journals).
    pub fn updated_raw(&self) -> Option<&str> {
        self.value.get(self.resource.updated_field()?)?.as_str()
    }

    /// The change stamp parsed; `Ok(None)` if the resource or record has none.
    pub fn updated_at(&self) -> Result<Option<OffsetDateTime>, DateError> {
        self.updated_raw().map(dates::parse).transpose()
    }

    /// `JournalNumber`, for journals.
    pub fn journal_number(&self) -> Option<i64> {
        self.value.get("JournalNumber")?.as_i64()
    }

    /// The JSON.
    pub fn as_value(&self) -> &Value {
        &self.value
    }

    /// The JSON, owned.
    pub fn into_value(self) -> Value {
        self.value
    }

    /// A typed view (e.g. [`crate::models::Invoice`]).
    pub fn to_typed<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.value)
    }
}

impl Serialize for Record {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn records(resource: Resource, n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record::new(resource, json!({"JournalNumber": i as i64 + 1})))
            .collect()
    }

    #[test]
    fn page_stop_rules() {
        let r = Resource::Invoices;
        let p1 = PageCursor::Page(1);
        let pag = |count| {
            Some(Pagination {
                page: Some(1),
                page_size: Some(1000),
                page_count: Some(count),
                item_count: None,
            })
        };
        // pageCount reached.
        assert_eq!(
            next_cursor(r, p1, 1000, &records(r, 1000), &pag(1)).unwrap(),
            None
        );
        assert_eq!(
            next_cursor(r, p1, 1000, &records(r, 1000), &pag(2)).unwrap(),
            Some(PageCursor::Page(2))
        );
        // Short page without pagination.
        assert_eq!(
            next_cursor(r, p1, 1000, &records(r, 999), &None).unwrap(),
            None
        );
        // Full page without pagination: ask again.
        assert_eq!(
            next_cursor(r, p1, 1000, &records(r, 1000), &None).unwrap(),
            Some(PageCursor::Page(2))
        );
        // Legacy 100-record pages are not mistaken for the end.
        assert_eq!(
            next_cursor(r, p1, 1000, &records(r, 100), &None).unwrap(),
            Some(PageCursor::Page(2))
        );
        assert_eq!(next_cursor(r, p1, 1000, &[], &None).unwrap(), None);
        assert_eq!(
            next_cursor(
                Resource::Accounts,
                PageCursor::Single,
                1000,
                &records(r, 5),
                &None
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn offset_rules() {
        let r = Resource::Journals;
        let full = records(r, 100);
        assert_eq!(
            next_cursor(r, PageCursor::Offset(0), 1000, &full, &None).unwrap(),
            Some(PageCursor::Offset(100))
        );
        assert_eq!(
            next_cursor(r, PageCursor::Offset(0), 1000, &records(r, 40), &None).unwrap(),
            None
        );
        // A server that does not move forward must not loop forever.
        assert!(next_cursor(r, PageCursor::Offset(500), 1000, &full, &None).is_err());
        let no_number = vec![Record::new(r, json!({"JournalID": "x"}))];
        assert!(next_cursor(r, PageCursor::Offset(0), 1000, &no_number, &None).is_err());
    }

    #[test]
    fn record_accessors() {
        let rec = Record::new(
            Resource::Invoices,
            json!({"InvoiceID": "abc", "UpdatedDateUTC": "/Date(1511893792820+0000)/", "Unknown": [1, 2]}),
        );
        assert_eq!(rec.id(), Some("abc"));
        assert_eq!(
            rec.updated_at().unwrap(),
            Some(time::macros::datetime!(2017-11-28 18:29:52.820 UTC))
        );
        assert_eq!(
            serde_json::to_value(&rec).unwrap()["Unknown"],
            json!([1, 2])
        );
        let cur = Record::new(Resource::Currencies, json!({"Code": "NZD"}));
        assert_eq!(cur.id(), Some("NZD"));
        assert_eq!(cur.updated_at().unwrap(), None);
        let bad = Record::new(Resource::Invoices, json!({"UpdatedDateUTC": "garbage"}));
        assert!(bad.updated_at().is_err());
    }

    #[test]
    fn error_messages_are_extracted_and_scrubbed() {
        let token = SecretString::new("tok-123");
        let body = br#"{"ErrorNumber":10,"Type":"ValidationException","Message":"A validation exception occurred","Elements":[{"ValidationErrors":[{"Message":"Email address must be valid."}]}]}"#;
        let (t, m) = error_message(body, &token);
        assert_eq!(t.as_deref(), Some("ValidationException"));
        assert_eq!(
            m,
            "A validation exception occurred: Email address must be valid."
        );
        let (_, m) = error_message(
            br#"{"Title":"Forbidden","Detail":"AuthorizationUnsuccessful"}"#,
            &token,
        );
        assert_eq!(m, "AuthorizationUnsuccessful");
        let (_, m) = error_message(b"bad token tok-123", &token);
        assert_eq!(m, "bad token [REDACTED]");
    }

    #[test]
    fn backoff_is_bounded() {
        let p = RetryPolicy {
            jitter: false,
            ..RetryPolicy::default()
        };
        let delays: Vec<_> = p.backoff().collect();
        assert_eq!(delays.len(), 4);
        assert_eq!(delays[0], Duration::from_millis(500));
        assert_eq!(delays[1], Duration::from_millis(1000));
        assert!(delays.iter().all(|d| *d <= p.max_delay));
    }
}
