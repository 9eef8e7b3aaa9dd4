//! The token set and how the API client obtains access tokens.
//!
//! A [`TokenSet`] is what a tenant's secret holds (as JSON). Because Xero's
//! refresh tokens are single-use, a token set must have exactly one owner who
//! refreshes it and writes it back before using the new access token; the
//! client therefore never refreshes by itself but asks a [`TokenProvider`],
//! which is where the caller puts its lease and its write-back.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::oauth::{Connection, OAuthClient, OAuthError};
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

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The refresh token is dead (`invalid_grant`): consent again.
    #[error("the Xero connection needs consent again")]
    ReconsentRequired,
    /// This provider cannot refresh.
    #[error("this token provider cannot refresh")]
    RefreshUnavailable,
    /// Refreshing failed otherwise.
    #[error("refreshing the Xero token failed")]
    OAuth(#[source] OAuthError),
    /// The caller's storage failed (e.g. writing the token set back).
    #[error("token storage failed")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Another holder kept the token set's lease for longer than we wait.
    #[error("the token set is being refreshed by another process; try again shortly")]
    LeaseUnavailable,
}

impl From<OAuthError> for TokenError {
    fn from(e: OAuthError) -> Self {
        if e.needs_reconsent() {
            TokenError::ReconsentRequired
        } else {
            TokenError::OAuth(e)
        }
    }
}

/// Where the API client gets bearer tokens.
#[async_trait]
pub trait TokenProvider: Send + Sync {
    /// A current access token.
    async fn access_token(&self) -> Result<SecretString, TokenError>;

    /// Xero refused `rejected` with 401: return a fresh token. If another
    /// caller already replaced `rejected`, return the replacement instead of
    /// refreshing again (refresh tokens are single-use).
    async fn refresh(&self, rejected: &SecretString) -> Result<SecretString, TokenError>;
}

/// A fixed access token that cannot be refreshed (tests, one-off scripts).
#[derive(Debug, Clone)]
pub struct StaticToken(pub SecretString);

#[async_trait]
impl TokenProvider for StaticToken {
    async fn access_token(&self) -> Result<SecretString, TokenError> {
        Ok(self.0.clone())
    }

    async fn refresh(&self, _rejected: &SecretString) -> Result<SecretString, TokenError> {
        Err(TokenError::RefreshUnavailable)
    }
}

/// An error of the caller's token storage.
pub type VaultError = Box<dyn std::error::Error + Send + Sync>;

/// Where a token set lives between uses: the one place every process that
/// uses it reads it from and writes it back to, with a lease so that only one
/// of them refreshes at a time (refresh tokens rotate and are single-use:
/// two processes refreshing the same set independently lose the connection).
#[async_trait]
pub trait TokenVault: Send + Sync {
    /// The token set as stored now.
    async fn load(&self) -> Result<TokenSet, VaultError>;
    /// Stores `tokens` durably, replacing what was stored.
    async fn store(&self, tokens: &TokenSet) -> Result<(), VaultError>;
    /// Takes the lease on the token set, waiting as long as the vault sees
    /// fit; `false` when it could not be had.
    async fn lock(&self) -> Result<bool, VaultError>;
    /// Releases the lease. Best effort: a lease that is not released expires.
    async fn unlock(&self);
}

/// Attempts at one refresh when the answer is lost or Xero fails transiently.
const REFRESH_ATTEMPTS: u32 = 4;
/// Attempts at writing a refreshed set back.
const STORE_ATTEMPTS: u32 = 3;

/// A provider that owns one token set: refreshes it with [`OAuthClient`]
/// when it is about to expire or was rejected, and lets only one refresh run
/// at a time in this process.
///
/// With a [`TokenVault`], a refresh happens under the vault's lease: the
/// stored set is read again first (another process may have refreshed it
/// already, and then that set is used), the refresh is sent, and the new set
/// is written back before its access token is used. A refresh whose answer is
/// lost is sent again with the same refresh token, which Xero honours within
/// its 30-minute grace period.
pub struct RefreshingTokenProvider {
    oauth: OAuthClient,
    tokens: Mutex<TokenSet>,
    vault: Option<Arc<dyn TokenVault>>,
    margin: Duration,
    retry_delay: Duration,
}

impl fmt::Debug for RefreshingTokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshingTokenProvider")
            .field("margin", &self.margin)
            .finish_non_exhaustive()
    }
}

impl RefreshingTokenProvider {
    /// Refreshes when fewer than `margin` remain (5 minutes is sensible).
    pub fn new(
        oauth: OAuthClient,
        tokens: TokenSet,
        vault: Option<Arc<dyn TokenVault>>,
        margin: Duration,
    ) -> Self {
        Self {
            oauth,
            tokens: Mutex::new(tokens),
            vault,
            margin,
            retry_delay: Duration::from_millis(500),
        }
    }

