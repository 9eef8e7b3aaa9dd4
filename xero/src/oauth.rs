//! OAuth 2.0 with Xero: consent, code exchange, refresh, revocation and the
//! organisations a consent granted.
//!
//! The flow is the authorization-code grant with PKCE (S256) and a `state`,
//! and confidential-client authentication with HTTP Basic, built on the
//! `oauth2` crate. What Xero adds, and this module encodes:
//!
//! - Refresh tokens rotate on every use and the old one dies after a short
//!   grace period, so a failed refresh with `invalid_grant` means the
//!   connection is gone until a person consents again:
//!   [`OAuthError::InvalidGrant`] is its own variant for that reason.
//! - Without `offline_access` there is no refresh token, which makes background
//!   ingestion impossible, so [`Scopes`] always includes it.
//! - Every endpoint can be derived from one base URL
//!   ([`XeroEndpoints::from_base`]) so the local sandbox stands in for all of
//!   Xero's hosts.

use std::fmt;
use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError,
    Scope, TokenResponse, TokenUrl,
};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use crate::connection::Connection;
use crate::secret::{scrubbed_excerpt, SecretString};
use crate::token_set::TokenSet;

/// Xero's authorization endpoint.
pub const XERO_AUTHORIZE_URL: &str = "https://login.xero.com/identity/connect/authorize";
/// Xero's token endpoint.
pub const XERO_TOKEN_URL: &str = "https://identity.xero.com/connect/token";
/// Xero's revocation endpoint.
pub const XERO_REVOCATION_URL: &str = "https://identity.xero.com/connect/revocation";
/// Xero's connections endpoint.
pub const XERO_CONNECTIONS_URL: &str = "https://api.xero.com/connections";
/// Base of the Accounting API.
pub const XERO_API_BASE: &str = "https://api.xero.com/api.xro/2.0";

/// The scope that yields a refresh token; always requested.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// Read scopes for apps created after 2 March 2026 (granular scopes).
pub const GRANULAR_READ_SCOPES: &[&str] = &[
    "accounting.settings.read",
    "accounting.contacts.read",
    "accounting.invoices.read",
    "accounting.payments.read",
    "accounting.banktransactions.read",
    "accounting.manualjournals.read",
    "accounting.journals.read",
];

/// Read scopes for older apps (`accounting.transactions.read`).
pub const LEGACY_READ_SCOPES: &[&str] = &[
    "accounting.settings.read",
    "accounting.contacts.read",
    "accounting.transactions.read",
    "accounting.journals.read",
];

/// The OpenID Connect scopes, for callers that want an id token.
pub const IDENTITY_SCOPES: &[&str] = &["openid", "profile", "email"];

/// The scopes to ask for. `offline_access` is added whatever the choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Scopes(Vec<String>);

impl Scopes {
    /// Granular read scopes (the default).
    pub fn granular() -> Self {
        Self::custom(GRANULAR_READ_SCOPES.iter().copied())
    }

    /// `accounting.transactions.read` and friends, for apps created before
    /// granular scopes.
    pub fn legacy() -> Self {
        Self::custom(LEGACY_READ_SCOPES.iter().copied())
    }

    /// Exactly these (plus `offline_access`).
    pub fn custom<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut v = Vec::new();
        for s in scopes {
            let s: String = s.into();
            // A scope string may itself hold several space-separated scopes.
            for part in s.split_whitespace() {
                if !v.iter().any(|x: &String| x == part) {
                    v.push(part.to_owned());
                }
            }
        }
        if !v.iter().any(|x| x == OFFLINE_ACCESS) {
            v.push(OFFLINE_ACCESS.to_owned());
        }
        Self(v)
    }

    /// Adds scopes (e.g. [`IDENTITY_SCOPES`]).
    pub fn with<I, S>(self, more: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::custom(self.0.into_iter().chain(more.into_iter().map(Into::into)))
    }

    /// The scopes, `offline_access` included.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// Space-separated, as in the `scope` parameter.
    pub fn to_scope_string(&self) -> String {
        self.0.join(" ")
    }
}

