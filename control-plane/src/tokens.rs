//! A tenant's Xero token set lives in exactly one place: the latest version of
//! its secret `xero_token_{id}`. Xero's refresh tokens rotate and are single
//! use, so a copy anywhere else would go stale.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cloud::error::{CloudError, CloudResult};
use cloud::lease::ObjectLease;
use cloud::naming::{self, DeploymentPrefix, TenantId};
use cloud::ports::{Credential, SecretPayload, SecretSpec};
use cloud::Cloud;
use xero::oauth::OAuthClient;
use xero::token::{RefreshingTokenProvider, TokenError, TokenSet, TokenVault, VaultError};

use crate::store::{Store, StoreError};

/// Writes `tokens` as a new version of the tenant's secret (creating the
/// secret, with the tenant's labels, when absent). Returns the version.
pub async fn write_token_set(
    cloud: &Cloud,
    cred: &Credential,
    tenant: &TenantId,
    tokens: &TokenSet,
) -> CloudResult<u64> {
    let name = naming::secret_name(tenant);
    if *cred == Credential::Platform {
        cloud
            .secrets
            .ensure_secret(&SecretSpec {
                name: name.clone(),
                labels: naming::tenant_labels(tenant),
            })
            .await?;
    }
    let json = serde_json::to_vec(tokens).map_err(|e| {
        CloudError::permanent(
            format!("secret {name}"),
            format!("encoding the token set: {e}"),
        )
    })?;
    cloud
        .secrets
        .add_version(cred, &name, &SecretPayload::new(json))
        .await
}

/// Reads the tenant's current token set and its version.
pub async fn read_token_set(
    cloud: &Cloud,
    cred: &Credential,
    tenant: &TenantId,
) -> CloudResult<(u64, TokenSet)> {
    let name = naming::secret_name(tenant);
    let (version, payload) = cloud.secrets.access_latest(cred, &name).await?;
    // serde_json's message names the position, never the content.
    let tokens = serde_json::from_slice(payload.expose()).map_err(|e| {
        CloudError::permanent(
            format!("secret {name} version {version}"),
            format!("not a token set: {e}"),
        )
    })?;
    Ok((version, tokens))
}

/// Where the token lease lives: an object in the tenant's own bucket, so a
/// tenant's job can take it with the tenant's credential alone.
pub const TOKEN_LEASE_KEY: &str = "leases/xero-token.json";

/// How the token lease behaves: a refresh (with its retries) fits well within
/// `ttl`; a holder that crashed frees it after `ttl`, which `wait` covers.
#[derive(Debug, Clone, Copy)]
pub struct TokenLeaseSettings {
    pub ttl: Duration,
    pub wait: Duration,
}

impl Default for TokenLeaseSettings {
    fn default() -> Self {
        TokenLeaseSettings {
            ttl: Duration::from_secs(120),
            wait: Duration::from_secs(150),
        }
    }
}

/// A tenant's token set in its secret, with the refresh lease in its bucket.
pub struct SecretTokenVault {
    cloud: Cloud,
    cred: Credential,
    tenant: TenantId,
    lease: ObjectLease,
    wait: Duration,
}

impl SecretTokenVault {
    /// `holder` names this process in the lease (for people reading it).
    pub fn new(
        cloud: Cloud,
        cred: Credential,
        tenant: TenantId,
        prefix: Option<&DeploymentPrefix>,
        holder: &str,
        settings: TokenLeaseSettings,
    ) -> Self {
        let lease = ObjectLease::new(
            cloud.objects.clone(),
            cred.clone(),
            naming::bucket_name(prefix, &tenant),
            TOKEN_LEASE_KEY,
            format!("{holder}-{}", uuid::Uuid::new_v4()),
            settings.ttl,
        );
        SecretTokenVault {
            cloud,
            cred,
            tenant,
            lease,
            wait: settings.wait,
        }
    }
}

#[async_trait]
impl TokenVault for SecretTokenVault {
    async fn load(&self) -> Result<TokenSet, VaultError> {
        Ok(read_token_set(&self.cloud, &self.cred, &self.tenant)
            .await?
            .1)
    }

    async fn store(&self, tokens: &TokenSet) -> Result<(), VaultError> {
        write_token_set(&self.cloud, &self.cred, &self.tenant, tokens).await?;
        Ok(())
    }

