//! Cloud Scheduler's calls of `POST /v1/scheduler/tick`: a Google-signed
//! OIDC ID token, verified here without any Google library.
//!
//! A token is accepted when its header says RS256 and names a key (`kid`)
//! of Google's JWKS; its signature verifies against that key; its issuer is
//! Google's; its audience is the one configured; its `email` is the
//! scheduler's service account with `email_verified`; and `exp`, `nbf` and
//! `iat` hold within a small leeway. The JWKS is cached, fetched again when
//! it is old or a token names a key it lacks (at most every few seconds, so
//! that made-up key ids cannot turn every request into a fetch), each fetch
//! with a timeout. Nothing of a token ever goes into an error or a log.

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Where Google publishes the keys that sign its ID tokens.
pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";

/// The issuers Google's ID tokens carry (both spellings are Google's).
pub const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

/// Clock skew allowed on `exp`, `nbf` and `iat`.
pub const LEEWAY: Duration = Duration::from_secs(60);

/// How long a fetched JWKS is used before it is fetched again (Google
/// rotates its keys over days, publishing new ones well before use).
const JWKS_MAX_AGE: Duration = Duration::from_secs(60 * 60);

/// An unknown key id fetches the JWKS again at most this often.
const JWKS_MIN_REFRESH: Duration = Duration::from_secs(10);

/// How long one JWKS fetch may take.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest JWKS document read (Google's is about 2 KB).
const JWKS_MAX_BYTES: usize = 64 * 1024;

/// Who may call the tick with an ID token, and where Google's keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerIdentity {
    /// The audience the Cloud Scheduler job puts in its tokens (usually
    /// the tick's URL).
    pub audience: String,
    /// The email of the service account the Cloud Scheduler job runs as.
    pub service_account: String,
    /// Google's JWKS ([`GOOGLE_JWKS_URL`]; a local server in tests).
    pub jwks_url: String,
}

/// Why an ID token was refused: each has a stable code for the 401 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("the ID token is malformed ({0})")]
    Malformed(&'static str),
    #[error("the ID token must be signed with RS256")]
    Algorithm,
    #[error("the ID token is signed with a key Google does not publish")]
    UnknownKey,
    #[error("the ID token's signature does not verify")]
    Signature,
    #[error("the ID token is not issued by Google")]
    Issuer,
    #[error("the ID token is for another audience")]
    Audience,
    #[error("the ID token is not the scheduler's service account's")]
    Caller,
    #[error("the ID token's email is not verified")]
    EmailUnverified,
    #[error("the ID token has expired")]
    Expired,
    #[error("the ID token is not valid yet")]
    NotYetValid,
    #[error("Google's signing keys could not be fetched")]
    KeysUnavailable,
}

impl IdTokenError {
    /// The `code` of the 401 answer.
    pub fn code(&self) -> &'static str {
        match self {
            IdTokenError::Malformed(_) => "id_token_malformed",
            IdTokenError::Algorithm => "id_token_algorithm",
            IdTokenError::UnknownKey => "id_token_unknown_key",
            IdTokenError::Signature => "id_token_signature",
            IdTokenError::Issuer => "id_token_issuer",
            IdTokenError::Audience => "id_token_audience",
            IdTokenError::Caller => "id_token_caller",
            IdTokenError::EmailUnverified => "id_token_email_unverified",
            IdTokenError::Expired => "id_token_expired",
            IdTokenError::NotYetValid => "id_token_not_yet_valid",
            IdTokenError::KeysUnavailable => "id_token_keys_unavailable",
        }
    }
}

/// Whether a bearer token has the shape of a JWT (three dot-separated
/// parts), so that only those are verified as ID tokens.
pub fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// The claims checked here beyond what `jsonwebtoken` validates.
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    email: Option<String>,
    /// A boolean in ID tokens; some Google endpoints spell it as a string.
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
    #[serde(default)]
    iat: Option<i64>,
}

/// One key of a JWKS document; keys of other types are skipped.
#[derive(Debug, Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    /// When `keys` were fetched.
    fetched: Option<Instant>,
    /// When a fetch was last tried, whatever came of it.
    attempted: Option<Instant>,
}

