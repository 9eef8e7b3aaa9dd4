//! The one HTTP exchange every provider shares: a timeout per attempt,
//! retries of 408/429/5xx and broken connections with exponential backoff and
//! jitter (a server's `Retry-After` wins, capped), replies read up to a bound,
//! and the provider's error messages kept without the key.
//!
//! Providers retry here and nowhere else, and their callers do not retry
//! them, so attempts never multiply (ARCHITECTURE.md, "Errors and retries").

use std::fmt;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::HeaderMap;

use super::config::{ApiKey, LlmConfig};
use super::error::{excerpt, LlmError};
use super::reply::Completion;
use super::sse;

/// How much of an error body is read: enough for any provider's message.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// How much of a non-JSON error body a message quotes, in characters.
const FALLBACK_CHARS: usize = 200;

/// A successful reply's body, as the provider's format needs it.
pub(crate) enum Body {
    Whole(Vec<u8>),
    Events(Vec<sse::Event>),
}

/// A provider's wire format, as far as the exchange needs it.
pub(crate) trait Wire: Sync {
    /// The error type and message out of an error body (already JSON).
    fn error_detail(&self, body: &serde_json::Value) -> Option<(Option<String>, String)>;

    /// The completion out of a successful body.
    fn completion(&self, body: Body) -> Result<Completion, LlmError>;
}

pub(crate) struct Http {
    client: reqwest::Client,
    pub provider: &'static str,
    timeout: Duration,
    max_retries: usize,
    min_delay: Duration,
    max_delay: Duration,
    max_retry_after: Duration,
    max_reply_bytes: usize,
    /// Scrubbed out of anything the provider says back.
    secret: Option<ApiKey>,
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the client: what it prints is not ours to vouch for.
        f.debug_struct("Http")
            .field("provider", &self.provider)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("max_reply_bytes", &self.max_reply_bytes)
            .finish_non_exhaustive()
    }
}

