//! What the service tells about itself: `GET /metrics` (behind the scrape
//! token or the operator token), `GET /openapi.json`, the metrics of every
//! request, and the trace context of a request for its log lines.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::{openapi, routes, ApiError, AppState};
use crate::metrics::{self, method_label};

/// `GET /metrics`: every metric in Prometheus' text format, the tenant gauges
/// read from the state store now. The scrape token or the operator token.
pub async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !may_scrape(&state, &headers) {
        return ApiError::unauthorized().into_response();
    }
    let counts = match state.store.count_tenants().await {
        Ok(counts) => Some(counts),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: the state store did not answer");
            None
        }
    };
    let metrics = metrics::metrics();
    metrics.set_tenants(counts.as_deref());
    metrics.set_cloud_usage(&state.clouds.usage());
    if state.config.control {
        let (queued, running, backing_off) = state.controller.depth();
        metrics.set_controller(queued, running, backing_off);
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        )],
        metrics.render(),
    )
        .into_response()
}

/// Whether the request carries the scrape token or the operator token
/// (compared in constant time; no token configured lets nobody in).
fn may_scrape(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty())
    else {
        return false;
    };
    [&state.config.metrics_token, &state.config.operator_token]
        .into_iter()
        .flatten()
        .any(|expected| bool::from(given.as_bytes().ct_eq(expected.expose_secret().as_bytes())))
}

/// `GET /openapi.json`: the API's OpenAPI 3.1 document. Public: it describes
/// the routes, which anyone can probe anyway, and holds no secret.
pub async fn openapi() -> Response {
    match openapi::document_json() {
        Ok(json) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response(),
        Err(e) => ApiError::internal("the OpenAPI document does not load", e).into_response(),
    }
}

/// Counts every request by its class, route template, method and status, and
/// times it to its response head.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let response = next.run(request).await;
    let (class, route) = match &matched {
        Some(path) => (
            routes::class_of(path).map_or("none", |c| c.as_str()),
            path.as_str(),
        ),
        // Never the raw path: it is the client's, unbounded.
        None => ("none", "unmatched"),
    };
    metrics::metrics().http_request(
        class,
        route,
        method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// The trace a request belongs to, from the W3C `traceparent` header or
/// Google's `X-Cloud-Trace-Context` (which Cloud Run's front end sets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: Option<String>,
    pub sampled: bool,
}

/// The request's trace context; `None` when neither header is there or well
/// formed (a malformed one is ignored, never echoed into the logs).
pub fn trace_context(headers: &HeaderMap) -> Option<TraceContext> {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    value("traceparent")
        .and_then(parse_traceparent)
        .or_else(|| value("x-cloud-trace-context").and_then(parse_cloud_trace))
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `00-<trace-id>-<parent-id>-<flags>` (W3C Trace Context, level 1).
fn parse_traceparent(value: &str) -> Option<TraceContext> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if !is_hex(version, 2) || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    if !is_hex(trace, 32) || !is_hex(parent, 16) || !is_hex(flags, 2) {
        return None;
    }
    if trace.bytes().all(|b| b == b'0') || parent.bytes().all(|b| b == b'0') {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(TraceContext {
        trace_id: trace.to_owned(),
        span_id: Some(parent.to_owned()),
        sampled: flags & 1 == 1,
    })
}

/// `TRACE_ID/SPAN_ID;o=OPTIONS`: the span id is decimal there, hex in logs.
fn parse_cloud_trace(value: &str) -> Option<TraceContext> {
    let (ids, options) = match value.trim().split_once(';') {
        Some((ids, options)) => (ids, Some(options)),
        None => (value.trim(), None),
    };
    let (trace, span) = match ids.split_once('/') {
        Some((trace, span)) => (trace, Some(span)),
        None => (ids, None),
    };
    let trace = trace.to_ascii_lowercase();
    if !is_hex(&trace, 32) || trace.bytes().all(|b| b == b'0') {
        return None;
    }
    let span_id = span
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s != 0)
        .map(|s| format!("{s:016x}"));
    Some(TraceContext {
        trace_id: trace,
        span_id,
        sampled: options.is_some_and(|o| o.trim() == "o=1"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).expect("header"));
        h
    }

    #[test]
    fn traceparent_is_read_and_malformed_ones_are_ignored() {
        let t = trace_context(&headers(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ))
        .expect("parsed");
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(t.sampled);
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-\"}{injected-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_context(&headers("traceparent", bad)), None, "{bad}");
        }
    }

    #[test]
    fn cloud_trace_context_is_read_with_its_decimal_span() {
        let t = trace_context(&headers(
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b12000100000/1;o=1",
        ))
        .expect("parsed");
        assert_eq!(t.trace_id, "105445aa7843bc8bf206b12000100000");
        assert_eq!(t.span_id.as_deref(), Some("0000000000000001"));
        assert!(t.sampled);
        assert_eq!(
            trace_context(&headers("x-cloud-trace-context", "nothex/1;o=1")),
            None
        );
    }
}