/// Verifies the scheduler's ID tokens, with Google's keys cached. Shared by
/// every request (one per service).
pub struct IdTokenVerifier {
    identity: SchedulerIdentity,
    http: reqwest::Client,
    /// One fetch at a time: requests naming a new key wait for it.
    cache: Mutex<KeyCache>,
    min_refresh: Duration,
}

impl std::fmt::Debug for IdTokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdTokenVerifier")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl IdTokenVerifier {
    pub fn new(identity: SchedulerIdentity) -> Result<Self, reqwest::Error> {
        Self::with_refresh(identity, JWKS_MIN_REFRESH)
    }

    /// [`IdTokenVerifier::new`] fetching the JWKS for an unknown key at most
    /// every `min_refresh` (tests rotate keys without waiting).
    pub fn with_refresh(
        identity: SchedulerIdentity,
        min_refresh: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(JWKS_TIMEOUT)
            .connect_timeout(JWKS_TIMEOUT)
            .build()?;
        Ok(IdTokenVerifier {
            identity,
            http,
            cache: Mutex::new(KeyCache::default()),
            min_refresh,
        })
    }

    pub fn identity(&self) -> &SchedulerIdentity {
        &self.identity
    }

    /// Checks `token` as described in the module documentation.
    pub async fn verify(&self, token: &str) -> Result<(), IdTokenError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| IdTokenError::Malformed("its header does not decode"))?;
        // Before any key is looked at: `none`, HS256 signed with the public
        // key and every other algorithm are refused here.
        if header.alg != Algorithm::RS256 {
            return Err(IdTokenError::Algorithm);
        }
        let kid = header
            .kid
            .ok_or(IdTokenError::Malformed("its header names no key"))?;
        let key = self.key(&kid).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&GOOGLE_ISSUERS);
        validation.set_audience(&[&self.identity.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY.as_secs();
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidSignature => IdTokenError::Signature,
                ErrorKind::ExpiredSignature => IdTokenError::Expired,
                ErrorKind::ImmatureSignature => IdTokenError::NotYetValid,
                ErrorKind::InvalidIssuer => IdTokenError::Issuer,
                ErrorKind::InvalidAudience => IdTokenError::Audience,
                ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                    IdTokenError::Algorithm
                }
                ErrorKind::MissingRequiredClaim(_) => {
                    IdTokenError::Malformed("a required claim (exp, iat, iss, aud) is missing")
                }
                _ => IdTokenError::Malformed("its claims do not decode"),
            }
        })?;
        let claims = data.claims;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let leeway = i64::try_from(LEEWAY.as_secs()).unwrap_or(i64::MAX);
        if claims
            .iat
            .is_some_and(|iat| iat > now.saturating_add(leeway))
        {
            return Err(IdTokenError::NotYetValid);
        }
        if claims.email.as_deref() != Some(self.identity.service_account.as_str()) {
            return Err(IdTokenError::Caller);
        }
        let verified = match &claims.email_verified {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => s == "true",
            _ => false,
        };
        if !verified {
            return Err(IdTokenError::EmailUnverified);
        }
        Ok(())
    }

    /// Google's key `kid`: from the cache while it is fresh, else fetched
    /// again (a stale cache still serves when a fetch fails).
    async fn key(&self, kid: &str) -> Result<DecodingKey, IdTokenError> {
        let mut cache = self.cache.lock().await;
        let fresh = cache.fetched.is_some_and(|at| at.elapsed() < JWKS_MAX_AGE);
        if fresh {
            if let Some(key) = cache.keys.get(kid) {
                return Ok(key.clone());
            }
        }
        // A failing JWKS server, like an unknown key id, is asked again at
        // most every `min_refresh`.
        if cache
            .attempted
            .is_none_or(|at| at.elapsed() >= self.min_refresh)
        {
            cache.attempted = Some(Instant::now());
            match self.fetch().await {
                Ok(keys) => {
                    cache.keys = keys;
                    cache.fetched = Some(Instant::now());
                }
                Err(reason) => {
                    tracing::warn!(url = %self.identity.jwks_url, %reason, "fetching Google's JWKS failed")
                }
            }
        }
        match cache.keys.get(kid) {
            Some(key) => Ok(key.clone()),
            None if cache.fetched.is_none() => Err(IdTokenError::KeysUnavailable),
            None => Err(IdTokenError::UnknownKey),
        }
    }

    /// The RSA signing keys of the JWKS, by key id.
    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, String> {
        let response = self
            .http
            .get(&self.identity.jwks_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > JWKS_MAX_BYTES as u64)
        {
            return Err("the document is too large".to_owned());
        }
        let body = read_capped(response, JWKS_MAX_BYTES).await?;
        let jwks: Jwks = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let mut keys = HashMap::new();
        for jwk in jwks.keys {
            let usable = jwk.kty == "RSA"
                && jwk.alg.as_deref().is_none_or(|a| a == "RS256")
                && jwk.use_.as_deref().is_none_or(|u| u == "sig");
            let (Some(kid), Some(n), Some(e), true) = (jwk.kid, jwk.n, jwk.e, usable) else {
                continue;
            };
            match DecodingKey::from_rsa_components(&n, &e) {
                Ok(key) => {
                    keys.insert(kid, key);
                }
                Err(e) => tracing::warn!(%kid, error = %e, "skipping an unreadable JWKS key"),
            }
        }
        if keys.is_empty() {
            return Err("it holds no RSA signing key".to_owned());
        }
        Ok(keys)
    }
}