impl Http {
    pub fn new(config: &LlmConfig, provider: &'static str) -> Result<Self, LlmError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            // An API never redirects; following one could send the key elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| LlmError::Transport {
                provider,
                what: "the HTTP client could not be built",
                source: e.without_url(),
            })?;
        Ok(Http {
            client,
            provider,
            timeout: config.timeout,
            max_retries: config.max_retries,
            min_delay: config.retry_min_delay,
            max_delay: config.retry_max_delay,
            max_retry_after: config.max_retry_after,
            max_reply_bytes: config.max_reply_bytes,
            secret: config.api_key.clone(),
        })
    }

    /// Sends the request `build` makes (once per attempt) and reads the reply,
    /// retrying what may succeed on a second try.
    pub async fn exchange(
        &self,
        build: &(dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Sync),
        stream: bool,
        wire: &dyn Wire,
    ) -> Result<Completion, LlmError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .with_jitter();
        (|| self.attempt(build, stream, wire))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(LlmError::is_retryable)
            .adjust(
                |e: &LlmError, next: Option<Duration>| match (e.retry_after(), next) {
                    // The server knows its own load better than our schedule;
                    // the number of retries stays the same.
                    (Some(server), Some(_)) => Some(server),
                    (_, next) => next,
                },
            )
            .notify(|e: &LlmError, wait: Duration| {
                tracing::warn!(
                    provider = self.provider,
                    error = %e,
                    wait_ms = wait.as_millis() as u64,
                    "retrying an LLM request"
                );
            })
            .await
    }

    async fn attempt(
        &self,
        build: &(dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Sync),
        stream: bool,
        wire: &dyn Wire,
    ) -> Result<Completion, LlmError> {
        let mut response = build(&self.client)
            .send()
            .await
            .map_err(|e| self.transport(e, "the request could not be sent"))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = retry_after(response.headers(), self.max_retry_after);
            // A broken error body still leaves the status to report.
            let body = self
                .read(&mut response, ERROR_BODY_LIMIT, false)
                .await
                .unwrap_or_default();
            let (kind, message) = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| wire.error_detail(&v))
                .unwrap_or_else(|| (None, self.fallback_message(status, &body)));
            return Err(self.api_error(status.as_u16(), kind, message, retry_after));
        }
        let body = if stream {
            let mut decoder = sse::Decoder::new();
            let mut events = Vec::new();
            let mut read = 0usize;
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| self.transport(e, "the reply stream broke"))?
            {
                read += chunk.len();
                if read > self.max_reply_bytes {
                    return Err(self.too_large());
                }
                decoder
                    .push(&chunk, &mut events)
                    .map_err(|e| self.protocol(e.to_string()))?;
            }
            decoder
                .finish(&mut events)
                .map_err(|e| self.protocol(e.to_string()))?;
            Body::Events(events)
        } else {
            Body::Whole(self.read(&mut response, self.max_reply_bytes, true).await?)
        };
        wire.completion(body)
    }

    /// Reads a body up to `limit` bytes: beyond it, an error (`strict`) or the
    /// first `limit` bytes.
    async fn read(
        &self,
        response: &mut reqwest::Response,
        limit: usize,
        strict: bool,
    ) -> Result<Vec<u8>, LlmError> {
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport(e, "the reply broke off"))?
        {
            if body.len() + chunk.len() > limit {
                if strict {
                    return Err(self.too_large());
                }
                body.extend_from_slice(&chunk[..limit - body.len()]);
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn transport(&self, e: reqwest::Error, what: &'static str) -> LlmError {
        if e.is_timeout() {
            return LlmError::Timeout {
                provider: self.provider,
                after: self.timeout,
            };
        }
        let what = if e.is_connect() {
            "could not connect"
        } else {
            what
        };
        LlmError::Transport {
            provider: self.provider,
            what,
            source: e.without_url(),
        }
    }

    fn too_large(&self) -> LlmError {
        LlmError::ReplyTooLarge {
            provider: self.provider,
            limit: self.max_reply_bytes,
        }
    }

    pub fn protocol(&self, message: impl Into<String>) -> LlmError {
        LlmError::Protocol {
            provider: self.provider,
            message: message.into(),
        }
    }

    /// The provider's error, before the stream or inside it. Built here so
    /// that its type is redacted as well as its message: a service may echo
    /// the key in either.
    pub fn api_error(
        &self,
        status: u16,
        kind: Option<String>,
        message: String,
        retry_after: Option<Duration>,
    ) -> LlmError {
        LlmError::Api {
            provider: self.provider,
            status,
            kind: kind.map(|k| self.redact(k)),
            message: self.redact(message),
            retry_after,
        }
    }

    /// `text` without the key: some services quote the key they refused.
    pub fn redact(&self, text: String) -> String {
        match &self.secret {
            Some(key) if !key.expose().is_empty() && text.contains(key.expose()) => {
                text.replace(key.expose(), "[redacted]")
            }
            _ => text,
        }
    }

    /// An error body that is not the provider's JSON (a proxy's HTML page,
    /// say): its start, or the status's reason. Redacted whole before it is
    /// cut: a key cut in two would no longer be found, and its first part kept.
    fn fallback_message(&self, status: reqwest::StatusCode, body: &[u8]) -> String {
        let text = self.redact(String::from_utf8_lossy(body).into_owned());
        let text = text.trim();
        if text.is_empty() {
            status.canonical_reason().unwrap_or("no message").to_owned()
        } else {
            excerpt(text, FALLBACK_CHARS)
        }
    }
}

/// The server's `Retry-After` (seconds or an HTTP date), or OpenAI's
/// `retry-after-ms`, at most `cap`.
pub(crate) fn retry_after(headers: &HeaderMap, cap: Duration) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let wait = if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        Duration::try_from_secs_f64(ms / 1000.0).ok()
    } else {
        let value = text("retry-after")?;
        match value.parse::<u64>() {
            Ok(secs) => Some(Duration::from_secs(secs)),
            Err(_) => http_date_from_now(value),
        }
    }?;
    Some(wait.min(cap))
}

fn http_date_from_now(value: &str) -> Option<Duration> {
    use time::format_description::well_known::Rfc2822;
    // IMF-fixdate ends in "GMT", which RFC 2822 spells "+0000".
    let value = value
        .strip_suffix("GMT")
        .map_or_else(|| value.to_owned(), |head| format!("{}+0000", head));
    let at = time::OffsetDateTime::parse(&value, &Rfc2822).ok()?;
    let wait = at - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn retry_after_in_seconds_milliseconds_or_a_date_and_capped() {
        let cap = Duration::from_secs(30);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2")]), cap),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "3600")]), cap),
            Some(cap)
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after-ms", "150"), ("retry-after", "1")]),
                cap
            ),
            Some(Duration::from_millis(150))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]),
                cap
            ),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(20);
        let text = soon
            .format(&time::format_description::well_known::Rfc2822)
            .expect("format");
        let wait = retry_after(&headers(&[("retry-after", &text)]), cap).expect("parsed");
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), cap), None);
        assert_eq!(retry_after(&HeaderMap::new(), cap), None);
    }
}
