//! The token set of one consent: what a tenant's secret holds (as JSON).
//!
//! Xero's refresh tokens are single-use and rotate, so a token set must have
//! exactly one owner who refreshes it and writes it back before using the new
//! access token (see [`crate::refresh`]).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::connection::Connection;
use crate::secret::SecretString;

/// Tokens of one consent: stored as JSON in the tenant's secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSet {
    /// Bearer token for API calls (30 minutes).
    pub access_token: SecretString,
    /// Single-use refresh token (60 days unused).
    pub refresh_token: SecretString,
    /// When the access token expires.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Granted scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Organisations (Xero tenant ids) the consent granted.
    #[serde(default)]
    pub tenant_ids: Vec<String>,
}

impl TokenSet {
    /// Whether the access token expires within `margin` from now (or has).
    pub fn is_expiring_within(&self, margin: Duration) -> bool {
        self.is_expiring_within_at(OffsetDateTime::now_utc(), margin)
    }

    /// As [`Self::is_expiring_within`], at a given time.
    pub fn is_expiring_within_at(&self, now: OffsetDateTime, margin: Duration) -> bool {
        let margin = time::Duration::try_from(margin).unwrap_or(time::Duration::MAX);
        now.checked_add(margin)
            .is_none_or(|deadline| deadline >= self.expires_at)
    }

    /// Records the organisations from `GET /connections`.
    pub fn set_connections(&mut self, connections: &[Connection]) {
        self.tenant_ids = connections.iter().map(|c| c.tenant_id.clone()).collect();
    }
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &self.access_token)
            .field("refresh_token", &self.refresh_token)
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .field("tenant_ids", &self.tenant_ids)
            .finish()
    }
}

impl fmt::Display for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Xero token set for {} organisation(s), access token expires {} (tokens redacted)",
            self.tenant_ids.len(),
            self.expires_at
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn sample() -> TokenSet {
        TokenSet {
            access_token: SecretString::new("access-secret-abc"),
            refresh_token: SecretString::new("refresh-secret-xyz"),
            expires_at: datetime!(2030-01-01 00:30 UTC),
            scopes: vec!["offline_access".into()],
            tenant_ids: vec!["fe79f7dd-b6d4-4a92-ba7b-538af6289c58".into()],
        }
    }

    #[test]
    fn debug_and_display_never_show_tokens() {
        let t = sample();
        for shown in [format!("{t:?}"), format!("{t:#?}"), format!("{t}")] {
            assert!(!shown.contains("access-secret-abc"), "{shown}");
            assert!(!shown.contains("refresh-secret-xyz"), "{shown}");
        }
        assert!(format!("{t:?}").contains("fe79f7dd"));
        assert!(format!("{t:?}").contains("[REDACTED]"));
    }

    #[test]
    fn json_round_trip_keeps_secrets() {
        let t = sample();
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains("refresh-secret-xyz"));
        assert!(json.contains("\"expires_at\":\"2030-01-01T00:30:00Z\""));
        let back: TokenSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn expiry_margin() {
        let t = sample();
        let now = datetime!(2030-01-01 00:00 UTC);
        assert!(!t.is_expiring_within_at(now, Duration::from_secs(29 * 60)));
        assert!(t.is_expiring_within_at(now, Duration::from_secs(30 * 60)));
        assert!(t.is_expiring_within_at(datetime!(2030-01-01 01:00 UTC), Duration::ZERO));
        assert!(t.is_expiring_within_at(now, Duration::MAX));
        assert!(!t.is_expiring_within(Duration::from_secs(60)));
    }
}