    /// Loads the token set from `vault` and refreshes through it.
    pub async fn from_vault(
        oauth: OAuthClient,
        vault: Arc<dyn TokenVault>,
        margin: Duration,
    ) -> Result<Self, TokenError> {
        let tokens = vault.load().await.map_err(TokenError::Store)?;
        Ok(Self::new(oauth, tokens, Some(vault), margin))
    }

    /// The first wait between attempts of a failed refresh (doubling after).
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// The current token set (e.g. to store at the end of a run).
    pub async fn current(&self) -> TokenSet {
        self.tokens.lock().await.clone()
    }

    /// Refreshes now, whatever the expiry (a keep-alive: refresh tokens die
    /// after 60 days unused). Returns the new set.
    pub async fn refresh_now(&self) -> Result<TokenSet, TokenError> {
        let mut tokens = self.tokens.lock().await;
        let before = tokens.access_token.clone();
        self.refresh_locked(&mut tokens, Some(&before)).await?;
        Ok(tokens.clone())
    }

    /// Sends the refresh, again with the same refresh token when the answer
    /// was lost or Xero failed transiently.
    async fn send_refresh(&self, tokens: &TokenSet) -> Result<TokenSet, TokenError> {
        let mut delay = self.retry_delay;
        let mut attempt = 1;
        loop {
            match self.oauth.refresh(tokens).await {
                Ok(fresh) => return Ok(fresh),
                Err(e) if e.is_transient() && attempt < REFRESH_ATTEMPTS => {
                    tracing::warn!(attempt, error = %e, "Xero token refresh failed; sending it again");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn store(&self, vault: &dyn TokenVault, fresh: &TokenSet) -> Result<(), TokenError> {
        let mut attempt = 1;
        loop {
            match vault.store(fresh).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < STORE_ATTEMPTS => {
                    tracing::warn!(attempt, error = %e, "writing the refreshed Xero token set failed; again");
                    tokio::time::sleep(self.retry_delay).await;
                    attempt += 1;
                }
                // The new set is lost, but the stored refresh token stays
                // usable for Xero's grace period, so a later refresh recovers.
                Err(e) => return Err(TokenError::Store(e)),
            }
        }
    }

    /// Refreshes `tokens` (held locked by the caller). `rejected`, when given,
    /// is an access token that must not be handed out again.
    async fn refresh_locked(
        &self,
        tokens: &mut TokenSet,
        rejected: Option<&SecretString>,
    ) -> Result<(), TokenError> {
        let Some(vault) = &self.vault else {
            *tokens = self.send_refresh(tokens).await?;
            return Ok(());
        };
        if !vault.lock().await.map_err(TokenError::Store)? {
            return Err(TokenError::LeaseUnavailable);
        }
        let result = self.refresh_leased(vault.as_ref(), tokens, rejected).await;
        vault.unlock().await;
        result
    }

    async fn refresh_leased(
        &self,
        vault: &dyn TokenVault,
        tokens: &mut TokenSet,
        rejected: Option<&SecretString>,
    ) -> Result<(), TokenError> {
        let stored = vault.load().await.map_err(TokenError::Store)?;
        if stored.refresh_token != tokens.refresh_token {
            // Another holder refreshed since we read the set: theirs is the
            // live one, and ours is spent.
            let usable = !stored.is_expiring_within(self.margin)
                && rejected.is_none_or(|r| stored.access_token != *r);
            *tokens = stored;
            if usable {
                tracing::debug!("adopted the token set another holder refreshed");
                return Ok(());
            }
        }
        let fresh = self.send_refresh(tokens).await?;
        self.store(vault, &fresh).await?;
        tracing::info!(expires_at = %fresh.expires_at, "refreshed Xero token set");
        *tokens = fresh;
        Ok(())
    }
}

#[async_trait]
impl TokenProvider for RefreshingTokenProvider {
    async fn access_token(&self) -> Result<SecretString, TokenError> {
        let mut tokens = self.tokens.lock().await;
        if tokens.is_expiring_within(self.margin) {
            self.refresh_locked(&mut tokens, None).await?;
        }
        Ok(tokens.access_token.clone())
    }

    async fn refresh(&self, rejected: &SecretString) -> Result<SecretString, TokenError> {
        let mut tokens = self.tokens.lock().await;
        if tokens.access_token != *rejected {
            return Ok(tokens.access_token.clone());
        }
        self.refresh_locked(&mut tokens, Some(rejected)).await?;
        Ok(tokens.access_token.clone())
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

    #[tokio::test]
    async fn static_token_cannot_refresh() {
        let p = StaticToken(SecretString::new("t"));
        assert_eq!(p.access_token().await.unwrap().expose_secret(), "t");
        assert!(matches!(
            p.refresh(&SecretString::new("t")).await,
            Err(TokenError::RefreshUnavailable)
        ));
    }

    #[test]
    fn invalid_grant_becomes_reconsent() {
        let e: TokenError = OAuthError::InvalidGrant { description: None }.into();
        assert!(matches!(e, TokenError::ReconsentRequired));
        let e: TokenError = OAuthError::Unauthorized.into();
        assert!(matches!(e, TokenError::OAuth(_)));
    }
}
