//! Tenant API tokens: the credentials a tenant's own software asks questions
//! with. A token's secret (`llt_` and 43 characters) is shown once, when it is
//! issued; only its SHA-256 is stored, and a presented secret is found by that
//! hash. A token goes with its tenant (a foreign key with cascade).

use cloud::TenantId;
use serde::Serialize;
use sqlx::any::AnyRow;
use time::OffsetDateTime;
use xero::secret::SecretString;

use super::{
    get, get_parsed, get_time, get_time_opt, ms_from_time, now_ms, secret_hash, tenant_write_err,
    Store, StoreError,
};

/// What every token secret starts with, so that a bearer token says which
/// kind of credential it is (and secret scanners can recognise a leaked one).
pub const TOKEN_PREFIX: &str = "llt_";

/// Characters after the prefix: 32 random bytes in URL-safe base64, unpadded.
const SECRET_CHARS: usize = 43;

/// `last_used_at` is written at most this often per token, so that a busy
/// token does not turn every question into a write.
const LAST_USED_EVERY_MS: i64 = 60_000;

/// A token as stored: never its secret, nor the secret's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiTokenRecord {
    pub id: String,
    pub tenant: TenantId,
    pub name: String,
    /// Who issued it.
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// `None`: it does not expire.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// To the minute: see [`Store::verify_api_token`].
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

impl ApiTokenRecord {
    /// Whether it authenticates at `now`.
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }

    /// `active`, `revoked` or `expired`, for listings.
    pub fn state(&self, now: OffsetDateTime) -> &'static str {
        match (self.revoked_at, self.is_active(now)) {
            (Some(_), _) => "revoked",
            (None, true) => "active",
            (None, false) => "expired",
        }
    }
}

/// What [`Store::revoke_api_token`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// No token has this id.
    Unknown,
    /// Revoked now.
    Revoked(ApiTokenRecord),
    /// It had been revoked before; nothing changed.
    AlreadyRevoked(ApiTokenRecord),
}

const TOKEN_COLUMNS: &str =
    "id, tenant_id, name, created_by, created_at, expires_at, revoked_at, last_used_at";

fn token_from_row(row: &AnyRow) -> Result<ApiTokenRecord, StoreError> {
    Ok(ApiTokenRecord {
        id: get(row, "id")?,
        tenant: get_parsed(row, "tenant_id")?,
        name: get(row, "name")?,
        created_by: get(row, "created_by")?,
        created_at: get_time(row, "created_at")?,
        expires_at: get_time_opt(row, "expires_at")?,
        revoked_at: get_time_opt(row, "revoked_at")?,
        last_used_at: get_time_opt(row, "last_used_at")?,
    })
}

