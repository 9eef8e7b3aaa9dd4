//! A tenant's Xero token set lives in exactly one place: the latest version of
//! its secret `xero_token_{id}`. Xero's refresh tokens rotate and are single
//! use, so a copy anywhere else would go stale.

use cloud::error::{CloudError, CloudResult};
use cloud::naming::{self, TenantId};
use cloud::ports::{Credential, SecretPayload, SecretSpec};
use cloud::Cloud;
use xero::token::TokenSet;

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
