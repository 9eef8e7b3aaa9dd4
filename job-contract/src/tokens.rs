//! A tenant's Xero token set lives in exactly one place: the latest version of
//! its secret `xero_token_{id}`. Xero's refresh tokens rotate and are single
//! use, so a copy anywhere else would go stale, and every refresh happens under
//! a lease held in the tenant's own bucket (so the job can take it with the
//! tenant's credential alone). Both binaries use this: the control plane when
//! onboarding and keeping tokens alive, the job when ingesting.

use std::time::Duration;

use async_trait::async_trait;
use cloud::error::{CloudError, CloudResult};
use cloud::lease::ObjectLease;
use cloud::naming::{self, DeploymentPrefix, TenantId};
use cloud::ports::{Credential, SecretPayload, SecretSpec};
use cloud::Cloud;
use xero::refresh::{TokenVault, VaultError};
use xero::token_set::TokenSet;

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
    let tokens = parse_token_set(&name, version, payload.expose())?;
    Ok((version, tokens))
}

/// Reads a secret version's payload as a token set. The error gives only
/// where the JSON went wrong: serde_json's own message can quote the payload
/// (`invalid type: string "…"`), which is the secret.
fn parse_token_set(name: &str, version: u64, payload: &[u8]) -> CloudResult<TokenSet> {
    serde_json::from_slice(payload).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not valid JSON",
            serde_json::error::Category::Data => "JSON of the wrong shape",
            serde_json::error::Category::Eof => "truncated JSON",
        };
        CloudError::permanent(
            format!("secret {name} version {version}"),
            format!(
                "not a token set: {kind} at line {} column {}",
                e.line(),
                e.column()
            ),
        )
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_token_set_is_reported_without_its_content() {
        const FAKE: &str = "fake-refresh-token-9f8e7d6c5b4a";
        for payload in [
            format!("\"{FAKE}\""),
            format!("{{\"access_token\": \"{FAKE}\", \"refresh_token\": 7}}"),
            format!("{{\"access_token\": {FAKE}}}"),
            format!("[\"{FAKE}\""),
        ] {
            let message = match parse_token_set("xero_token_acme", 3, payload.as_bytes()) {
                Ok(_) => panic!("a token set was read from a malformed payload"),
                Err(e) => format!("{e} {e:?}"),
            };
            let shown = message.replace(FAKE, "<TOKEN>");
            assert!(!message.contains(FAKE), "{shown}");
            assert!(message.contains("not a token set"), "{shown}");
            assert!(message.contains("line 1 column"), "{shown}");
        }
    }
}
