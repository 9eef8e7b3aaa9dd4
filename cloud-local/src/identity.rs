//! Local identities: service accounts with a key, and per-resource IAM policies.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use rand::{Rng, RngCore};

use super::auth::{key_hash, AccountRecord};
use super::fsio::{self, shown};
use super::layout::Layout;
use super::policies::PolicyCache;
use cloud::error::{CloudError, CloudResult};
use cloud::naming::Labels;
use cloud::ports::{Credential, Identity, Policy, ResourceRef, ServiceAccount, ServiceAccountSpec};

/// The etag of a resource that has never had a policy set.
pub const EMPTY_POLICY_ETAG: &str = "ACAB";

/// The rule a service-account id follows (Google's), quoted in refusals.
pub const ACCOUNT_ID_RULE: &str = "a service-account id is 6 to 30 characters of lowercase \
letters, digits and hyphens, starts with a letter and does not end with a hyphen";

const IAM_ACCOUNTS_LOCK: &str = "iam-accounts";
const IAM_POLICIES_LOCK: &str = "iam-policies";

fn validate_account_id(account_id: &str) -> CloudResult<()> {
    let ok = (6..=30).contains(&account_id.len())
        && account_id.starts_with(|c: char| c.is_ascii_lowercase())
        && !account_id.ends_with('-')
        && account_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(CloudError::permanent(
            format!("service account {}", shown(account_id)),
            format!("invalid service-account id; {ACCOUNT_ID_RULE}"),
        ))
    }
}

/// Checks the names inside a resource reference.
pub(crate) fn validate_resource(resource: &ResourceRef) -> CloudResult<()> {
    match resource {
        ResourceRef::Bucket(n) => fsio::validate_name("bucket", n),
        ResourceRef::Dataset(n) => fsio::validate_name("dataset", n),
        ResourceRef::Secret(n) => fsio::validate_name("secret", n),
        ResourceRef::Project => Ok(()),
    }
}

/// Whether the resource a policy is attached to exists.
fn resource_exists(layout: &Layout, resource: &ResourceRef) -> bool {
    let marker = match resource {
        ResourceRef::Bucket(n) => layout.bucket_meta(n),
        ResourceRef::Dataset(n) => layout.dataset_meta(n),
        ResourceRef::Secret(n) => layout.secret_meta(n),
        ResourceRef::Project => return true,
    };
    marker.exists()
}

/// Creates the record that makes a bucket, dataset or secret exist, only if it
/// does not exist yet (false: it already did). A fresh resource starts without
/// a policy: a leftover grant on an earlier resource of the same name never
/// carries over. Done under the policy lock, so that no grant can slip in
/// between the record appearing and the leftover going.
pub(crate) fn create_resource_record(
    layout: &Layout,
    resource: &ResourceRef,
    record: &Path,
    bytes: &[u8],
) -> CloudResult<bool> {
    let name = resource.to_string();
    let _lock = fsio::lock(&name, &layout.lock_file(IAM_POLICIES_LOCK))?;
    let created = fsio::create_new_atomic(&name, &layout.tmp_dir(), record, bytes)?;
    if created {
        fsio::remove_file(&name, &layout.policy(resource))?;
    }
    Ok(created)
}

/// Removes a resource's policy, first thing on delete: access ends at once.
pub(crate) fn remove_policy(layout: &Layout, resource: &ResourceRef) -> CloudResult<()> {
    let name = resource.to_string();
    let _lock = fsio::lock(&name, &layout.lock_file(IAM_POLICIES_LOCK))?;
    fsio::remove_file(&name, &layout.policy(resource)).map(|_| ())
}

fn new_key() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn new_etag() -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A 21-digit numeric id, like Google's service-account unique ids.
fn new_unique_id() -> String {
    rand::thread_rng()
        .gen_range(100_000_000_000_000_000_000u128..1_000_000_000_000_000_000_000u128)
        .to_string()
}

/// Service accounts in `iam/service-accounts/`, their keys in `iam/keys/`, and
/// policies in `iam/policies/<kind>/<name>.json`.
#[derive(Debug, Clone)]
pub struct LocalIdentity {
    layout: Arc<Layout>,
    policies: Arc<PolicyCache>,
}

impl LocalIdentity {
    pub fn new(layout: Arc<Layout>, policies: Arc<PolicyCache>) -> Self {
        LocalIdentity { layout, policies }
    }

