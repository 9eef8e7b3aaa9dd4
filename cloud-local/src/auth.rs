//! The one authoriser every data-plane call of every local port goes through.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::fsio::{self, shown};
use super::layout::Layout;
use super::policies::PolicyCache;
use cloud::error::{CloudError, CloudResult};
use cloud::naming::Labels;
use cloud::ports::{member_for, roles, Credential, Permission, ResourceRef, ServiceAccount};

/// A service account as stored in `iam/service-accounts/<email>.json`: the
/// port's fields plus the SHA-256 of its key (never the key itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AccountRecord {
    pub email: String,
    pub unique_id: String,
    pub display_name: String,
    pub labels: Labels,
    /// Hex SHA-256 of the account's key.
    pub key_sha256: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl AccountRecord {
    pub fn to_port(&self) -> ServiceAccount {
        ServiceAccount {
            email: self.email.clone(),
            unique_id: self.unique_id.clone(),
            display_name: self.display_name.clone(),
            labels: self.labels.clone(),
        }
    }
}

pub(crate) fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Decides whether a credential may read or write a resource, from the account
/// records and the policies on disk.
#[derive(Debug, Clone)]
pub struct Authoriser {
    layout: Arc<Layout>,
    policies: Arc<PolicyCache>,
}

impl Authoriser {
    pub fn new(layout: Arc<Layout>, policies: Arc<PolicyCache>) -> Self {
        Authoriser { layout, policies }
    }

    /// Blocking: reads the account and the policy. `Platform` may do anything;
    /// a service account must exist, prove itself with its key, and hold a role
    /// on `resource` that allows `permission`. Anything else is `PermissionDenied`.
    pub fn check(
        &self,
        cred: &Credential,
        resource: &ResourceRef,
        permission: Permission,
    ) -> CloudResult<()> {
        let (email, key) = match cred {
            Credential::Platform => return Ok(()),
            Credential::ServiceAccount { email, key } => (email, key),
        };
        let denied = || CloudError::PermissionDenied {
            principal: member_for(&shown(email)),
            action: permission.to_string(),
            resource: resource.to_string(),
        };
        if fsio::validate_name("service account", email).is_err() {
            return Err(denied());
        }
        let account: Option<AccountRecord> =
            fsio::read_json("service account", &self.layout.service_account(email))?;
        let Some(account) = account else {
            tracing::debug!(principal = %shown(email), %resource, "denied: no such service account");
            return Err(denied());
        };
        let stored = hex::decode(&account.key_sha256).unwrap_or_default();
        let given = Sha256::digest(key.as_bytes());
        if stored.is_empty() || !constant_time_eq(&stored, &given) {
            tracing::debug!(principal = %email, %resource, "denied: key does not match");
            return Err(denied());
        }
        let policy = self
            .policies
            .read(&resource.to_string(), &self.layout.policy(resource))?;
        let member = member_for(email);
        if policy
            .iter()
            .flat_map(|p| p.roles_of(&member))
            .any(|role| roles::allows(role, resource, permission))
        {
            Ok(())
        } else {
            tracing::debug!(principal = %email, %resource, %permission, "denied: no role allows it");
            Err(denied())
        }
    }

    /// [`Authoriser::check`] off the async runtime.
    pub async fn authorise(
        &self,
        cred: &Credential,
        resource: &ResourceRef,
        permission: Permission,
    ) -> CloudResult<()> {
        if matches!(cred, Credential::Platform) {
            return Ok(());
        }
        let this = self.clone();
        let cred = cred.clone();
        let res = resource.clone();
        fsio::blocking(&resource.to_string(), move || {
            this.check(&cred, &res, permission)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert_eq!(key_hash("k").len(), 64);
    }
}
