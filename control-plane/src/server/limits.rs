//! What one client may take of the service: connections (see `listener`),
//! requests at once per class of route, body sizes and time per request; and
//! what the request log may show of a request.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use axum::error_handling::HandleErrorLayer;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{BoxError, Router};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::error::Overloaded;
use tower::load_shed::LoadShedLayer;
use tower::ServiceBuilder;

use super::listener::{ClientAddr, ConnectionLimits};
use super::ApiError;

/// The service's limits; [`Default`] gives the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Connections open at once; one more is answered 503 and closed. Lowered
    /// at start-up to fit the process's open-file limit.
    pub max_connections: usize,
    /// A request head must arrive complete within this, from the connection's
    /// opening or the end of the previous response.
    pub header_read_timeout: Duration,
    /// A connection idle this long is closed.
    pub keep_alive_timeout: Duration,
    /// A request not answered within this gets 504.
    pub request_timeout: Duration,
    /// A connection whose response write makes no progress this long (its
    /// client reads nothing) is dropped.
    pub stalled_write_timeout: Duration,
    /// The largest request body of any route; larger ones get 413.
    pub max_body_bytes: usize,
    /// Requests at once to the unauthenticated routes (consent, callback,
    /// onboarding status, webhooks); more get 503 at once.
    pub public_concurrency: usize,
    /// Requests at once to the operator API (`/v1/…`).
    pub operator_concurrency: usize,
    /// Requests at once to `/healthz` and `/readyz`.
    pub health_concurrency: usize,
    /// Requests a minute one client address may make to the unauthenticated
    /// routes (with a burst of a quarter of that); more get 429.
    pub public_per_client_per_minute: u32,
    /// Take the client's address from the right-most `X-Forwarded-For` entry,
    /// the one the proxy in front appended. Assumes exactly one trusted proxy
    /// hop that appends the address it saw (as Cloud Run's front end does):
    /// entries left of it are the client's own say and are ignored.
    pub trust_forwarded_for: bool,
}

impl ServeLimits {
    pub const MAX_CONNECTIONS: usize = 1024;
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
    /// Long enough for a slow but reading client to take some bytes.
    pub const STALLED_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
    pub const MAX_BODY_BYTES: usize = 1024 * 1024;
    pub const PUBLIC_CONCURRENCY: usize = 64;
    pub const OPERATOR_CONCURRENCY: usize = 32;
    pub const HEALTH_CONCURRENCY: usize = 16;
    pub const PUBLIC_PER_CLIENT_PER_MINUTE: u32 = 120;

    pub fn connections(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            keep_alive_timeout: self.keep_alive_timeout,
            shutdown_grace: self.request_timeout,
            stalled_write_timeout: self.stalled_write_timeout,
        }
    }
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: Self::MAX_CONNECTIONS,
            header_read_timeout: Self::HEADER_READ_TIMEOUT,
            keep_alive_timeout: Self::KEEP_ALIVE_TIMEOUT,
            request_timeout: Self::REQUEST_TIMEOUT,
            stalled_write_timeout: Self::STALLED_WRITE_TIMEOUT,
            max_body_bytes: Self::MAX_BODY_BYTES,
            public_concurrency: Self::PUBLIC_CONCURRENCY,
            operator_concurrency: Self::OPERATOR_CONCURRENCY,
            health_concurrency: Self::HEALTH_CONCURRENCY,
            public_per_client_per_minute: Self::PUBLIC_PER_CLIENT_PER_MINUTE,
            trust_forwarded_for: false,
        }
    }
}

/// Requests per client address: a GCRA rate limiter keyed by address.
pub struct PerClient {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    trust_forwarded_for: bool,
}

impl PerClient {
    pub fn new(per_minute: u32, trust_forwarded_for: bool) -> Arc<Self> {
        let per_minute = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new((per_minute.get() / 4).max(1)).unwrap_or(NonZeroU32::MIN);
        Arc::new(PerClient {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            trust_forwarded_for,
        })
    }