/// The body of `response`, read chunk by chunk and refused as soon as it
/// passes `limit`: a chunked body declares no length, so checking after
/// reading it all would buffer whatever the server sends.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err("the document is too large".to_owned());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_endless_chunked_jwks_is_refused_once_past_the_cap() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head).await;
            let start = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         transfer-encoding: chunked\r\n\r\n";
            if stream.write_all(start.as_bytes()).await.is_err() {
                return;
            }
            // 16 KiB of JSON whitespace a chunk, until the client hangs up.
            let chunk = format!("4000\r\n{}\r\n", " ".repeat(0x4000));
            while stream.write_all(chunk.as_bytes()).await.is_ok() {}
        });
        let verifier = IdTokenVerifier::new(SchedulerIdentity {
            audience: "https://example.test/v1/scheduler/tick".to_owned(),
            service_account: "scheduler@example.iam.gserviceaccount.com".to_owned(),
            jwks_url: format!("http://{addr}/certs"),
        })
        .expect("client");
        let started = Instant::now();
        let fetched = verifier.fetch().await;
        let took = started.elapsed();
        assert_eq!(
            fetched.err().as_deref(),
            Some("the document is too large"),
            "after {took:?}"
        );
        // Refused on reaching the cap, not when the fetch's timeout ends an
        // unbounded read.
        assert!(took < JWKS_TIMEOUT / 2, "{took:?}");
    }

    #[test]
    fn only_three_part_tokens_are_taken_for_jwts() {
        assert!(looks_like_jwt("a.b.c"));
        assert!(looks_like_jwt("a.b."));
        assert!(!looks_like_jwt("operator-token"));
        assert!(!looks_like_jwt("llt_abc"));
        assert!(!looks_like_jwt("a.b.c.d"));
    }

    #[test]
    fn every_refusal_has_its_own_code() {
        let all = [
            IdTokenError::Malformed("x"),
            IdTokenError::Algorithm,
            IdTokenError::UnknownKey,
            IdTokenError::Signature,
            IdTokenError::Issuer,
            IdTokenError::Audience,
            IdTokenError::Caller,
            IdTokenError::EmailUnverified,
            IdTokenError::Expired,
            IdTokenError::NotYetValid,
            IdTokenError::KeysUnavailable,
        ];
        let codes: std::collections::BTreeSet<_> = all.iter().map(|e| e.code()).collect();
        assert_eq!(codes.len(), all.len());
    }
}