impl Default for Scopes {
    fn default() -> Self {
        Self::granular()
    }
}

/// Where Xero lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XeroEndpoints {
    /// Consent page.
    pub authorize: Url,
    /// Token endpoint (code exchange and refresh).
    pub token: Url,
    /// Revocation endpoint.
    pub revocation: Url,
    /// `GET /connections`.
    pub connections: Url,
    /// Accounting API base (`…/api.xro/2.0`).
    pub api_base: Url,
}

fn constant_url(s: &'static str) -> Url {
    // Only called with the compile-time constants above, which are valid.
    #[allow(clippy::expect_used)]
    Url::parse(s).expect("constant Xero URL is valid")
}

impl XeroEndpoints {
    /// Xero's production hosts.
    pub fn xero() -> Self {
        Self {
            authorize: constant_url(XERO_AUTHORIZE_URL),
            token: constant_url(XERO_TOKEN_URL),
            revocation: constant_url(XERO_REVOCATION_URL),
            connections: constant_url(XERO_CONNECTIONS_URL),
            api_base: constant_url(XERO_API_BASE),
        }
    }

    /// Every endpoint under one base URL, laid out like the sandbox:
    /// `/identity/connect/authorize`, `/connect/token`, `/connect/revocation`,
    /// `/connections` and `/api.xro/2.0`.
    pub fn from_base(base: &str) -> Result<Self, OAuthError> {
        let mut url = Url::parse(base.trim())
            .map_err(|e| OAuthError::Config(format!("Xero base URL {base:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(OAuthError::Config(format!(
                "Xero base URL {base:?} is not an http(s) URL"
            )));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        url.set_query(None);
        url.set_fragment(None);
        let join = |p: &str| {
            url.join(p)
                .map_err(|e| OAuthError::Config(format!("Xero base URL {base:?}: {e}")))
        };
        Ok(Self {
            authorize: join("identity/connect/authorize")?,
            token: join("connect/token")?,
            revocation: join("connect/revocation")?,
            connections: join("connections")?,
            api_base: join("api.xro/2.0")?,
        })
    }
}

impl Default for XeroEndpoints {
    fn default() -> Self {
        Self::xero()
    }
}

/// The app's OAuth settings.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: SecretString,
    /// Where Xero sends the user back; must match the app's registration.
    pub redirect_uri: Url,
    /// Scopes to request.
    pub scopes: Scopes,
    /// Endpoints (Xero's unless overridden).
    pub endpoints: XeroEndpoints,
    /// Timeout of each identity call.
    pub timeout: Duration,
}

impl OAuthConfig {
    /// Xero's endpoints and granular scopes.
    pub fn new(
        client_id: impl Into<String>,
        client_secret: impl Into<SecretString>,
        redirect_uri: Url,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            redirect_uri,
            scopes: Scopes::default(),
            endpoints: XeroEndpoints::default(),
            timeout: Duration::from_secs(30),
        }
    }

    /// Replaces the scopes.
    pub fn with_scopes(mut self, scopes: Scopes) -> Self {
        self.scopes = scopes;
        self
    }

    /// Replaces the endpoints.
    pub fn with_endpoints(mut self, endpoints: XeroEndpoints) -> Self {
        self.endpoints = endpoints;
        self
    }
}