    /// The client a request comes from: the connection's address, or the
    /// forwarded one when trusted. `None` when neither is known.
    fn client_of<B>(&self, request: &Request<B>) -> Option<IpAddr> {
        if self.trust_forwarded_for {
            // The right-most entry (of the last header, should there be
            // several) is the one the trusted proxy appended; the client can
            // write anything to its left, so keying on that would let it
            // pick a fresh bucket per request.
            let forwarded = request
                .headers()
                .get_all("x-forwarded-for")
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|last| last.trim().parse().ok());
            if forwarded.is_some() {
                return forwarded;
            }
        }
        request.extensions().get::<ClientAddr>().map(|c| c.0)
    }
}

/// Answers 429 (with `Retry-After`) to a client past its rate; drops the
/// state of clients that went quiet now and then, so memory stays bounded.
pub async fn per_client(
    axum::extract::State(limits): axum::extract::State<Arc<PerClient>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(client) = limits.client_of(&request) else {
        return next.run(request).await;
    };
    if limits.limiter.len() > 10_000 {
        limits.limiter.retain_recent();
    }
    match limits.limiter.check_key(&client) {
        Ok(()) => next.run(request).await,
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests from this address; slow down",
            )
            .into_response();
            let secs = wait.as_secs().max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            response
        }
    }
}

/// Makes `routes` one class sharing `max` requests at once; a request beyond
/// that is answered 503 at once rather than queued.
pub fn class<S>(routes: Router<S>, max: usize) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    routes.route_layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(overloaded))
            .layer(LoadShedLayer::new())
            .layer(GlobalConcurrencyLimitLayer::new(max.max(1))),
    )
}

/// A request beyond its class's limit: 503 `overloaded`, retry after a
/// second (also the answer of a query stream when no permit is free).
pub(super) fn overloaded_response() -> Response {
    let mut response = ApiError::unavailable(
        "overloaded",
        "too many requests of this kind at once; try again shortly",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

async fn overloaded(error: BoxError) -> Response {
    if error.is::<Overloaded>() {
        overloaded_response()
    } else {
        // Not reached: below the load shedder every service is infallible.
        tracing::error!(error = %error, "a request limit failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request could not be handled",
        )
        .into_response()
    }
}

/// Longest explanation of a rejected request passed on to its client.
const REJECTION_MESSAGE_MAX: usize = 300;

/// The API's errors are JSON `{"code", "message"}`; axum's own rejections
/// (a body that is not JSON or lacks a field, a wrong content type, a path
/// that does not parse, a body too large) are plain text, and a method a
/// route lacks gets an empty 405. This turns those into the API's JSON error,
/// keeping axum's explanation (bounded, control characters escaped). A
/// handler's own answers (JSON errors, pages, a webhook's empty 401) pass
/// unchanged.
pub async fn rejections_as_json(response: Response) -> Response {
    let status = response.status();
    if !status.is_client_error() {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let plain = content_type
        .as_deref()
        .is_some_and(|v| v.starts_with("text/plain"));
    let bare_405 = status == StatusCode::METHOD_NOT_ALLOWED && content_type.is_none();
    if !plain && !bare_405 {
        return response;
    }
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        _ => "bad_request",
    };
    let (parts, body) = response.into_parts();
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than this service accepts".to_owned()
        }
        StatusCode::METHOD_NOT_ALLOWED => "this route does not take that method".to_owned(),
        _ => {
            let text = axum::body::to_bytes(body, 4 * REJECTION_MESSAGE_MAX)
                .await
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            if text.trim().is_empty() {
                "the request is not valid for this route".to_owned()
            } else {
                bounded(text.trim(), REJECTION_MESSAGE_MAX)
            }
        }
    };
    let mut converted = ApiError::new(status, code, message).into_response();
    // Keep what the client needs besides the body (Allow on a 405).
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        converted.headers_mut().insert(header::ALLOW, allow.clone());
    }
    converted
}

/// A path no route has: the API's JSON 404.
pub async fn no_route() -> Response {
    ApiError::not_found("no_route", "no such route").into_response()
}

/// Longest path shown in the request log.
const LOGGED_PATH_MAX: usize = 128;

