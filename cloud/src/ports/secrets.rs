//! Secrets: versioned, encrypted payloads (Secret Manager's model).

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Credential;
use crate::error::CloudResult;
use crate::naming::Labels;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    pub name: String,
    pub labels: Labels,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    pub name: String,
    pub labels: Labels,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The newest version's number; `None` before the first version is added.
    pub latest_version: Option<u64>,
}

/// Secret bytes. Debug never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretPayload(Vec<u8>);

impl SecretPayload {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretPayload(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretPayload(<{} bytes redacted>)", self.0.len())
    }
}

#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Creates the secret (without a version), or returns it when it already
    /// exists with the same labels.
    async fn ensure_secret(&self, spec: &SecretSpec) -> CloudResult<SecretInfo>;
    async fn get_secret(&self, name: &str) -> CloudResult<SecretInfo>;
    async fn list_secrets(&self, labels: &Labels) -> CloudResult<Vec<SecretInfo>>;
    /// Deletes the secret with every version. `NotFound` when it is absent.
    async fn delete_secret(&self, name: &str) -> CloudResult<()>;

    /// Adds a version and returns its number (1, 2, …).
    async fn add_version(
        &self,
        cred: &Credential,
        name: &str,
        payload: &SecretPayload,
    ) -> CloudResult<u64>;
    /// The newest version's number and payload.
    async fn access_latest(
        &self,
        cred: &Credential,
        name: &str,
    ) -> CloudResult<(u64, SecretPayload)>;

    /// Destroys the versions created before `before`, except the newest
    /// `keep` (Secret Manager's `versions.destroy` on each; version numbers
    /// are never reused). Returns how many were destroyed. The platform's own
    /// call: rotated-out Xero token sets are dead, and keeping them only
    /// keeps secrets around.
    async fn destroy_old_versions(
        &self,
        name: &str,
        keep: usize,
        before: OffsetDateTime,
    ) -> CloudResult<usize>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_debug_hides_the_bytes() {
        let p = SecretPayload::new(b"refresh-token-abc".to_vec());
        let shown = format!("{p:?}");
        assert!(!shown.contains("refresh"), "{shown}");
        assert!(shown.contains("17 bytes"));
    }
}