    async fn lock(&self) -> Result<bool, VaultError> {
        Ok(self.lease.acquire(self.wait).await?)
    }

    async fn unlock(&self) {
        if let Err(e) = self.lease.release().await {
            tracing::warn!(tenant = %self.tenant, error = %e, "could not release the token lease; it expires by itself");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("tenant {0} needs to connect Xero again (its refresh token is no longer valid)")]
    NeedsConsent(TenantId),
    #[error("refreshing the Xero token set of tenant {tenant}: {source}")]
    Token {
        tenant: TenantId,
        #[source]
        source: TokenError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Refreshes the tenant's token set now, under its lease, writing the new
/// set back before returning it. A dead refresh token marks the tenant as
/// needing consent (the onboarding page then asks for it again).
pub async fn refresh_tenant_tokens(
    cloud: &Cloud,
    store: &Store,
    oauth: &OAuthClient,
    tenant: &TenantId,
    prefix: Option<&DeploymentPrefix>,
    settings: TokenLeaseSettings,
) -> Result<TokenSet, RefreshError> {
    let vault = Arc::new(SecretTokenVault::new(
        cloud.clone(),
        Credential::Platform,
        tenant.clone(),
        prefix,
        "control-plane",
        settings,
    ));
    let token_err = |source| RefreshError::Token {
        tenant: tenant.clone(),
        source,
    };
    let provider = RefreshingTokenProvider::from_vault(oauth.clone(), vault, Duration::ZERO)
        .await
        .map_err(token_err)?;
    match provider.refresh_now().await {
        Ok(tokens) => Ok(tokens),
        Err(TokenError::ReconsentRequired) => {
            store.mark_needs_consent(tenant).await?;
            store
                .audit(
                    "token-refresh",
                    "tenant.needs_consent",
                    Some(tenant),
                    &serde_json::json!({ "reason": "invalid_grant" }),
                )
                .await?;
            tracing::warn!(%tenant, "Xero refused the refresh token; the tenant must consent again");
            Err(RefreshError::NeedsConsent(tenant.clone()))
        }
        Err(e) => Err(token_err(e)),
    }
}

/// What one keep-alive pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeepaliveReport {
    /// Connected tenants whose token set was looked at.
    pub checked: usize,
    pub refreshed: usize,
    /// Tenants found to need consent again during this pass.
    pub needs_consent: usize,
    pub failed: usize,
}

/// Refreshes every connected tenant's token set that has not been refreshed
/// for `max_idle`: Xero's refresh tokens die after 60 days unused, so a tenant
/// whose data nobody synced for a while would otherwise lose its connection.
/// Tenants being deleted or already needing consent are skipped; one tenant's
/// failure does not stop the others.
pub async fn refresh_idle_token_sets(
    cloud: &Cloud,
    store: &Store,
    oauth: &OAuthClient,
    prefix: Option<&DeploymentPrefix>,
    max_idle: Duration,
    settings: TokenLeaseSettings,
) -> Result<KeepaliveReport, StoreError> {
    let mut report = KeepaliveReport::default();
    let max_idle = time::Duration::try_from(max_idle).unwrap_or(time::Duration::MAX);
    for tenant in store.list_tenants().await? {
        let id = &tenant.id;
        if tenant.desired != crate::store::Desired::Present
            || store.needs_consent(id).await?
            || store.connections_of(id).await?.is_empty()
        {
            continue;
        }
        report.checked += 1;
        let tokens = match read_token_set(cloud, &Credential::Platform, id).await {
            Ok((_, tokens)) => tokens,
            Err(e) => {
                tracing::warn!(tenant = %id, error = %e, "cannot read the token set");
                report.failed += 1;
                continue;
            }
        };
        // An access token lives 30 minutes from its refresh, so its expiry
        // dates the last refresh closely enough.
        if tokens.expires_at + max_idle > time::OffsetDateTime::now_utc() {
            continue;
        }
        match refresh_tenant_tokens(cloud, store, oauth, id, prefix, settings).await {
            Ok(_) => report.refreshed += 1,
            Err(RefreshError::NeedsConsent(_)) => report.needs_consent += 1,
            Err(RefreshError::Store(e)) => return Err(e),
            Err(e) => {
                tracing::warn!(tenant = %id, error = %e, "keep-alive refresh failed");
                report.failed += 1;
            }
        }
    }
    Ok(report)
}