/// The request log's span: the method and the path, never the query string
/// (the OAuth callback's carries the code and the state) and never more than
/// [`LOGGED_PATH_MAX`] characters of what the client sent; and the trace the
/// request belongs to, so that Cloud Logging groups its lines under it. At
/// info level, so that every line a request logs at info carries these.
pub fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let trace = super::observability::trace_context(request.headers());
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %bounded(request.uri().path(), LOGGED_PATH_MAX),
        trace_id = trace.as_ref().map(|t| t.trace_id.as_str()),
        span_id = trace.as_ref().and_then(|t| t.span_id.as_deref()),
        trace_sampled = trace.as_ref().map(|t| t.sampled),
    )
}

/// At most `max` characters of an untrusted value, control characters escaped.
fn bounded(value: &str, max: usize) -> String {
    let mut out: String = value
        .chars()
        .take(max)
        .flat_map(char::escape_default)
        .collect();
    if value.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    async fn status(app: &Router, path: &str) -> StatusCode {
        let request = Request::get(path).body(Body::empty()).expect("request");
        app.clone()
            .oneshot(request)
            .await
            .expect("infallible")
            .status()
    }

    async fn from(app: &Router, addr: &str, forwarded: Option<&str>) -> Response {
        let mut request = Request::get("/public")
            .body(Body::empty())
            .expect("request");
        request
            .extensions_mut()
            .insert(ClientAddr(addr.parse().expect("ip")));
        if let Some(f) = forwarded {
            request
                .headers_mut()
                .insert("x-forwarded-for", HeaderValue::from_str(f).expect("header"));
        }
        app.clone().oneshot(request).await.expect("infallible")
    }

    fn limited(per_minute: u32, trust: bool) -> Router {
        Router::new()
            .route("/public", get(|| async { "ok" }))
            .route_layer(axum::middleware::from_fn_with_state(
                PerClient::new(per_minute, trust),
                per_client,
            ))
    }

    #[tokio::test]
    async fn one_address_past_its_rate_gets_429_and_others_are_untouched() {
        // 60 a minute: a burst of 15, then one a second.
        let app = limited(60, false);
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(from(&app, "203.0.113.7", None).await.status());
        }
        let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        assert_eq!(ok, 15, "{statuses:?}");
        let refused = from(&app, "203.0.113.7", None).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = refused.headers()[header::RETRY_AFTER]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!((1..=2).contains(&retry), "{retry}");
        // Another address has its own allowance.
        assert_eq!(
            from(&app, "198.51.100.1", None).await.status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn forwarded_addresses_count_only_when_trusted() {
        // Untrusted: every forwarded value still counts as the proxy's address.
        let app = limited(4, false);
        let mut last = StatusCode::OK;
        for i in 0..3 {
            last = from(&app, "10.0.0.1", Some(&format!("192.0.2.{i}")))
                .await
                .status();
        }
        assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
        // Trusted: each forwarded client has its own allowance.
        let app = limited(4, true);
        for i in 0..3 {
            let status = from(&app, "10.0.0.1", Some(&format!("192.0.2.{i}")))
                .await
                .status();
            assert_eq!(status, StatusCode::OK);
        }
    }

    #[tokio::test]
    async fn a_client_cannot_pick_its_bucket_with_a_forwarded_prefix() {
        // 4 a minute: a burst of 1. The proxy appended 192.0.2.9 both times;
        // what the client put to its left differs.
        let app = limited(4, true);
        let first = from(&app, "10.0.0.1", Some("198.51.100.1, 192.0.2.9")).await;
        assert_eq!(first.status(), StatusCode::OK);
        let second = from(&app, "10.0.0.1", Some("198.51.100.2,192.0.2.9")).await;
        assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
        // Another client behind the same proxy still has its own allowance.
        let other = from(&app, "10.0.0.1", Some("198.51.100.1, 192.0.2.10")).await;
        assert_eq!(other.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_full_class_answers_503_at_once_and_leaves_other_classes_alone() {
        let inside = Arc::new(AtomicUsize::new(0));
        let (open, gate) = tokio::sync::watch::channel(false);
        let slow = {
            let inside = inside.clone();
            move || {
                let inside = inside.clone();
                let mut gate = gate.clone();
                async move {
                    inside.fetch_add(1, Ordering::SeqCst);
                    let _ = gate.wait_for(|open| *open).await;
                    "done"
                }
            }
        };
        let app = Router::new()
            .merge(class(
                Router::new()
                    .route("/a", get(slow.clone()))
                    .route("/b", get(slow)),
                2,
            ))
            .merge(class(
                Router::new().route("/other", get(|| async { "ok" })),
                1,
            ));

        let first = tokio::spawn({
            let app = app.clone();
            async move { status(&app, "/a").await }
        });
        let second = tokio::spawn({
            let app = app.clone();
            async move { status(&app, "/b").await }
        });
        for _ in 0..500 {
            if inside.load(Ordering::SeqCst) == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            inside.load(Ordering::SeqCst),
            2,
            "both requests in the handler"
        );
        // The class is full: a third is refused at once, whichever route.
        let refused = tokio::time::timeout(Duration::from_secs(2), status(&app, "/a"))
            .await
            .expect("answered at once");
        assert_eq!(refused, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status(&app, "/other").await, StatusCode::OK);

        open.send_replace(true);
        assert_eq!(first.await.expect("join"), StatusCode::OK);
        assert_eq!(second.await.expect("join"), StatusCode::OK);
        assert_eq!(status(&app, "/a").await, StatusCode::OK, "slots come back");
    }

    #[tokio::test]
    async fn axums_plain_text_rejections_become_the_apis_json_errors() {
        #[derive(serde::Deserialize)]
        struct Named {
            #[allow(dead_code)]
            name: String,
        }
        let app = Router::new()
            .route(
                "/json",
                axum::routing::post(|_: axum::Json<Named>| async { "ok" }),
            )
            .route(
                "/hook",
                axum::routing::post(|| async { StatusCode::UNAUTHORIZED }),
            )
            .fallback(no_route)
            .layer(axum::middleware::map_response(rejections_as_json));
        let send = |method: &str, path: &str, content_type: Option<&str>, body: &'static str| {
            let mut request = Request::builder().method(method).uri(path);
            if let Some(ct) = content_type {
                request = request.header(header::CONTENT_TYPE, ct);
            }
            let request = request.body(Body::from(body)).expect("request");
            let app = app.clone();
            async move {
                let response = app.oneshot(request).await.expect("infallible");
                let status = response.status();
                let allow = response.headers().get(header::ALLOW).cloned();
                let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
                    .await
                    .expect("body");
                (status, allow, String::from_utf8_lossy(&bytes).into_owned())
            }
        };
        for (method, path, ct, body, status, code) in [
            ("POST", "/json", None, "{}", 415, "unsupported_media_type"),
            (
                "POST",
                "/json",
                Some("application/json"),
                "\u{0}",
                400,
                "bad_request",
            ),
            (
                "POST",
                "/json",
                Some("application/json"),
                "{}",
                422,
                "invalid_body",
            ),
            ("GET", "/json", None, "", 405, "method_not_allowed"),
            ("GET", "/nowhere", None, "", 404, "no_route"),
        ] {
            let (got, allow, text) = send(method, path, ct, body).await;
            assert_eq!(got.as_u16(), status, "{method} {path}: {text}");
            let error: serde_json::Value = serde_json::from_str(&text).expect("json");
            assert_eq!(error["code"], code, "{text}");
            assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
            if status == 405 {
                assert!(allow.is_some(), "Allow is kept");
            }
        }
        // A handler's own bare answer is left alone.
        let (got, _, text) = send("POST", "/hook", None, "").await;
        assert_eq!(got, StatusCode::UNAUTHORIZED);
        assert!(text.is_empty());
    }

    #[test]
    fn the_logged_path_is_bounded_and_has_no_query() {
        let long = format!("/onboarding/{}/status?code=SECRET", "a".repeat(5000));
        let request = Request::get(long.as_str()).body(()).expect("request");
        let shown = bounded(request.uri().path(), LOGGED_PATH_MAX);
        assert!(shown.chars().count() <= LOGGED_PATH_MAX + 1, "{shown}");
        assert!(!shown.contains("SECRET"));
        assert_eq!(bounded("/a\u{1b}b", 10), "/a\\u{1b}b");
    }
}
