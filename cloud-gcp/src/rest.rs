//! The JSON API calls made without an official client (Cloud Storage, and
//! BigQuery's media uploads and access entries): one HTTP client, the same
//! credentials, Google's errors mapped as for the clients.

use std::time::Duration;

use cloud::error::{CloudError, CloudResult};
use reqwest::{Method, RequestBuilder};

use crate::auth::Auth;
use crate::config::{Api, GcpConfig};
use crate::limiter::Limiter;

pub struct Rest {
    http: reqwest::Client,
    auth: Auth,
    storage: String,
    bigquery: String,
}

/// Characters left alone in a path segment (RFC 3986 unreserved).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl Rest {
    pub fn new(config: &GcpConfig, auth: Auth, _limiter: Limiter) -> CloudResult<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| CloudError::permanent("HTTP client", e.to_string()))?;
        Ok(Rest {
            http,
            auth,
            storage: config.endpoints.get(Api::Storage).to_owned(),
            bigquery: config.endpoints.get(Api::BigQuery).to_owned(),
        })
    }

    /// `/storage/v1/...` or `/upload/storage/v1/...` on the Storage endpoint.
    pub fn storage(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.storage))
    }

    /// `/bigquery/v2/...` or `/upload/bigquery/v2/...` on the BigQuery endpoint.
    pub fn bigquery(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.bigquery))
    }

    pub fn segment(s: &str) -> String {
        encode_segment(s)
    }

    /// Sends with the current principal's credentials; the JSON body of a
    /// success (`Null` when empty), or the mapped error.
    pub async fn json(
        &self,
        resource: &str,
        request: RequestBuilder,
    ) -> CloudResult<serde_json::Value> {
        let bytes = self.bytes(resource, request).await?;
        if bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| CloudError::permanent(resource, format!("unreadable answer: {e}")))
    }

    /// Sends with the current principal's credentials; the body of a success.
    pub async fn bytes(
        &self,
        resource: &str,
        request: RequestBuilder,
    ) -> CloudResult<bytes::Bytes> {
        let headers = self.auth.headers(resource).await?;
        let response = request
            .headers(headers)
            .send()
            .await
            .map_err(|e| CloudError::transient(resource, without_url(e)))?;
        let status = response.status();
        let response_headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| CloudError::transient(resource, without_url(e)))?;
        if status.is_success() {
            return Ok(body);
        }
        Err(crate::errors::from_http(
            resource,
            status.as_u16(),
            Some(&response_headers),
            &body,
        ))
    }
}

/// The items of a JSON API listing, every page of it: `page` makes the
/// request for a page (with the `pageToken` of the page before, if any) and
/// `items` names the answer's list (`items`, `datasets`, `tables`).
pub(crate) async fn all_pages<F, Fut>(
    resource: &str,
    items: &str,
    mut page: F,
) -> CloudResult<Vec<serde_json::Value>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = CloudResult<serde_json::Value>>,
{
    crate::pages::every_page(resource, |token| {
        let answer = page((!token.is_empty()).then_some(token));
        async move {
            let answer = answer.await?;
            let list = answer
                .get(items)
                .and_then(serde_json::Value::as_array)
                .cloned()
                .unwrap_or_default();
            let next = answer
                .get("nextPageToken")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned();
            Ok((list, next))
        }
    })
    .await
}

/// A resource's `labels` in a JSON API answer.
pub(crate) fn labels_in(v: &serde_json::Value) -> cloud::naming::Labels {
    v.get("labels")
        .and_then(serde_json::Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// A 64-bit integer field: Google's JSON APIs send them as strings (a plain
/// number is taken too).
pub(crate) fn int64<T: std::str::FromStr>(v: Option<&serde_json::Value>) -> Option<T> {
    match v? {
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

/// A transport error's text without its URL (which may carry a query string).
fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    format!("{kind}: {}", e.without_url())
}

#[cfg(test)]
mod tests {
    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(
            super::encode_segment("raw/2026-01.ndjson"),
            "raw%2F2026-01.ndjson"
        );
        assert_eq!(super::encode_segment("a b?c"), "a%20b%3Fc");
    }
}
