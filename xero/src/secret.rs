//! A string that must never be printed.
//!
//! Tokens, the client secret, the PKCE verifier and the webhook key all travel
//! through structs that get logged with `{:?}` sooner or later. Wrapping them
//! here makes the safe thing the default: Debug and Display print a fixed
//! placeholder, and reading the value needs an explicit `expose_secret()`.
//! Serde is transparent because the token set is persisted as JSON in the
//! tenant's secret, where the real value is the point.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What Debug and Display print instead of a secret.
pub const REDACTED: &str = "[REDACTED]";

/// A secret string: redacted in Debug/Display, serialised as the plain value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself; call sites are the places to audit.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Replaces every occurrence of `secret` in `text` (used on error messages
/// that quote a server's response, in case it echoes what we sent).
pub(crate) fn scrub(text: &str, secret: &SecretString) -> String {
    if secret.is_empty() {
        return text.to_owned();
    }
    text.replace(secret.expose_secret(), REDACTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact_but_serde_keeps_value() {
        let s = SecretString::new("hunter2");
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(
            serde_json::to_string(&s).ok().as_deref(),
            Some("\"hunter2\"")
        );
        let back: SecretString = serde_json::from_str("\"hunter2\"").unwrap_or_default();
        assert_eq!(back.expose_secret(), "hunter2");
    }

    #[test]
    fn scrub_removes_secret() {
        let s = SecretString::new("tok123");
        assert_eq!(scrub("bad token tok123!", &s), "bad token [REDACTED]!");
        assert_eq!(scrub("nothing", &SecretString::default()), "nothing");
    }
}
