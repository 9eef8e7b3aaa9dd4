//! Xero for ledgerlake: OAuth 2.0, the rate-limited Accounting API client,
//! and webhook verification.
//!
//! Why this crate is shaped the way it is:
//!
//! - Xero refresh tokens are single-use and rotate, so the client never
//!   refreshes on its own: it asks a [`token::TokenProvider`], where the
//!   caller keeps the token set in exactly one place, under a lease, and
//!   writes it back before using it.
//! - Xero's limits are per organisation (5 in flight, 60/min, 5,000/day) and
//!   per app (10,000/min); breaking the day limit stops a tenant for a day.
//!   [`limits`] makes callers wait before sending, and one shared
//!   [`limits::RateLimits`] per process counts every organisation and the app
//!   once.
//! - Ingestion must keep every field Xero sends and never lose a page, so the
//!   client returns raw JSON one page at a time with a resumable cursor
//!   ([`pager::Pager`]) and leaves storage to the caller.
//! - Secrets never print: tokens, the client secret, the PKCE verifier and the
//!   webhook key are [`secret::SecretString`]s, redacted in Debug/Display and
//!   scrubbed from error messages.
//! - Everything points at one configurable base URL
//!   ([`oauth::XeroEndpoints::from_base`]) so tests and the demo run against
//!   the local sandbox (the `xero-sandbox` crate) instead of Xero.
//!
//! Modules depend one way: [`token_set`] and [`connection`] are plain data;
//! [`oauth`] speaks to Xero's identity service and yields token sets;
//! [`token`] is what the client asks for access tokens; [`refresh`] owns a
//! token set and refreshes it through [`oauth`]. The client ([`client`])
//! sends calls under Xero's rules, [`pager`] lists and pages on top of it,
//! [`record`] decodes responses and [`error`] is the client's error type.

pub mod client;
pub mod connection;
pub mod dates;
pub mod error;
pub mod limits;
pub mod models;
pub mod oauth;
pub mod pager;
pub mod record;
pub mod refresh;
pub mod resources;
pub mod secret;
pub mod token;
pub mod token_set;
pub mod webhook;

pub use client::{RetryPolicy, XeroClient, XeroClientBuilder};
pub use connection::Connection;
pub use error::ClientError;
pub use limits::{LimitConfig, RateLimits};
pub use oauth::{
    AuthorizationRequest, OAuthClient, OAuthConfig, OAuthError, Scopes, XeroEndpoints,
};
pub use pager::{ListRequest, Page, PageCursor, Pager};
pub use record::{Pagination, Record};
pub use refresh::{RefreshingTokenProvider, TokenVault, VaultError};
pub use resources::{Paging, Resource};
pub use secret::SecretString;
pub use token::{StaticToken, TokenError, TokenProvider};
pub use token_set::TokenSet;
pub use webhook::{WebhookError, WebhookKey, WebhookPayload};

#[cfg(test)]
mod test_support {
    /// The Accounting API contract (the copy in `xero/contract/`).
    pub(crate) fn accounting_spec() -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/contract/xero_accounting.yaml");
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("the Xero contract must be at {path}: {e}"))
    }
}