/// A fresh secret: the prefix and 32 random bytes.
fn new_secret() -> SecretString {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    SecretString::new(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// A fresh token id: short, random, and safe in a URL path.
fn new_token_id() -> String {
    let bytes: [u8; 8] = rand::random();
    format!("tok_{}", hex::encode(bytes))
}

/// Whether `presented` has the shape of a secret this module issues, so that
/// anything else is refused without a database round trip.
pub fn looks_like_secret(presented: &str) -> bool {
    presented.strip_prefix(TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() == SECRET_CHARS
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

impl Store {
    /// Issues a token for `tenant`: returns its record and its secret, which
    /// is not stored and cannot be shown again. `TenantNotFound` when the
    /// tenant does not exist.
    pub async fn issue_api_token(
        &self,
        tenant: &TenantId,
        name: &str,
        created_by: &str,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<(ApiTokenRecord, SecretString), StoreError> {
        let secret = new_secret();
        let id = new_token_id();
        let now = now_ms();
        // SQLite's foreign key and PostgreSQL's both refuse an unknown
        // tenant; the insert names it in either case.
        let inserted = self
            .execute(
                sqlx::query(
                    "INSERT INTO api_tokens \
                       (id, tenant_id, name, token_hash, created_by, created_at, expires_at) \
                     SELECT $1, id, $3, $4, $5, $6, $7 FROM tenants WHERE id = $2",
                )
                .bind(&id)
                .bind(tenant.as_str())
                .bind(name)
                .bind(secret_hash(secret.expose_secret()))
                .bind(created_by)
                .bind(now)
                .bind(expires_at.map(ms_from_time)),
            )
            .await
            .map_err(|e| tenant_write_err(tenant, e))?;
        if inserted == 0 {
            return Err(StoreError::TenantNotFound(tenant.clone()));
        }
        let record = self
            .get_api_token(&id)
            .await?
            .ok_or_else(|| StoreError::TenantNotFound(tenant.clone()))?;
        Ok((record, secret))
    }

    /// The token with this id, revoked or expired or not.
    pub async fn get_api_token(&self, id: &str) -> Result<Option<ApiTokenRecord>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1");
        self.fetch_optional(sqlx::query(&sql).bind(id), token_from_row)
            .await
    }

    /// The tenant's tokens, oldest first, revoked and expired ones included.
    pub async fn list_api_tokens(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<ApiTokenRecord>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE tenant_id = $1 \
             ORDER BY created_at, id"
        );
        self.fetch_all(sqlx::query(&sql).bind(tenant.as_str()), token_from_row)
            .await
    }

    /// The token whose secret is `presented`, when it exists, is neither
    /// revoked nor expired, and its tenant is wanted (not being torn down);
    /// `None` otherwise, whichever the reason, so that callers cannot tell
    /// them apart. Records the use, at most once a minute per token.
    pub async fn verify_api_token(
        &self,
        presented: &str,
    ) -> Result<Option<ApiTokenRecord>, StoreError> {
        if !looks_like_secret(presented) {
            return Ok(None);
        }
        let now = now_ms();
        let sql = "SELECT t.id, t.tenant_id, t.name, t.created_by, t.created_at, t.expires_at, \
                          t.revoked_at, t.last_used_at \
                   FROM api_tokens t JOIN tenants n ON n.id = t.tenant_id \
                   WHERE t.token_hash = $1 AND t.revoked_at IS NULL \
                     AND (t.expires_at IS NULL OR t.expires_at > $2) \
                     AND n.desired = 'present'";
        let found = self
            .fetch_optional(
                sqlx::query(sql).bind(secret_hash(presented)).bind(now),
                token_from_row,
            )
            .await?;
        let Some(mut token) = found else {
            return Ok(None);
        };
        let stale = now.saturating_sub(LAST_USED_EVERY_MS);
        if token.last_used_at.is_none_or(|at| ms_from_time(at) < stale) {
            // Conditional, so that requests racing on one token write once.
            let written = self
                .execute(
                    sqlx::query(
                        "UPDATE api_tokens SET last_used_at = $2 \
                         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)",
                    )
                    .bind(&token.id)
                    .bind(now)
                    .bind(stale),
                )
                .await?;
            if written == 1 {
                token.last_used_at = Some(super::stored_time("api_tokens.last_used_at", now)?);
            }
        }
        Ok(Some(token))
    }

    /// Revokes the token: from now on it authenticates nothing. Calling it
    /// again changes nothing and says so.
    pub async fn revoke_api_token(&self, id: &str) -> Result<Revocation, StoreError> {
        let changed = self
            .execute(
                sqlx::query(
                    "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(id)
                .bind(now_ms()),
            )
            .await?;
        Ok(match (self.get_api_token(id).await?, changed) {
            (None, _) => Revocation::Unknown,
            (Some(token), 1) => Revocation::Revoked(token),
            (Some(token), _) => Revocation::AlreadyRevoked(token),
        })
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn secrets_have_the_prefix_and_43_url_safe_characters() {
        let a = new_secret();
        let b = new_secret();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(a.expose_secret().len(), TOKEN_PREFIX.len() + SECRET_CHARS);
        assert!(looks_like_secret(a.expose_secret()));
        assert!(!looks_like_secret("llt_short"));
        assert!(!looks_like_secret(
            &a.expose_secret().replacen("llt_", "llx_", 1)
        ));
        assert!(!looks_like_secret(&format!(
            "{}=",
            &a.expose_secret()[..46]
        )));
        assert!(new_token_id().starts_with("tok_"));
    }
}
