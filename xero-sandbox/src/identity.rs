//! Xero's identity service, as the sandbox plays it: consent (with an
//! approve page or automatic approval), authorization codes bound to a PKCE
//! challenge and a redirect URI, single-use codes, access tokens that expire,
//! rotating refresh tokens with a grace period for the previous one,
//! revocation, and the connections (organisations) of each consent.
//!
//! Rotation, as modelled here: a consent has one current refresh token and
//! at most one previous one. Refreshing with the current token makes a new
//! current token and keeps the old one usable for the grace period.
//! Refreshing with the previous token inside its grace period also returns
//! a fresh set, which becomes current; the token that was current until
//! then dies. So a lost refresh response can be recovered by retrying with
//! the old token, while two holders refreshing independently leave one of
//! them with a dead token (`invalid_grant`), as with Xero.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;
use reqwest::Url;
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use xero::secret::SecretString;

/// Lifetimes and the app the sandbox knows.
#[derive(Debug, Clone)]
pub(crate) struct IdentityConfig {
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_uris: Vec<String>,
    pub auto_approve: bool,
    pub access_token_ttl: Duration,
    pub refresh_grace: Duration,
    pub refresh_token_ttl: Duration,
    pub code_ttl: Duration,
}

/// An OAuth error answer: status and `error` code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OAuthFailure {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

impl OAuthFailure {
    fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }

    fn grant(description: impl Into<String>) -> Self {
        Self::new(400, "invalid_grant", description)
    }
}

/// The token endpoint's success body.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    pub expires_in: u64,
    pub token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

/// A `GET /connections` entry (xero-identity.yaml `Connection`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConnectionOut {
    pub id: Uuid,
    pub auth_event_id: Uuid,
    pub tenant_id: Uuid,
    pub tenant_type: &'static str,
    pub tenant_name: String,
    pub created_date_utc: String,
    pub updated_date_utc: String,
}

/// What a valid access token may do.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    pub tenants: Vec<Uuid>,
    pub scopes: Vec<String>,
}

/// Why an access token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccessDenied {
    Missing,
    Invalid,
    Expired,
}

/// A consent waiting on the approve page.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub redirect_uri: String,
    pub state: Option<String>,
    pub scopes: Vec<String>,
    pub challenge: Option<String>,
    created: Instant,
}

/// What `/identity/connect/authorize` does.
#[derive(Debug)]
pub(crate) enum AuthorizeOutcome {
    /// Show the approve page for this pending consent.
    Page { nonce: String, pending: Pending },
    /// Redirect the browser here.
    Redirect(String),
    /// An error page (the redirect URI could not be trusted).
    Error(String),
}

#[derive(Debug)]
struct Code {
    pending: Pending,
    tenants: Vec<Uuid>,
    expires: Instant,
    used: bool,
}

#[derive(Debug)]
struct Grant {
    auth_event_id: Uuid,
    /// (connection id, tenant id).
    connections: Vec<(Uuid, Uuid)>,
    scopes: Vec<String>,
    created: OffsetDateTime,
    revoked: bool,
    current: String,
    previous: Option<(String, Instant)>,
}

#[derive(Debug)]
struct RefreshRec {
    grant: u64,
    issued: Instant,
}

#[derive(Debug)]
struct AccessRec {
    grant: u64,
    expires: Instant,
}

#[derive(Debug, Default)]
struct State {
    pending: HashMap<String, Pending>,
    codes: HashMap<String, Code>,
    grants: HashMap<u64, Grant>,
    next_grant: u64,
    refresh: HashMap<String, RefreshRec>,
    access: HashMap<String, AccessRec>,
}

/// Counters for `/sandbox/stats`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct IdentityStats {
    pub codes_issued: u64,
    pub codes_exchanged: u64,
    pub refreshes: u64,
    pub grace_refreshes: u64,
    pub invalid_grant: u64,
    pub invalid_client: u64,
    pub revocations: u64,
    /// Connections removed by `DELETE /connections/{id}`.
    pub connections_deleted: u64,
}

