//! The Accounting API client for one organisation.
//!
//! Built for ingestion: records come back as raw JSON (nothing dropped), one
//! page at a time so each page can be made durable before the next is asked
//! for, with the cursor of the next page exposed for checkpoints (listing
//! and paging: [`crate::pager`]; decoding responses: [`crate::record`]; the
//! error type: [`crate::error`]). Every call goes through the organisation's
//! [`OrgLimiter`] and a retry loop that knows which failures are worth
//! repeating:
//!
//! - 5xx, timeouts and connection failures: bounded exponential backoff with
//!   jitter (backon's schedule), then a typed error;
//! - 429 minute/appminute: wait `Retry-After` (every caller sharing the
//!   limiter waits too), then retry; 429 day: [`ClientError::DayLimitReached`]
//!   at once — waiting hours inside a job is worse than rescheduling it;
//! - 401: ask the [`TokenProvider`] for a fresh token once, retry once;
//! - any other 4xx: [`ClientError::Api`] with Xero's message.
//! - a body over [`MAX_RESPONSE_BYTES`]: [`ClientError::Decode`] at once, no
//!   more of it read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, IF_MODIFIED_SINCE};
use reqwest::{StatusCode, Url};
use time::OffsetDateTime;

use crate::dates;
use crate::error::error_message;
use crate::limits::{retry_after, Clock, LimitConfig, OrgLimiter, RateLimitProblem, RateLimits};
use crate::oauth::XERO_API_BASE;
use crate::record::decode_list;
use crate::resources::Resource;
use crate::token::TokenProvider;

pub use crate::error::ClientError;
pub use crate::record::Record;

/// The longest `Retry-After` of a 5xx this client waits out before retrying.
const MAX_SERVER_RETRY_AFTER: Duration = Duration::from_secs(120);

/// The largest response body this client reads. A full Xero page (1,000
/// records, nested line items included) is a few MB, so 64 MiB leaves ample
/// room for the largest real page while stopping a remote that streams
/// without end from growing memory (the body is then copied and parsed).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

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

/// Builds a [`XeroClient`].
pub struct XeroClientBuilder {
    tenant_id: String,
    tokens: Arc<dyn TokenProvider>,
    api_base: String,
    limits: Option<Arc<RateLimits>>,
    http: Option<reqwest::Client>,
    retry: RetryPolicy,
    timeout: Duration,
    max_response_bytes: usize,
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

    /// The largest response body read (default [`MAX_RESPONSE_BYTES`]);
    /// a larger one fails the call with [`ClientError::Decode`].
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
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
                max_response_bytes: self.max_response_bytes,
                calls: AtomicU64::new(0),
                rate_limited: AtomicU64::new(0),
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
    max_response_bytes: usize,
    calls: AtomicU64,
    /// 429 answers met (minute, app and day alike).
    rate_limited: AtomicU64,
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
            max_response_bytes: MAX_RESPONSE_BYTES,
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

    /// 429 answers met so far (each one waited out, or the day's end).
    pub fn rate_limited_responses(&self) -> u64 {
        self.inner.rate_limited.load(Ordering::Relaxed)
    }

    /// The organisation's limiter.
    pub fn limiter(&self) -> &Arc<OrgLimiter> {
        &self.inner.limiter
    }

    /// The organisation record.
    pub async fn organisation(&self) -> Result<Record, ClientError> {
        let resource = Resource::Organisation;
        let response = self.get(resource.path(), &[], None).await?;
        let (records, _) = decode_list(
            resource,
            response.status == StatusCode::NOT_MODIFIED,
            &response.body,
        )?;
        records
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Decode {
                path: resource.path().into(),
                detail: "no organisation in the response".into(),
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
                Ok(mut resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    inner.limiter.observe(&headers);
                    read_capped(&mut resp, inner.max_response_bytes)
                        .await
                        .map(|body| (status, headers, body))
                }
                Err(e) => Err(BodyError::Transport(e)),
            };
            drop(permit);

            let (status, headers, body) = match outcome {
                Ok(ok) => ok,
                // Not transient: the same request would answer as much again.
                Err(BodyError::TooLarge { limit }) => {
                    return Err(ClientError::Decode {
                        path: path.into(),
                        detail: format!(
                            "the response body is larger than {limit} bytes, the most this client reads"
                        ),
                    })
                }
                Err(BodyError::Transport(e)) if is_transient(&e) => match backoff.next() {
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
                Err(BodyError::Transport(e)) => {
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
                inner.rate_limited.fetch_add(1, Ordering::Relaxed);
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

/// Why a response body could not be read.
enum BodyError {
    Transport(reqwest::Error),
    TooLarge { limit: usize },
}

/// The body of `resp`, read chunk by chunk so that no more than `limit`
/// bytes are ever held: a declared length over the limit fails before any
/// is read, and a streamed one fails as soon as it passes it.
async fn read_capped(resp: &mut reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn is_transient(e: &reqwest::Error) -> bool {
    e.is_timeout() || e.is_connect() || e.is_request() || e.is_body()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
