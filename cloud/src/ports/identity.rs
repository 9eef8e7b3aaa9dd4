//! Identity: service accounts and role grants on single resources.

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Credential, ResourceRef};
use crate::error::{CloudError, CloudResult};
use crate::naming::Labels;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountSpec {
    /// The account id, e.g. `client-acme-sa` (6–30 characters).
    pub account_id: String,
    pub display_name: String,
    /// Kept as labels locally; Google service accounts carry them in the description.
    pub labels: Labels,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccount {
    pub email: String,
    pub unique_id: String,
    pub display_name: String,
    pub labels: Labels,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub role: String,
    pub members: BTreeSet<String>,
}

/// A resource's IAM policy. `etag` guards read-modify-write: setting a policy
/// whose etag is stale fails with `Conflict`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub bindings: Vec<Binding>,
    pub etag: String,
}

impl Policy {
    pub fn has(&self, role: &str, member: &str) -> bool {
        self.bindings
            .iter()
            .any(|b| b.role == role && b.members.contains(member))
    }

    /// Adds `member` to `role`; false when it was already there.
    pub fn add(&mut self, role: &str, member: &str) -> bool {
        if let Some(b) = self.bindings.iter_mut().find(|b| b.role == role) {
            return b.members.insert(member.to_owned());
        }
        self.bindings.push(Binding {
            role: role.to_owned(),
            members: BTreeSet::from([member.to_owned()]),
        });
        true
    }

    /// Removes `member` from `role` (and the binding when it empties); false when absent.
    pub fn remove(&mut self, role: &str, member: &str) -> bool {
        let removed = self
            .bindings
            .iter_mut()
            .any(|b| b.role == role && b.members.remove(member));
        self.bindings.retain(|b| !b.members.is_empty());
        removed
    }

    /// Every role granted to `member`.
    pub fn roles_of<'a>(&'a self, member: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.bindings
            .iter()
            .filter(move |b| b.members.contains(member))
            .map(|b| b.role.as_str())
    }
}

#[async_trait]
pub trait Identity: Send + Sync {
    /// The email a service account with this id has in this project.
    fn email_for(&self, account_id: &str) -> String;
    /// Creates the service account, or returns it when it already exists with the same labels.
    async fn ensure_service_account(
        &self,
        spec: &ServiceAccountSpec,
    ) -> CloudResult<ServiceAccount>;
    async fn get_service_account(&self, email: &str) -> CloudResult<ServiceAccount>;
    async fn list_service_accounts(&self, labels: &Labels) -> CloudResult<Vec<ServiceAccount>>;
    async fn delete_service_account(&self, email: &str) -> CloudResult<()>;

    async fn get_iam_policy(&self, resource: &ResourceRef) -> CloudResult<Policy>;
    /// Replaces the policy if `policy.etag` is still current; returns the stored policy.
    async fn set_iam_policy(&self, resource: &ResourceRef, policy: &Policy) -> CloudResult<Policy>;

    /// A credential that acts as the service account (a key locally, impersonation on GCP).
    async fn credential_for(&self, email: &str) -> CloudResult<Credential>;
}

/// How many times a grant re-reads the policy after an etag conflict.
const POLICY_CONFLICT_RETRIES: usize = 10;

/// Grants `role` on `resource` to `member` by read-modify-write, re-reading on an
/// etag conflict. Returns whether the policy changed (false: already granted).
pub async fn grant(
    identity: &dyn Identity,
    resource: &ResourceRef,
    role: &str,
    member: &str,
) -> CloudResult<bool> {
    modify_policy(identity, resource, |p| p.add(role, member)).await
}

/// Removes `role` on `resource` from `member`. Returns whether the policy changed.
pub async fn revoke(
    identity: &dyn Identity,
    resource: &ResourceRef,
    role: &str,
    member: &str,
) -> CloudResult<bool> {
    modify_policy(identity, resource, |p| p.remove(role, member)).await
}

async fn modify_policy(
    identity: &dyn Identity,
    resource: &ResourceRef,
    change: impl Fn(&mut Policy) -> bool,
) -> CloudResult<bool> {
    let mut last = None;
    for _ in 0..POLICY_CONFLICT_RETRIES {
        let mut policy = identity.get_iam_policy(resource).await?;
        if !change(&mut policy) {
            return Ok(false);
        }
        match identity.set_iam_policy(resource, &policy).await {
            Ok(_) => return Ok(true),
            Err(e @ CloudError::Conflict { .. }) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| CloudError::Conflict {
        resource: resource.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_add_and_remove_are_idempotent() {
        let mut p = Policy::default();
        assert!(p.add("roles/a", "serviceAccount:x"));
        assert!(!p.add("roles/a", "serviceAccount:x"));
        assert!(p.add("roles/a", "serviceAccount:y"));
        assert!(p.has("roles/a", "serviceAccount:y"));
        assert_eq!(p.bindings.len(), 1);
        assert!(p.remove("roles/a", "serviceAccount:x"));
        assert!(!p.remove("roles/a", "serviceAccount:x"));
        assert!(p.remove("roles/a", "serviceAccount:y"));
        assert!(p.bindings.is_empty(), "an emptied binding is dropped");
        assert_eq!(p.roles_of("serviceAccount:y").count(), 0);
    }
}