/// What a failed identity call means.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The code or refresh token is expired, used, rotated away or revoked:
    /// the organisation must consent again.
    #[error("Xero rejected the grant (invalid_grant); the connection needs consent again{}", fmt_description(.description))]
    InvalidGrant {
        /// Xero's `error_description`, if any.
        description: Option<String>,
    },
    /// Another OAuth error response (`invalid_client`, `unauthorized_client`…).
    #[error("Xero OAuth error {error}{}", fmt_description(.description))]
    Rejected {
        /// The `error` code.
        error: String,
        /// The `error_description`, if any.
        description: Option<String>,
    },
    /// The access token was not accepted (`/connections`).
    #[error("Xero did not accept the access token (401)")]
    Unauthorized,
    /// A non-OAuth HTTP failure.
    #[error("Xero identity answered HTTP {status}: {message}")]
    Http {
        /// HTTP status.
        status: u16,
        /// Body excerpt, secrets removed.
        message: String,
    },
    /// Xero could not be reached.
    #[error("could not reach Xero identity")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A response that is not what the protocol says.
    #[error("unexpected response from Xero identity: {0}")]
    UnexpectedResponse(String),
    /// The token response had no refresh token.
    #[error("Xero granted no refresh token; offline_access must be among the granted scopes")]
    MissingRefreshToken,
    /// Bad configuration (URLs).
    #[error("invalid Xero OAuth configuration: {0}")]
    Config(String),
}

impl OAuthError {
    /// Whether a person has to consent again to restore the connection.
    pub fn needs_reconsent(&self) -> bool {
        matches!(self, OAuthError::InvalidGrant { .. })
    }

    /// Whether the same request may succeed if sent again: Xero could not be
    /// reached, the answer was lost on the way, or Xero had a 5xx or 429.
    pub fn is_transient(&self) -> bool {
        match self {
            OAuthError::Transport(_) => true,
            OAuthError::Http { status, .. } => *status == 429 || (500..=599).contains(status),
            _ => false,
        }
    }
}

fn fmt_description(d: &Option<String>) -> String {
    match d {
        Some(d) if !d.is_empty() => format!(": {d}"),
        _ => String::new(),
    }
}

/// A consent to start: send the user to `url`; keep `state` and
/// `pkce_verifier` (server-side, single use) until the callback.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    /// The consent URL.
    pub url: Url,
    /// The `state` the callback must return.
    pub state: String,
    /// The PKCE verifier for the code exchange.
    pub pkce_verifier: SecretString,
}

type OAuth2Client =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// Talks to Xero's identity service for one app.
#[derive(Clone)]
pub struct OAuthClient {
    config: OAuthConfig,
    inner: OAuth2Client,
    http: reqwest::Client,
}

impl fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OAuthClient {
    /// Builds a client; fails only on an unusable configuration.
    pub fn new(config: OAuthConfig) -> Result<Self, OAuthError> {
        // Redirects must not be followed on token requests (oauth2's advice,
        // against SSRF and leaking credentials to another host).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .build()
            .map_err(|e| OAuthError::Config(format!("HTTP client: {e}")))?;
        Self::with_http_client(config, http)
    }

    /// With a caller's HTTP client (it must not follow redirects).
    pub fn with_http_client(
        config: OAuthConfig,
        http: reqwest::Client,
    ) -> Result<Self, OAuthError> {
        let inner = BasicClient::new(ClientId::new(config.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                config.client_secret.expose_secret().to_owned(),
            ))
            .set_auth_type(AuthType::BasicAuth)
            .set_auth_uri(AuthUrl::from_url(config.endpoints.authorize.clone()))
            .set_token_uri(TokenUrl::from_url(config.endpoints.token.clone()))
            .set_redirect_uri(RedirectUrl::from_url(config.redirect_uri.clone()));
        Ok(Self {
            config,
            inner,
            http,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// A consent URL with a fresh `state` and PKCE (S256) challenge.
    pub fn authorize_url(&self) -> AuthorizationRequest {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state) = self
            .inner
            .authorize_url(CsrfToken::new_random)
            .add_scopes(
                self.config
                    .scopes
                    .as_slice()
                    .iter()
                    .map(|s| Scope::new(s.clone())),
            )
            .set_pkce_challenge(challenge)
            .url();
        AuthorizationRequest {
            url,
            state: state.secret().clone(),
            pkce_verifier: SecretString::new(verifier.secret().clone()),
        }
    }

    /// Exchanges the callback's `code` (with the verifier kept since
    /// [`Self::authorize_url`]) for tokens. The returned set has no
    /// organisations yet: see [`Self::connections`].
    pub async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &SecretString,
    ) -> Result<TokenSet, OAuthError> {
        let response = self
            .inner
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(
                pkce_verifier.expose_secret().to_owned(),
            ))
            .request_async(&self.http)
            .await
            .map_err(map_token_error)?;
        token_set_from_response(&response, None, Vec::new())
    }