    fn write_key(layout: &Layout, resource: &str, email: &str) -> CloudResult<String> {
        let key = new_key();
        // Temporary files are created 0600, so the key is never readable by others.
        fsio::write_atomic(
            resource,
            &layout.tmp_dir(),
            &layout.key_file(email),
            key.as_bytes(),
        )?;
        Ok(key)
    }

    fn ensure_blocking(
        layout: &Layout,
        spec: &ServiceAccountSpec,
        email: String,
    ) -> CloudResult<ServiceAccount> {
        let resource = format!("service account {email}");
        let _lock = fsio::lock(&resource, &layout.lock_file(IAM_ACCOUNTS_LOCK))?;
        let path = layout.service_account(&email);
        if let Some(mut existing) = fsio::read_json::<AccountRecord>(&resource, &path)? {
            fsio::check_owner(&resource, &existing.labels, &spec.labels)?;
            if !layout.key_file(&email).exists() {
                // A crash during a delete left the account without its key: issue a new one.
                let key = Self::write_key(layout, &resource, &email)?;
                existing.key_sha256 = key_hash(&key);
                let bytes = fsio::to_json(&resource, &existing)?;
                fsio::write_atomic(&resource, &layout.tmp_dir(), &path, &bytes)?;
                tracing::warn!(%email, "service account had no key; issued a new one");
            }
            return Ok(existing.to_port());
        }
        // The key first: a crash before the record leaves only a key that the
        // next ensure overwrites.
        let key = Self::write_key(layout, &resource, &email)?;
        let record = AccountRecord {
            email: email.clone(),
            unique_id: new_unique_id(),
            display_name: spec.display_name.clone(),
            labels: spec.labels.clone(),
            key_sha256: key_hash(&key),
            created_at: fsio::now(),
        };
        let bytes = fsio::to_json(&resource, &record)?;
        fsio::write_atomic(&resource, &layout.tmp_dir(), &path, &bytes)?;
        tracing::debug!(%email, "created service account");
        Ok(record.to_port())
    }