/// The identity service. Its Debug output shows no tokens.
pub(crate) struct Identity {
    pub cfg: IdentityConfig,
    state: Mutex<State>,
    stats: Mutex<IdentityStats>,
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Constant-time equality of two byte strings.
fn same(a: &[u8], b: &[u8]) -> bool {
    let da = Sha256::digest(a);
    let db = Sha256::digest(b);
    da.iter()
        .zip(db.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// `application/x-www-form-urlencoded` decoding of one value.
pub(crate) fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn iso(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{}.{:07}",
        crate::wire::iso_seconds(t),
        t.nanosecond() / 100
    )
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Identity {
    pub(crate) fn new(cfg: IdentityConfig) -> Self {
        Self {
            cfg,
            state: Mutex::new(State::default()),
            stats: Mutex::new(IdentityStats::default()),
        }
    }

    pub(crate) fn stats(&self) -> IdentityStats {
        lock(&self.stats).clone()
    }

    fn count(&self, f: impl FnOnce(&mut IdentityStats)) {
        f(&mut lock(&self.stats));
    }

    fn redirect_allowed(&self, uri: &str) -> bool {
        if self.cfg.redirect_uris.is_empty() {
            return Url::parse(uri).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        }
        self.cfg.redirect_uris.iter().any(|r| r == uri)
    }

    /// `GET /identity/connect/authorize`.
    pub(crate) fn authorize(
        &self,
        q: &HashMap<String, String>,
        tenants: &[Uuid],
    ) -> AuthorizeOutcome {
        let client_id = q.get("client_id").map(String::as_str).unwrap_or("");
        if client_id != self.cfg.client_id {
            return AuthorizeOutcome::Error("unauthorized_client: unknown client_id".into());
        }
        let Some(redirect_uri) = q.get("redirect_uri").filter(|r| self.redirect_allowed(r)) else {
            return AuthorizeOutcome::Error(
                "invalid_request: redirect_uri is missing or not registered".into(),
            );
        };
        let state = q.get("state").cloned();
        let fail = |error: &str, description: &str| {
            AuthorizeOutcome::Redirect(with_query(
                redirect_uri,
                &[("error", error), ("error_description", description)],
                state.as_deref(),
            ))
        };
        if q.get("response_type").map(String::as_str) != Some("code") {
            return fail("unsupported_response_type", "response_type must be code");
        }
        let scopes: Vec<String> = q
            .get("scope")
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        if scopes.is_empty() {
            return fail("invalid_scope", "scope is required");
        }
        let challenge = match (
            q.get("code_challenge"),
            q.get("code_challenge_method").map(String::as_str),
        ) {
            (None, _) => None,
            (Some(c), Some("S256")) if (43..=128).contains(&c.len()) => Some(c.clone()),
            (Some(_), _) => return fail("invalid_request", "code_challenge_method must be S256"),
        };
        let pending = Pending {
            redirect_uri: redirect_uri.clone(),
            state,
            scopes,
            challenge,
            created: Instant::now(),
        };
        if self.cfg.auto_approve {
            return AuthorizeOutcome::Redirect(self.issue_code(pending, tenants.to_vec()));
        }
        let nonce = random_token(18);
        let mut st = lock(&self.state);
        st.pending
            .retain(|_, p| p.created.elapsed() < Duration::from_secs(3600));
        st.pending.insert(nonce.clone(), pending.clone());
        AuthorizeOutcome::Page { nonce, pending }
    }

    /// The approve page's answer: a redirect back to the app.
    pub(crate) fn decide(&self, nonce: &str, allow: bool, tenants: Vec<Uuid>) -> AuthorizeOutcome {
        let Some(pending) = lock(&self.state).pending.remove(nonce) else {
            return AuthorizeOutcome::Error(
                "this consent request is unknown or was already answered".into(),
            );
        };
        if !allow || tenants.is_empty() {
            return AuthorizeOutcome::Redirect(with_query(
                &pending.redirect_uri,
                &[("error", "access_denied")],
                pending.state.as_deref(),
            ));
        }
        AuthorizeOutcome::Redirect(self.issue_code(pending, tenants))
    }

    fn issue_code(&self, pending: Pending, tenants: Vec<Uuid>) -> String {
        let code = random_token(32);
        let scope = pending.scopes.join(" ");
        let url = with_query(
            &pending.redirect_uri,
            &[("code", code.as_str()), ("scope", scope.as_str())],
            pending.state.as_deref(),
        );
        let mut st = lock(&self.state);
        let now = Instant::now();
        st.codes
            .retain(|_, c| c.expires + Duration::from_secs(600) > now);
        st.codes.insert(
            code,
            Code {
                pending,
                tenants,
                expires: now + self.cfg.code_ttl,
                used: false,
            },
        );
        drop(st);
        self.count(|s| s.codes_issued += 1);
        url
    }

    /// Checks client authentication: HTTP Basic (form-encoded id and
    /// secret, RFC 6749 §2.3.1) or `client_id`/`client_secret` in the form.
    fn client_ok(
        &self,
        basic: Option<&str>,
        form: &HashMap<String, String>,
    ) -> Result<(), OAuthFailure> {
        let creds = match basic {
            Some(h) => {
                let encoded = h
                    .strip_prefix("Basic ")
                    .or_else(|| h.strip_prefix("basic "))
                    .ok_or_else(|| {
                        OAuthFailure::new(401, "invalid_client", "unsupported authorization scheme")
                    })?;
                let raw = STANDARD
                    .decode(encoded.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        OAuthFailure::new(401, "invalid_client", "malformed Basic credentials")
                    })?;
                let (id, secret) = raw.split_once(':').ok_or_else(|| {
                    OAuthFailure::new(401, "invalid_client", "malformed Basic credentials")
                })?;
                Some((form_decode(id), form_decode(secret)))
            }
            None => match (form.get("client_id"), form.get("client_secret")) {
                (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
                _ => None,
            },
        };
        let ok = creds.is_some_and(|(id, secret)| {
            id == self.cfg.client_id
                && same(
                    secret.as_bytes(),
                    self.cfg.client_secret.expose_secret().as_bytes(),
                )
        });
        if ok {
            Ok(())
        } else {
            self.count(|s| s.invalid_client += 1);
            Err(OAuthFailure::new(
                401,
                "invalid_client",
                "client authentication failed",
            ))
        }
    }

    /// `POST /connect/token`.
    pub(crate) fn token(
        &self,
        basic: Option<&str>,
        form: &HashMap<String, String>,
    ) -> Result<TokenResponse, OAuthFailure> {
        self.client_ok(basic, form)?;
        let result = match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => self.exchange_code(form),
            Some("refresh_token") => self.refresh(form),
            Some(_) => Err(OAuthFailure::new(
                400,
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token",
            )),
            None => Err(OAuthFailure::new(
                400,
                "invalid_request",
                "grant_type is required",
            )),
        };
        if matches!(&result, Err(f) if f.error == "invalid_grant") {
            self.count(|s| s.invalid_grant += 1);
        }
        result
    }

    fn exchange_code(&self, form: &HashMap<String, String>) -> Result<TokenResponse, OAuthFailure> {
        let code = form
            .get("code")
            .ok_or_else(|| OAuthFailure::new(400, "invalid_request", "code is required"))?;
        let mut st = lock(&self.state);
        let c = st
            .codes
            .get_mut(code)
            .ok_or_else(|| OAuthFailure::grant("unknown code"))?;
        if c.used {
            return Err(OAuthFailure::grant("code already used"));
        }
        // Whatever happens next, the code is spent.
        c.used = true;
        if Instant::now() >= c.expires {
            return Err(OAuthFailure::grant("code expired"));
        }
        if form.get("redirect_uri") != Some(&c.pending.redirect_uri) {
            return Err(OAuthFailure::grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        if let Some(challenge) = &c.pending.challenge {
            let verifier = form
                .get("code_verifier")
                .ok_or_else(|| OAuthFailure::grant("code_verifier is required"))?;
            let valid_chars = verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
            if !(43..=128).contains(&verifier.len()) || !valid_chars {
                return Err(OAuthFailure::grant("malformed code_verifier"));
            }
            let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if !same(computed.as_bytes(), challenge.as_bytes()) {
                return Err(OAuthFailure::grant(
                    "code_verifier does not match code_challenge",
                ));
            }
        }
        let scopes = c.pending.scopes.clone();
        let tenants = c.tenants.clone();
        let response = self.new_grant(&mut st, tenants, scopes);
        drop(st);
        self.count(|s| s.codes_exchanged += 1);
        Ok(response)
    }

    fn new_grant(&self, st: &mut State, tenants: Vec<Uuid>, scopes: Vec<String>) -> TokenResponse {
        let id = st.next_grant;
        st.next_grant += 1;
        let auth_event_id = Uuid::new_v4();
        let offline = scopes.iter().any(|s| s == "offline_access");
        let refresh = random_token(32);
        st.grants.insert(
            id,
            Grant {
                auth_event_id,
                connections: tenants.into_iter().map(|t| (Uuid::new_v4(), t)).collect(),
                scopes,
                created: OffsetDateTime::now_utc(),
                revoked: false,
                current: refresh.clone(),
                previous: None,
            },
        );
        if offline {
            st.refresh.insert(
                refresh.clone(),
                RefreshRec {
                    grant: id,
                    issued: Instant::now(),
                },
            );
        }
        self.token_response(st, id, offline.then_some(refresh))
    }

    fn token_response(&self, st: &mut State, grant: u64, refresh: Option<String>) -> TokenResponse {
        let access = random_token(32);
        let now = Instant::now();
        if st.access.len() > 10_000 {
            st.access.retain(|_, a| a.expires > now);
        }
        st.access.insert(
            access.clone(),
            AccessRec {
                grant,
                expires: now + self.cfg.access_token_ttl,
            },
        );
        let scope = st
            .grants
            .get(&grant)
            .map(|g| g.scopes.join(" "))
            .unwrap_or_default();
        TokenResponse {
            access_token: access,
            expires_in: self.cfg.access_token_ttl.as_secs(),
            token_type: "Bearer",
            refresh_token: refresh,
            scope,
        }
    }

    fn refresh(&self, form: &HashMap<String, String>) -> Result<TokenResponse, OAuthFailure> {
        let token = form.get("refresh_token").ok_or_else(|| {
            OAuthFailure::new(400, "invalid_request", "refresh_token is required")
        })?;
        let mut st = lock(&self.state);
        let rec = st
            .refresh
            .get(token)
            .ok_or_else(|| OAuthFailure::grant("unknown refresh token"))?;
        let grant_id = rec.grant;
        let now = Instant::now();
        if rec.issued + self.cfg.refresh_token_ttl <= now {
            return Err(OAuthFailure::grant("refresh token expired"));
        }
        let grant = st
            .grants
            .get(&grant_id)
            .ok_or_else(|| OAuthFailure::grant("unknown refresh token"))?;
        if grant.revoked {
            return Err(OAuthFailure::grant("the connection was revoked"));
        }
        let fresh = random_token(32);
        let in_grace = matches!(&grant.previous, Some((p, until)) if p == token && now < *until);
        let is_current = &grant.current == token;
        if !is_current && !in_grace {
            return Err(OAuthFailure::grant(
                "refresh token was already used and its grace period is over",
            ));
        }
        let mut dead = Vec::new();
        if let Some(g) = st.grants.get_mut(&grant_id) {
            if is_current {
                if let Some((old, _)) = g.previous.take() {
                    dead.push(old);
                }
                let old_current = std::mem::replace(&mut g.current, fresh.clone());
                g.previous = Some((old_current, now + self.cfg.refresh_grace));
            } else {
                // A retry with the previous token: a fresh set replaces the
                // current one, which dies.
                let old_current = std::mem::replace(&mut g.current, fresh.clone());
                dead.push(old_current);
            }
        }
        for d in dead {
            st.refresh.remove(&d);
        }
        st.refresh.insert(
            fresh.clone(),
            RefreshRec {
                grant: grant_id,
                issued: now,
            },
        );
        let response = self.token_response(&mut st, grant_id, Some(fresh));
        drop(st);
        self.count(|s| {
            s.refreshes += 1;
            if !is_current {
                s.grace_refreshes += 1;
            }
        });
        Ok(response)
    }

    /// `POST /connect/revocation`: revoking a refresh token ends the
    /// consent (its access tokens die with it). Unknown tokens are not an
    /// error (RFC 7009).
    pub(crate) fn revoke(
        &self,
        basic: Option<&str>,
        form: &HashMap<String, String>,
    ) -> Result<(), OAuthFailure> {
        self.client_ok(basic, form)?;
        let token = form
            .get("token")
            .ok_or_else(|| OAuthFailure::new(400, "invalid_request", "token is required"))?;
        let mut st = lock(&self.state);
        let grant = st
            .refresh
            .get(token)
            .map(|r| r.grant)
            .or_else(|| st.access.get(token).map(|a| a.grant));
        if let Some(g) = grant.and_then(|g| st.grants.get_mut(&g)) {
            g.revoked = true;
        }
        drop(st);
        self.count(|s| s.revocations += 1);
        Ok(())
    }

    fn grant_of(&self, st: &State, bearer: Option<&str>) -> Result<u64, AccessDenied> {
        let token = bearer.ok_or(AccessDenied::Missing)?;
        let rec = st.access.get(token).ok_or(AccessDenied::Invalid)?;
        let grant = st.grants.get(&rec.grant).ok_or(AccessDenied::Invalid)?;
        if grant.revoked {
            return Err(AccessDenied::Invalid);
        }
        if Instant::now() >= rec.expires {
            return Err(AccessDenied::Expired);
        }
        Ok(rec.grant)
    }

    /// What the bearer token may do.
    pub(crate) fn access(&self, bearer: Option<&str>) -> Result<Access, AccessDenied> {
        let st = lock(&self.state);
        let g = self.grant_of(&st, bearer)?;
        let grant = st.grants.get(&g).ok_or(AccessDenied::Invalid)?;
        Ok(Access {
            tenants: grant.connections.iter().map(|(_, t)| *t).collect(),
            scopes: grant.scopes.clone(),
        })
    }

    /// `GET /connections`.
    pub(crate) fn connections(
        &self,
        bearer: Option<&str>,
        name_of: impl Fn(&Uuid) -> String,
        auth_event: Option<&str>,
    ) -> Result<Vec<ConnectionOut>, AccessDenied> {
        let st = lock(&self.state);
        let g = self.grant_of(&st, bearer)?;
        let grant = st.grants.get(&g).ok_or(AccessDenied::Invalid)?;
        if auth_event.is_some_and(|a| !a.eq_ignore_ascii_case(&grant.auth_event_id.to_string())) {
            return Ok(Vec::new());
        }
        Ok(grant
            .connections
            .iter()
            .map(|(id, tenant)| ConnectionOut {
                id: *id,
                auth_event_id: grant.auth_event_id,
                tenant_id: *tenant,
                tenant_type: "ORGANISATION",
                tenant_name: name_of(tenant),
                created_date_utc: iso(grant.created),
                updated_date_utc: iso(grant.created),
            })
            .collect())
    }

    /// `DELETE /connections/{id}`: `Ok(false)` if there is no such
    /// connection.
    pub(crate) fn disconnect(
        &self,
        bearer: Option<&str>,
        connection: &Uuid,
    ) -> Result<bool, AccessDenied> {
        let mut st = lock(&self.state);
        let g = self.grant_of(&st, bearer)?;
        let Some(grant) = st.grants.get_mut(&g) else {
            return Ok(false);
        };
        let before = grant.connections.len();
        grant.connections.retain(|(id, _)| id != connection);
        let removed = grant.connections.len() != before;
        drop(st);
        if removed {
            self.count(|s| s.connections_deleted += 1);
        }
        Ok(removed)
    }

    /// A consent without the browser (tests and demos): as if the user had
    /// approved `scopes` for `tenants`.
    pub(crate) fn grant_directly(&self, tenants: Vec<Uuid>, scopes: Vec<String>) -> TokenResponse {
        let mut st = lock(&self.state);
        self.new_grant(&mut st, tenants, scopes)
    }

    /// Makes every access token expired (to exercise refresh-on-401).
    pub(crate) fn expire_access_tokens(&self) -> usize {
        let mut st = lock(&self.state);
        let now = Instant::now();
        let n = st.access.len();
        for a in st.access.values_mut() {
            a.expires = now;
        }
        n
    }
}

fn with_query(base: &str, pairs: &[(&str, &str)], state: Option<&str>) -> String {
    match Url::parse(base) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
                if let Some(s) = state {
                    q.append_pair("state", s);
                }
            }
            u.to_string()
        }
        Err(_) => base.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        assert_eq!(form_decode("a+b%2Bc%3Ad%2F%C3%A9"), "a b+c:d/é");
        assert_eq!(form_decode("100%"), "100%");
        assert_eq!(form_decode("%zz"), "%zz");
    }
}
