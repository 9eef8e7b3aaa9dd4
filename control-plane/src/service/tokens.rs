//! Tenant API tokens: issuing (the secret shown once), listing, revoking, and
//! authenticating a presented secret. Issuing and revoking are audited; no
//! secret or hash is ever audited, logged or returned after issuing.

use std::time::Duration;

use cloud::naming::TenantId;
use serde::Serialize;
use time::OffsetDateTime;
use xero::secret::SecretString;

use super::ServiceError;
use crate::store::{ApiTokenRecord, Desired, Revocation, Store, StoreError};

/// The longest an expiring token may live (a longer one would not be
/// rotated in practice; no expiry at all is asked for by leaving it out).
pub const TOKEN_TTL_MAX: Duration = Duration::from_secs(5 * 366 * 24 * 3600);

/// The name of a token issued without one.
pub const DEFAULT_NAME: &str = "default";

/// The longest name, in characters.
const NAME_MAX_CHARS: usize = 64;

/// A token just issued: its record and its secret, shown this once.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedToken {
    #[serde(flatten)]
    pub token: ApiTokenRecord,
    /// `llt_…`: the bearer token. Not stored; cannot be shown again.
    /// Serialised as itself (the one time it is shown), redacted in Debug.
    pub secret: SecretString,
}

/// Parses an expiry such as `30d` (see [`super::onboarding::parse_expiry`]),
/// within [`TOKEN_TTL_MAX`].
pub fn parse_ttl(text: &str) -> Result<Duration, ServiceError> {
    let ttl = super::onboarding::parse_expiry(text)?;
    check_ttl(ttl)?;
    Ok(ttl)
}

fn check_ttl(ttl: Duration) -> Result<(), ServiceError> {
    if ttl.is_zero() || ttl > TOKEN_TTL_MAX {
        return Err(ServiceError::invalid(
            "invalid_expiry",
            format!(
                "a token expires between 1 second and {} days from now (leave the expiry out for none)",
                TOKEN_TTL_MAX.as_secs() / 86_400
            ),
        ));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), ServiceError> {
    let chars = name.chars().count();
    if chars == 0 || chars > NAME_MAX_CHARS || name.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "invalid_token_name",
            format!(
                "a token name is 1 to {NAME_MAX_CHARS} characters, none of them control characters"
            ),
        ));
    }
    Ok(())
}

/// Issues a token for `tenant` (which must exist and not be being torn
/// down), named `name` (default [`DEFAULT_NAME`]), expiring after `ttl` or
/// never. Audited as `actor`.
pub async fn issue(
    store: &Store,
    tenant: &TenantId,
    name: Option<&str>,
    ttl: Option<Duration>,
    actor: &str,
) -> Result<IssuedToken, ServiceError> {
    let name = name.map(str::trim).unwrap_or(DEFAULT_NAME);
    check_name(name)?;
    if let Some(ttl) = ttl {
        check_ttl(ttl)?;
    }
    let expires_at = ttl.map(|ttl| OffsetDateTime::now_utc() + ttl);
    match store.get_tenant(tenant).await? {
        None => return Err(ServiceError::tenant_not_found(tenant)),
        Some(t) if t.desired == Desired::Absent => {
            return Err(ServiceError::conflict(
                "tenant_deleting",
                format!("tenant {tenant} is being deleted; it gets no new tokens"),
            ))
        }
        Some(_) => {}
    }
    let (token, secret) = match store.issue_api_token(tenant, name, actor, expires_at).await {
        Err(StoreError::TenantNotFound(_)) => return Err(ServiceError::tenant_not_found(tenant)),
        other => other?,
    };
    store
        .audit(
            actor,
            "tenant.token_issued",
            Some(tenant),
            &serde_json::json!({
                "token_id": token.id,
                "name": token.name,
                "expires_at": token.expires_at.map(OffsetDateTime::unix_timestamp),
            }),
        )
        .await?;
    Ok(IssuedToken { token, secret })
}

/// The tenant's tokens, oldest first (revoked and expired ones too).
pub async fn list(store: &Store, tenant: &TenantId) -> Result<Vec<ApiTokenRecord>, ServiceError> {
    if store.get_tenant(tenant).await?.is_none() {
        return Err(ServiceError::tenant_not_found(tenant));
    }
    Ok(store.list_api_tokens(tenant).await?)
}

fn token_not_found(id: &str) -> ServiceError {
    ServiceError::not_found(
        "token_not_found",
        format!(
            "token {} does not exist",
            id.chars().take(64).collect::<String>()
        ),
    )
}

/// The token with this id (to authorise on its tenant before revoking it).
pub async fn get(store: &Store, id: &str) -> Result<ApiTokenRecord, ServiceError> {
    store
        .get_api_token(id)
        .await?
        .ok_or_else(|| token_not_found(id))
}

/// Revokes a token; revoking it again is a success that changes nothing.
/// `token_not_found` when no token has this id. Audited as `actor` when it
/// changed something.
pub async fn revoke(store: &Store, id: &str, actor: &str) -> Result<ApiTokenRecord, ServiceError> {
    match store.revoke_api_token(id).await? {
        Revocation::Unknown => Err(token_not_found(id)),
        Revocation::AlreadyRevoked(token) => Ok(token),
        Revocation::Revoked(token) => {
            store
                .audit(
                    actor,
                    "tenant.token_revoked",
                    Some(&token.tenant),
                    &serde_json::json!({ "token_id": token.id, "name": token.name }),
                )
                .await?;
            Ok(token)
        }
    }
}

/// The active token whose secret was presented, or `None` (unknown, revoked,
/// expired, or its tenant gone or going: indistinguishable on purpose).
pub async fn authenticate(
    store: &Store,
    presented: &str,
) -> Result<Option<ApiTokenRecord>, ServiceError> {
    Ok(store.verify_api_token(presented).await?)
}
