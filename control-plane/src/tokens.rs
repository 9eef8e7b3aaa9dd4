//! Refreshing tenants' Xero token sets from the control plane: on demand and
//! as a keep-alive, marking a tenant as needing consent when Xero refuses its
//! refresh token. Where token sets live and how they are leased is
//! `job_contract::tokens`, shared with the job.

use std::sync::Arc;
use std::time::Duration;

use cloud::naming::{DeploymentPrefix, TenantId};
use cloud::ports::Credential;
use cloud::{Cloud, Clouds};
use xero::oauth::OAuthClient;
use xero::refresh::RefreshingTokenProvider;
use xero::token::TokenError;
use xero::token_set::TokenSet;

pub use job_contract::tokens::{
    read_token_set, write_token_set, SecretTokenVault, TokenLeaseSettings, TOKEN_LEASE_KEY,
};

use crate::store::{Store, StoreError};

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
    let refreshed = provider.refresh_now().await;
    crate::metrics::metrics().token_refresh(match &refreshed {
        Ok(_) => "refreshed",
        Err(TokenError::ReconsentRequired) => "needs_consent",
        Err(_) => "failed",
    });
    match refreshed {
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
    clouds: &Clouds,
    store: &Store,
    oauth: &OAuthClient,
    prefix: Option<&DeploymentPrefix>,
    max_idle: Duration,
    settings: TokenLeaseSettings,
) -> Result<KeepaliveReport, StoreError> {
    let mut report = KeepaliveReport::default();
    let max_idle = time::Duration::try_from(max_idle).unwrap_or(time::Duration::MAX);
    // Wanted, connected and not needing consent: one query for them all.
    for tenant in store.tenants_to_keep_alive().await? {
        let id = &tenant.id;
        report.checked += 1;
        let cloud = match crate::clouds::of_tenant(clouds, store, &tenant).await {
            Ok(cloud) => cloud,
            Err(e) => {
                tracing::warn!(tenant = %id, error = %e, "cannot find the tenant's cell");
                report.failed += 1;
                continue;
            }
        };
        let cloud = &cloud;
        let tokens = match read_token_set(cloud, &Credential::Platform, id).await {
            Ok((_, tokens)) => tokens,
            Err(e) => {
                tracing::warn!(tenant = %id, error = %e, "cannot read the token set");
                report.failed += 1;
                continue;
            }
        };
        // An access token lives 30 minutes from its refresh, so its expiry
        // dates the last refresh closely enough. Checked: a `max_idle` past
        // the calendar's end (a library caller's Duration::MAX) means never
        // idle, not a panic.
        let refresh_due = tokens.expires_at.checked_add(max_idle);
        if refresh_due.is_none_or(|due| due > time::OffsetDateTime::now_utc()) {
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

/// Token-set versions kept whatever their age: the newest, and the one
/// before it (what a reader that raced a rotation may still hold).
pub const TOKEN_VERSIONS_KEPT: usize = 2;

/// Destroys the rotated-out token-set versions of every tenant that are older
/// than `older_than` (Xero's refresh tokens are single-use, so an old version
/// is a dead credential kept for nothing). One tenant's failure does not stop
/// the others; returns the number of versions destroyed.
pub async fn prune_token_versions(
    clouds: &Clouds,
    store: &Store,
    older_than: Duration,
) -> Result<usize, StoreError> {
    let before = time::OffsetDateTime::now_utc()
        - time::Duration::try_from(older_than).unwrap_or(time::Duration::MAX);
    let mut destroyed = 0;
    for tenant in store.list_tenants().await? {
        let secret = cloud::naming::secret_name(&tenant.id);
        let cloud = match crate::clouds::of_tenant(clouds, store, &tenant).await {
            Ok(cloud) => cloud,
            // Not placed: nothing provisioned to prune.
            Err(e) => {
                tracing::debug!(tenant = %tenant.id, error = %e, "no cell to prune in");
                continue;
            }
        };
        match cloud
            .secrets
            .destroy_old_versions(&secret, TOKEN_VERSIONS_KEPT, before)
            .await
        {
            Ok(n) => destroyed += n,
            // Not provisioned yet, or already torn down.
            Err(cloud::CloudError::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(tenant = %tenant.id, error = %e, "could not prune old token-set versions")
            }
        }
    }
    Ok(destroyed)
}
