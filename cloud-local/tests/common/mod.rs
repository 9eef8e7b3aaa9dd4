//! Helpers shared by the local adapter's tests.
#![allow(dead_code)]

use cloud::naming::{tenant_labels, Labels, TenantId};
use cloud::ports::identity::grant;
use cloud::ports::{Credential, Identity, ResourceRef, ServiceAccountSpec};
use cloud_local::{LocalAdapters, LocalConfig};
use tempfile::TempDir;

pub fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).unwrap_or_else(|e| panic!("{id}: {e}"))
}

pub fn labels(id: &str) -> Labels {
    tenant_labels(&tenant(id))
}

/// A fresh data directory with the local adapters opened on it.
pub fn open_temp() -> (TempDir, LocalAdapters) {
    let dir = TempDir::new().expect("tempdir");
    let adapters = LocalAdapters::open(&LocalConfig::new(dir.path())).expect("open");
    (dir, adapters)
}

/// Creates tenant `id`'s service account and returns its credential.
pub async fn service_account(cloud: &LocalAdapters, id: &str) -> Credential {
    let spec = ServiceAccountSpec {
        account_id: format!("client-{id}-sa"),
        display_name: format!("tenant {id}"),
        labels: labels(id),
    };
    let sa = cloud
        .identity
        .ensure_service_account(&spec)
        .await
        .expect("service account");
    cloud
        .identity
        .credential_for(&sa.email)
        .await
        .expect("credential")
}

pub fn email(cred: &Credential) -> String {
    match cred {
        Credential::ServiceAccount { email, .. } => email.clone(),
        Credential::Platform => panic!("not a service account"),
    }
}

/// Grants `role` on `resource` to the credential's service account.
pub async fn grant_to(cloud: &LocalAdapters, cred: &Credential, resource: ResourceRef, role: &str) {
    grant(cloud.identity.as_ref(), &resource, role, &cred.member())
        .await
        .expect("grant");
}

pub fn is_denied<T: std::fmt::Debug>(r: &cloud::CloudResult<T>) -> bool {
    matches!(r, Err(cloud::CloudError::PermissionDenied { .. }))
}
