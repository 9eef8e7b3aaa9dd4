//! How the API client obtains access tokens.
//!
//! Because Xero's refresh tokens are single-use, the client never refreshes
//! by itself but asks a [`TokenProvider`], which is where the caller puts its
//! lease and its write-back: a [`StaticToken`] for tests and one-off
//! scripts, or the refreshing provider of [`crate::refresh`].

use async_trait::async_trait;

use crate::oauth::OAuthError;
use crate::secret::SecretString;

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