    /// Exchanges the code, then reads the granted organisations into the
    /// token set: what an OAuth callback does.
    pub async fn complete_consent(
        &self,
        code: &str,
        pkce_verifier: &SecretString,
    ) -> Result<(TokenSet, Vec<Connection>), OAuthError> {
        let mut tokens = self.exchange_code(code, pkce_verifier).await?;
        let connections = self.connections(&tokens.access_token).await?;
        tokens.tenant_ids = connections.iter().map(|c| c.tenant_id.clone()).collect();
        Ok((tokens, connections))
    }

    /// Refreshes: a new token set whose refresh token replaces the old one
    /// (which Xero retires). Organisation ids are carried over.
    pub async fn refresh(&self, tokens: &TokenSet) -> Result<TokenSet, OAuthError> {
        let response = self
            .inner
            .exchange_refresh_token(&RefreshToken::new(
                tokens.refresh_token.expose_secret().to_owned(),
            ))
            .request_async(&self.http)
            .await
            .map_err(map_token_error)?;
        let mut fresh = token_set_from_response(
            &response,
            Some(&tokens.refresh_token),
            tokens.tenant_ids.clone(),
        )?;
        if fresh.scopes.is_empty() {
            fresh.scopes = tokens.scopes.clone();
        }
        Ok(fresh)
    }

