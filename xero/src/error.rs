//! The client's error type, and Xero's error text from a failed response.

use std::time::Duration;

use serde_json::Value;

use crate::limits::{DayLimitReached, RateLimitProblem};
use crate::secret::{scrubbed_excerpt, SecretString};
use crate::token::TokenError;

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

/// Xero's error text from a body: `Message` (+ validation messages), or the
/// problem-details `Detail`/`Title`, or the text itself; bounded and with
/// the token removed in case it was echoed.
pub(crate) fn error_message(body: &[u8], token: &SecretString) -> (Option<String>, String) {
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
    // Scrubbed whole, then cut (see `scrubbed_excerpt`).
    let message = if message.is_empty() {
        scrubbed_excerpt(text.trim(), &[token], 300)
    } else {
        scrubbed_excerpt(&message, &[token], 500)
    };
    // Xero's own field, but a proxy's or a broken answer may echo anything.
    let error_type = error_type.map(|t| scrubbed_excerpt(&t, &[token], 100));
    (error_type, message)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::secret::testing;

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
    fn a_long_echoed_token_is_scrubbed_before_the_message_is_cut() {
        let jwt = testing::jwt_like();
        assert!(jwt.len() > 500);
        let token = SecretString::new(jwt.clone());
        // Plain text: cut at 300 characters, inside the token.
        let body = format!("The access token {jwt} is not valid for this organisation");
        let (_, m) = error_message(body.as_bytes(), &token);
        assert!(
            !testing::shows_part_of(&m, &jwt),
            "a piece of the token shows"
        );
        assert!(
            m.starts_with("The access token [REDACTED] is not valid"),
            "token not redacted in place"
        );
        // Xero's JSON: cut at 500 characters, inside the token.
        let body = serde_json::json!({
            "Type": "AuthenticationException",
            "Message": format!("{} rejected {jwt}", "é".repeat(120)),
        })
        .to_string();
        let (t, m) = error_message(body.as_bytes(), &token);
        assert_eq!(t.as_deref(), Some("AuthenticationException"));
        assert!(
            !testing::shows_part_of(&m, &jwt),
            "a piece of the token shows"
        );
        assert!(
            m.ends_with(" rejected [REDACTED]"),
            "token not redacted in place"
        );
    }

    #[test]
    fn a_token_we_did_not_send_is_scrubbed_too() {
        let jwt = testing::jwt_like();
        let token = SecretString::new("tok-123");
        let body = format!("The access token {jwt} is not valid for this organisation");
        let (_, m) = error_message(body.as_bytes(), &token);
        assert!(
            !testing::shows_part_of(&m, &jwt),
            "a piece of the token shows"
        );
        assert!(
            m.starts_with("The access token [REDACTED] is not valid"),
            "token not redacted in place"
        );
        let body = serde_json::json!({
            "Type": "AuthenticationException",
            "Message": format!("{} rejected {jwt}", "é".repeat(120)),
        })
        .to_string();
        let (_, m) = error_message(body.as_bytes(), &token);
        assert!(
            !testing::shows_part_of(&m, &jwt),
            "a piece of the token shows"
        );
    }

    #[test]
    fn the_error_type_is_scrubbed_like_the_message() {
        let jwt = testing::jwt_like();
        let token = SecretString::new("tok-123-long-enough");
        let body = serde_json::json!({
            "Type": format!("Unauthorised for tok-123-long-enough and {jwt}"),
            "Message": "no",
        })
        .to_string();
        let (kind, _) = error_message(body.as_bytes(), &token);
        let kind = kind.unwrap_or_default();
        assert!(
            !testing::shows_part_of(&kind, &jwt) && !kind.contains("tok-123"),
            "a piece of a token shows in the error type"
        );
        assert!(kind.starts_with("Unauthorised for "), "the type was lost");
    }
}