    fn check_members(layout: &Layout, resource: &ResourceRef, policy: &Policy) -> CloudResult<()> {
        for binding in &policy.bindings {
            if !binding.role.starts_with("roles/") || binding.role.len() > 256 {
                return Err(CloudError::permanent(
                    resource.to_string(),
                    format!(
                        "invalid role {}: a role is named roles/…",
                        shown(&binding.role)
                    ),
                ));
            }
            for member in &binding.members {
                let Some(email) = member.strip_prefix("serviceAccount:") else {
                    return Err(CloudError::permanent(
                        resource.to_string(),
                        format!(
                            "unsupported member {}: the local adapter grants roles only to serviceAccount:<email>",
                            shown(member)
                        ),
                    ));
                };
                fsio::validate_name("service account", email)?;
                if !layout.service_account(email).exists() {
                    // Google answers a grant to a just-created account the same way
                    // until the account has propagated; callers retry.
                    return Err(CloudError::transient(
                        resource.to_string(),
                        format!("service account {email} does not exist"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn set_policy_blocking(
        layout: &Layout,
        resource: &ResourceRef,
        policy: &Policy,
    ) -> CloudResult<Policy> {
        let name = resource.to_string();
        Self::check_members(layout, resource, policy)?;
        let _lock = fsio::lock(&name, &layout.lock_file(IAM_POLICIES_LOCK))?;
        // Under the lock: see `create_resource_record`.
        if !resource_exists(layout, resource) {
            return Err(CloudError::not_found(name));
        }
        let path = layout.policy(resource);
        let current = fsio::read_json::<Policy>(&name, &path)?;
        let current_etag = current
            .as_ref()
            .map_or(EMPTY_POLICY_ETAG, |p| p.etag.as_str());
        // As on Google Cloud, an empty etag overwrites unconditionally.
        if !policy.etag.is_empty() && policy.etag != current_etag {
            return Err(CloudError::Conflict { resource: name });
        }
        let stored = Policy {
            bindings: policy
                .bindings
                .iter()
                .filter(|b| !b.members.is_empty())
                .cloned()
                .collect(),
            etag: new_etag(),
        };
        let bytes = fsio::to_json(&name, &stored)?;
        fsio::write_atomic(&name, &layout.tmp_dir(), &path, &bytes)?;
        tracing::debug!(resource = %name, bindings = stored.bindings.len(), "set IAM policy");
        Ok(stored)
    }
}

fn read_account(layout: &Layout, email: &str) -> CloudResult<AccountRecord> {
    let resource = format!("service account {email}");
    fsio::read_json::<AccountRecord>(&resource, &layout.service_account(email))?
        .ok_or_else(|| CloudError::not_found(resource))
}

fn read_key(resource: &str, path: &Path) -> CloudResult<String> {
    match std::fs::read_to_string(path) {
        Ok(k) => Ok(k.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CloudError::permanent(
            resource,
            format!(
                "its key file {} is missing; ensure the service account again to issue a new key",
                path.display()
            ),
        )),
        Err(e) => Err(fsio::io_fail(resource, path, &e)),
    }
}

#[async_trait]
impl Identity for LocalIdentity {
    fn email_for(&self, account_id: &str) -> String {
        format!("{account_id}@{}.iam.local", self.layout.project())
    }

    async fn ensure_service_account(
        &self,
        spec: &ServiceAccountSpec,
    ) -> CloudResult<ServiceAccount> {
        validate_account_id(&spec.account_id)?;
        let email = self.email_for(&spec.account_id);
        fsio::validate_name("service account", &email)?;
        let layout = self.layout.clone();
        let spec = spec.clone();
        fsio::blocking("service account", move || {
            Self::ensure_blocking(&layout, &spec, email)
        })
        .await
    }

    async fn get_service_account(&self, email: &str) -> CloudResult<ServiceAccount> {
        fsio::validate_name("service account", email)?;
        let layout = self.layout.clone();
        let email = email.to_owned();
        fsio::blocking("service account", move || {
            read_account(&layout, &email).map(|r| r.to_port())
        })
        .await
    }

    async fn list_service_accounts(&self, labels: &Labels) -> CloudResult<Vec<ServiceAccount>> {
        let layout = self.layout.clone();
        let labels = labels.clone();
        fsio::blocking("service accounts", move || {
            let mut out = Vec::new();
            for email in fsio::json_names("service accounts", &layout.service_accounts_dir())? {
                match read_account(&layout, &email) {
                    Ok(r) if fsio::has_labels(&r.labels, &labels) => out.push(r.to_port()),
                    Ok(_) | Err(CloudError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete_service_account(&self, email: &str) -> CloudResult<()> {
        fsio::validate_name("service account", email)?;
        let layout = self.layout.clone();
        let email = email.to_owned();
        fsio::blocking("service account", move || {
            let resource = format!("service account {email}");
            let _lock = fsio::lock(&resource, &layout.lock_file(IAM_ACCOUNTS_LOCK))?;
            let path = layout.service_account(&email);
            if !path.exists() {
                return Err(CloudError::not_found(resource));
            }
            // The key first: without it the account can no longer act, and a
            // crash here leaves a record that the next delete removes.
            fsio::remove_file(&resource, &layout.key_file(&email))?;
            fsio::remove_file(&resource, &path)?;
            tracing::debug!(%email, "deleted service account");
            Ok(())
        })
        .await
    }

    async fn get_iam_policy(&self, resource: &ResourceRef) -> CloudResult<Policy> {
        validate_resource(resource)?;
        let layout = self.layout.clone();
        let policies = self.policies.clone();
        let resource = resource.clone();
        fsio::blocking("IAM policy", move || {
            let name = resource.to_string();
            if !resource_exists(&layout, &resource) {
                return Err(CloudError::not_found(name));
            }
            Ok(match policies.read(&name, &layout.policy(&resource))? {
                Some(policy) => Policy::clone(&policy),
                None => Policy {
                    bindings: Vec::new(),
                    etag: EMPTY_POLICY_ETAG.to_owned(),
                },
            })
        })
        .await
    }

    async fn set_iam_policy(&self, resource: &ResourceRef, policy: &Policy) -> CloudResult<Policy> {
        validate_resource(resource)?;
        let layout = self.layout.clone();
        let resource = resource.clone();
        let policy = policy.clone();
        fsio::blocking("IAM policy", move || {
            Self::set_policy_blocking(&layout, &resource, &policy)
        })
        .await
    }

    async fn credential_for(&self, email: &str) -> CloudResult<Credential> {
        fsio::validate_name("service account", email)?;
        let layout = self.layout.clone();
        let email = email.to_owned();
        fsio::blocking("service account", move || {
            read_account(&layout, &email)?;
            let key = read_key(
                &format!("service account {email}"),
                &layout.key_file(&email),
            )?;
            Ok(Credential::ServiceAccount { email, key })
        })
        .await
    }
}