    /// Revokes a refresh token (and the access tokens issued from it): the
    /// app's connection ends.
    ///
    /// Done by hand rather than with `oauth2`, which refuses revocation
    /// endpoints that are not https, and the local sandbox is plain http.
    pub async fn revoke(&self, refresh_token: &SecretString) -> Result<(), OAuthError> {
        let response = self
            .http
            .post(self.config.endpoints.revocation.clone())
            .basic_auth(
                form_encode(&self.config.client_id),
                Some(form_encode(self.config.client_secret.expose_secret())),
            )
            .form(&[
                ("token", refresh_token.expose_secret()),
                ("token_type_hint", "refresh_token"),
            ])
            .send()
            .await
            .map_err(|e| OAuthError::Transport(Box::new(e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(self.error_from_body(status, &body, &[refresh_token]))
    }

    /// The organisations this access token may use (`GET /connections`).
    pub async fn connections(
        &self,
        access_token: &SecretString,
    ) -> Result<Vec<Connection>, OAuthError> {
        let response = self
            .http
            .get(self.config.endpoints.connections.clone())
            .bearer_auth(access_token.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| OAuthError::Transport(Box::new(e.without_url())))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| OAuthError::Transport(Box::new(e.without_url())))?;
        if status == StatusCode::UNAUTHORIZED {
            return Err(OAuthError::Unauthorized);
        }
        if !status.is_success() {
            return Err(self.error_from_body(
                status,
                &String::from_utf8_lossy(&body),
                &[access_token],
            ));
        }
        serde_json::from_slice(&body).map_err(|e| {
            // Only the position: serde messages may quote values.
            OAuthError::UnexpectedResponse(format!(
                "connections are not a list of connections (line {}, column {})",
                e.line(),
                e.column()
            ))
        })
    }

    /// Removes one connection (`DELETE /connections/{id}`), e.g. at teardown.
    pub async fn disconnect(
        &self,
        access_token: &SecretString,
        connection_id: &str,
    ) -> Result<(), OAuthError> {
        let mut url = self.config.endpoints.connections.clone();
        url.path_segments_mut()
            .map_err(|_| OAuthError::Config("connections URL cannot take a path".into()))?
            .push(connection_id);
        let response = self
            .http
            .delete(url)
            .bearer_auth(access_token.expose_secret())
            .send()
            .await
            .map_err(|e| OAuthError::Transport(Box::new(e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(OAuthError::Unauthorized);
        }
        let body = response.text().await.unwrap_or_default();
        Err(self.error_from_body(status, &body, &[access_token]))
    }

    fn error_from_body(
        &self,
        status: StatusCode,
        body: &str,
        secrets: &[&SecretString],
    ) -> OAuthError {
        #[derive(Deserialize)]
        struct OAuthErrorBody {
            error: String,
            #[serde(default)]
            error_description: Option<String>,
        }
        let mut secrets = secrets.to_vec();
        secrets.push(&self.config.client_secret);
        // The server's words may echo what we sent, whichever field they use.
        let clean = |text: &str| scrubbed_excerpt(text, &secrets, usize::MAX);
        if let Ok(e) = serde_json::from_str::<OAuthErrorBody>(body) {
            let description = e.error_description.as_deref().map(clean);
            if e.error == "invalid_grant" {
                return OAuthError::InvalidGrant { description };
            }
            return OAuthError::Rejected {
                error: clean(&e.error),
                description,
            };
        }
        OAuthError::Http {
            status: status.as_u16(),
            // Scrubbed whole, then cut (see `scrubbed_excerpt`).
            message: scrubbed_excerpt(body, &secrets, 300),
        }
    }
}

/// `application/x-www-form-urlencoded` encoding of one value, which RFC 6749
/// §2.3.1 asks for before Basic-encoding client credentials (as oauth2 does).
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn map_token_error<RE>(err: RequestTokenError<RE, oauth2::basic::BasicErrorResponse>) -> OAuthError
where
    RE: std::error::Error + Send + Sync + 'static,
{
    match err {
        RequestTokenError::ServerResponse(resp) => {
            let description = resp.error_description().cloned();
            match resp.error() {
                BasicErrorResponseType::InvalidGrant => OAuthError::InvalidGrant { description },
                other => OAuthError::Rejected {
                    error: other.as_ref().to_owned(),
                    description,
                },
            }
        }
        RequestTokenError::Request(e) => OAuthError::Transport(Box::new(e)),
        // The body may hold tokens and serde's message may quote it: report
        // only where parsing failed.
        RequestTokenError::Parse(e, _body) => OAuthError::UnexpectedResponse(format!(
            "token endpoint response is not an OAuth token response (at {})",
            e.path()
        )),
        RequestTokenError::Other(msg) => OAuthError::UnexpectedResponse(msg),
    }
}

/// Xero's access tokens live 30 minutes; assumed when `expires_in` is absent.
const DEFAULT_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// The longest `expires_in` believed. Far above Xero's 30 minutes, yet a
/// wild value (a bug or a hostile endpoint) can neither overflow the date
/// past year 9999 (a panic, after Xero has already rotated the refresh token
/// we would then lose) nor keep a dead access token in use for years.
const MAX_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// When an access token issued at `now` with `expires_in` expires.
fn expiry(now: OffsetDateTime, expires_in: Option<Duration>) -> OffsetDateTime {
    let lifetime = expires_in
        .unwrap_or(DEFAULT_ACCESS_TOKEN_LIFETIME)
        .min(MAX_ACCESS_TOKEN_LIFETIME);
    // Neither fallback is reachable after the clamp short of a clock at the
    // end of time; "expires now" is the safe answer then (it only refreshes).
    time::Duration::try_from(lifetime)
        .ok()
        .and_then(|l| now.checked_add(l))
        .unwrap_or(now)
}

fn token_set_from_response(
    response: &oauth2::basic::BasicTokenResponse,
    previous_refresh: Option<&SecretString>,
    tenant_ids: Vec<String>,
) -> Result<TokenSet, OAuthError> {
    let refresh_token = match (response.refresh_token(), previous_refresh) {
        (Some(rt), _) => SecretString::new(rt.secret().clone()),
        // RFC 6749 §6: without a new one, the old refresh token stays valid.
        (None, Some(prev)) => prev.clone(),
        (None, None) => return Err(OAuthError::MissingRefreshToken),
    };
    let expires_at = expiry(OffsetDateTime::now_utc(), response.expires_in());
    let scopes = response
        .scopes()
        .map(|s| s.iter().map(|s| s.to_string()).collect())
        .unwrap_or_default();
    Ok(TokenSet {
        access_token: SecretString::new(response.access_token().secret().clone()),
        refresh_token,
        expires_at,
        scopes,
        tenant_ids,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn scopes_always_include_offline_access_once() {
        let g = Scopes::granular();
        assert!(g.as_slice().contains(&OFFLINE_ACCESS.to_owned()));
        assert!(g
            .as_slice()
            .contains(&"accounting.invoices.read".to_owned()));
        assert!(!g
            .as_slice()
            .contains(&"accounting.transactions.read".to_owned()));
        let l = Scopes::legacy();
        assert!(l
            .as_slice()
            .contains(&"accounting.transactions.read".to_owned()));
        let c = Scopes::custom(["offline_access accounting.contacts.read", "offline_access"]);
        assert_eq!(
            c.to_scope_string(),
            "offline_access accounting.contacts.read"
        );
        let i = Scopes::granular().with(IDENTITY_SCOPES.iter().copied());
        assert!(i.to_scope_string().ends_with("openid profile email"));
        assert_eq!(
            i.as_slice().iter().filter(|s| *s == OFFLINE_ACCESS).count(),
            1
        );
    }

    #[test]
    fn endpoints_from_one_base() {
        let e = XeroEndpoints::from_base("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            e.authorize.as_str(),
            "http://127.0.0.1:8080/identity/connect/authorize"
        );
        assert_eq!(e.token.as_str(), "http://127.0.0.1:8080/connect/token");
        assert_eq!(
            e.revocation.as_str(),
            "http://127.0.0.1:8080/connect/revocation"
        );
        assert_eq!(e.connections.as_str(), "http://127.0.0.1:8080/connections");
        assert_eq!(e.api_base.as_str(), "http://127.0.0.1:8080/api.xro/2.0");
        let p = XeroEndpoints::from_base("https://x.example/xero").unwrap();
        assert_eq!(p.token.as_str(), "https://x.example/xero/connect/token");
        assert!(XeroEndpoints::from_base("ftp://x").is_err());
        assert!(XeroEndpoints::from_base("not a url").is_err());
        let x = XeroEndpoints::default();
        assert_eq!(x.authorize.as_str(), XERO_AUTHORIZE_URL);
        assert_eq!(x.api_base.as_str(), XERO_API_BASE);
    }

    #[test]
    fn form_encoding_matches_rfc6749() {
        assert_eq!(form_encode("abc-._*"), "abc-._*");
        assert_eq!(form_encode("a b+c:d/é"), "a+b%2Bc%3Ad%2F%C3%A9");
    }

    fn token_response(expires_in: &str) -> oauth2::basic::BasicTokenResponse {
        serde_json::from_str(&format!(
            r#"{{"access_token":"a","token_type":"Bearer","refresh_token":"r","expires_in":{expires_in}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn absurd_expires_in_is_clamped_without_panicking() {
        let before = OffsetDateTime::now_utc();
        // 10^12 s is ~31,700 years: past year 9999, which once panicked.
        for wild in ["1000000000000", "18446744073709551615", "31536000"] {
            let t = token_set_from_response(&token_response(wild), None, Vec::new()).unwrap();
            let lifetime = t.expires_at - before;
            assert!(
                lifetime >= time::Duration::hours(24)
                    && lifetime < time::Duration::hours(24) + time::Duration::minutes(1),
                "{wild}: {lifetime}"
            );
        }
        let t = token_set_from_response(&token_response("1800"), None, Vec::new()).unwrap();
        let lifetime = t.expires_at - before;
        assert!(
            lifetime >= time::Duration::minutes(30) && lifetime < time::Duration::minutes(31),
            "{lifetime}"
        );
    }

    #[test]
    fn expiry_never_overflows_the_calendar() {
        let end = time::macros::datetime!(9999-12-31 23:59:59 UTC);
        assert_eq!(expiry(end, Some(Duration::from_secs(3600))), end);
        assert_eq!(expiry(end, Some(Duration::MAX)), end);
        let now = time::macros::datetime!(2030-01-01 00:00 UTC);
        assert_eq!(
            expiry(now, None),
            time::macros::datetime!(2030-01-01 00:30 UTC)
        );
        assert_eq!(
            expiry(now, Some(Duration::from_secs(1_000_000_000_000))),
            time::macros::datetime!(2030-01-02 00:00 UTC)
        );
    }

    #[test]
    fn error_bodies_are_scrubbed_whole_before_they_are_cut() {
        let client = OAuthClient::new(OAuthConfig::new(
            "client",
            "client-secret-value-0123456789",
            Url::parse("http://localhost/cb").unwrap(),
        ))
        .unwrap();
        let jwt = crate::secret::testing::jwt_like();
        let access = SecretString::new(jwt.clone());
        let refresh =
            SecretString::new("b1c4f0e2d9a8476c5e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d");
        let leaks = |shown: &str| {
            [
                jwt.as_str(),
                refresh.expose_secret(),
                "client-secret-value-0123456789",
            ]
            .iter()
            .any(|s| crate::secret::testing::shows_part_of(shown, s))
        };
        // An access token (a JWT, longer than the 300-character excerpt).
        let body = format!("<html>token {jwt} refused</html>");
        let err = client.error_from_body(StatusCode::BAD_GATEWAY, &body, &[&access]);
        let shown = format!("{err} {err:?}");
        assert!(!leaks(&shown), "a piece of a secret shows");
        assert!(
            shown.contains("token [REDACTED] refused"),
            "token not redacted in place"
        );
        // A refresh token straddling the 300th character, with the client secret.
        let body = format!(
            "{} {} client-secret-value-0123456789",
            "-".repeat(280),
            refresh.expose_secret()
        );
        let err = client.error_from_body(StatusCode::BAD_GATEWAY, &body, &[&refresh]);
        let shown = format!("{err} {err:?}");
        assert!(!leaks(&shown), "a piece of a secret shows");
        match &err {
            OAuthError::Http { status, message } => {
                assert_eq!(*status, 502);
                assert_eq!(message.chars().count(), 300);
            }
            _ => panic!("expected an HTTP error"),
        }
        // An OAuth error whose description echoes the token.
        let body = serde_json::json!({
            "error": "invalid_token",
            "error_description": format!("{} is not a refresh token", refresh.expose_secret()),
        })
        .to_string();
        let err = client.error_from_body(StatusCode::BAD_REQUEST, &body, &[&refresh]);
        let shown = format!("{err} {err:?}");
        assert!(!leaks(&shown), "a piece of a secret shows");
        assert!(
            shown.contains("[REDACTED] is not a refresh token"),
            "token not redacted in place"
        );
    }

    #[test]
    fn config_debug_hides_secret() {
        let c = OAuthConfig::new(
            "client",
            "very-secret-value",
            Url::parse("http://localhost/cb").unwrap(),
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret-value"));
        assert!(shown.contains("client"));
    }
}
