//! Google's answers turned into the ports' errors. Google's messages name
//! resources and permissions, never credentials; they are kept (shortened) so
//! an operator sees why.

use std::time::Duration;

use cloud::error::CloudError;
use google_cloud_gax::error::Error as GaxError;
use http::HeaderMap;

/// Longest piece of a remote message kept in an error.
const MESSAGE_LIMIT: usize = 300;

/// An HTTP answer from any Google API, by status code, headers and body.
pub fn from_http(
    resource: &str,
    status: u16,
    headers: Option<&HeaderMap>,
    body: &[u8],
) -> CloudError {
    let (google_status, message) = google_error(body);
    classify(
        resource,
        status,
        google_status.as_deref(),
        &message,
        headers,
    )
}

/// An error of one of Google's official clients.
pub fn from_gax(resource: &str, e: &GaxError) -> CloudError {
    if e.is_exhausted() && e.http_status_code().is_none() {
        // The polling time limit passed with the operation still running:
        // it may yet finish, so worth asking again later.
        return CloudError::transient(
            resource,
            format!(
                "gave up waiting for its long-running operation: {}",
                short(&e.to_string())
            ),
        );
    }
    if let Some(code) = e.http_status_code() {
        let body = e.http_payload().map(|b| b.as_ref()).unwrap_or_default();
        let (google_status, mut message) = google_error(body);
        if message.is_empty() {
            message = e.status().map(|s| s.message.clone()).unwrap_or_default();
        }
        let google_status = google_status.or_else(|| e.status().map(|s| format!("{:?}", s.code)));
        return classify(
            resource,
            code,
            google_status.as_deref(),
            &message,
            e.http_headers(),
        );
    }
    if let Some(status) = e.status() {
        // No HTTP layer (a status the client decoded itself).
        return CloudError::permanent(resource, short(&status.message));
    }
    if e.is_timeout() || e.is_io() || e.is_connect() || e.is_transport() {
        return CloudError::transient(resource, short(&e.to_string()));
    }
    if e.is_authentication() {
        return CloudError::permanent(resource, "cannot obtain Google credentials (Application Default Credentials or LEDGERLAKE_GCP_ACCESS_TOKEN)");
    }
    CloudError::permanent(resource, short(&e.to_string()))
}

fn classify(
    resource: &str,
    status: u16,
    google_status: Option<&str>,
    message: &str,
    headers: Option<&HeaderMap>,
) -> CloudError {
    let message = short(message);
    let google_status = google_status.unwrap_or("");
    match status {
        404 => CloudError::not_found(resource),
        403 => CloudError::PermissionDenied {
            principal: "the caller".into(),
            action: "use".into(),
            resource: format!("{resource} ({message})"),
        },
        // IAM answers a stale policy etag with 409 ABORTED; Storage and others
        // answer failed preconditions with 412.
        409 if google_status.eq_ignore_ascii_case("ABORTED") => CloudError::Conflict {
            resource: resource.to_owned(),
        },
        409 => CloudError::AlreadyExists {
            resource: resource.to_owned(),
            owner: "another owner".into(),
        },
        412 => CloudError::Conflict {
            resource: resource.to_owned(),
        },
        429 => CloudError::RateLimited {
            resource: resource.to_owned(),
            retry_after: headers.and_then(retry_after),
        },
        // A service account right after its creation is "not found" to other
        // APIs for a while: eventual consistency, worth waiting out.
        400 if mentions_missing_account(&message) => {
            CloudError::transient(resource, format!("400 {message}"))
        }
        500 | 502 | 503 | 504 => CloudError::transient(resource, format!("{status} {message}")),
        401 => CloudError::permanent(resource, format!("401 not authenticated: {message}")),
        _ => CloudError::permanent(resource, format!("{status} {message}")),
    }
}

fn mentions_missing_account(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("service account") && (m.contains("does not exist") || m.contains("not found"))
}

/// `Retry-After` in whole seconds (Google sends no HTTP dates here).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(300)))
}

/// `{"error": {"status": "...", "message": "..."}}`, Google's error shape.
fn google_error(body: &[u8]) -> (Option<String>, String) {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let status = error
        .and_then(|e| e.get("status"))
        .and_then(|s| s.as_str())
        .map(str::to_owned);
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(|s| s.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&body[..body.len().min(MESSAGE_LIMIT)]).into_owned()
        });
    (status, message)
}

fn short(message: &str) -> String {
    let one_line = message.replace(['\n', '\r'], " ");
    match one_line.char_indices().nth(MESSAGE_LIMIT) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(status: &str, message: &str) -> Vec<u8> {
        serde_json::to_vec(
            &serde_json::json!({"error": {"code": 0, "status": status, "message": message}}),
        )
        .unwrap_or_default()
    }

    #[test]
    fn googles_statuses_map_to_the_ports_errors() {
        let e = from_http("secret s", 404, None, &body("NOT_FOUND", "x"));
        assert!(matches!(e, CloudError::NotFound { .. }));
        let e = from_http(
            "policy p",
            409,
            None,
            &body("ABORTED", "concurrent policy changes"),
        );
        assert!(matches!(e, CloudError::Conflict { .. }));
        let e = from_http("secret s", 409, None, &body("ALREADY_EXISTS", "exists"));
        assert!(matches!(e, CloudError::AlreadyExists { .. }));
        let e = from_http("object o", 412, None, &body("FAILED_PRECONDITION", "x"));
        assert!(matches!(e, CloudError::Conflict { .. }));
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("7"),
        );
        let e = from_http(
            "bucket b",
            429,
            Some(&headers),
            &body("RESOURCE_EXHAUSTED", "slow down"),
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        let e = from_http(
            "policy p",
            400,
            None,
            &body(
                "INVALID_ARGUMENT",
                "Service account client-a-sa@p.iam.gserviceaccount.com does not exist.",
            ),
        );
        assert!(e.is_retryable(), "eventual consistency is waited out: {e}");
        let e = from_http(
            "policy p",
            400,
            None,
            &body("INVALID_ARGUMENT", "bad field"),
        );
        assert!(!e.is_retryable());
        let e = from_http("job j", 503, None, b"upstream");
        assert!(e.is_retryable());
        assert!(e.to_string().contains("upstream"));
    }

    #[test]
    fn long_remote_messages_are_cut() {
        let e = from_http(
            "x",
            400,
            None,
            &body("INVALID_ARGUMENT", &"y".repeat(5_000)),
        );
        assert!(e.to_string().len() < 500, "{}", e.to_string().len());
    }
}
