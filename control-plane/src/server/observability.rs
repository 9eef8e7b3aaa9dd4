//! What the service records of every request: its metrics, labelled with its
//! route's class from the route table, and its trace context for its log
//! lines. `GET /metrics`, which serves the metrics, is a route like any other
//! (in `meta.rs`), so that the route table does not depend on this module.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use super::routes;
use crate::metrics::{self, method_label};

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
    use axum::http::HeaderValue;

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
