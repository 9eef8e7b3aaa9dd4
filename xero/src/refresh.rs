//! A token provider that owns one token set and refreshes it, and the vault
//! it lives in between uses.
//!
//! Xero's refresh tokens rotate on every use and the previous one dies after
//! a 30-minute grace period, so two holders refreshing the same set
//! independently lose the connection. [`RefreshingTokenProvider`] therefore
//! refreshes under the [`TokenVault`]'s lease and writes the new set back
//! before handing out its access token.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::oauth::OAuthClient;
use crate::secret::SecretString;
use crate::token::{TokenError, TokenProvider};
use crate::token_set::TokenSet;

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
