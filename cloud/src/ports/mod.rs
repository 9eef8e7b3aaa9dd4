//! The ports to the cloud. Each is shaped after Google Cloud's semantics so the
//! gcp adapter fits without the callers changing:
//! - creates are create-or-get: an existing resource carrying the same owner
//!   labels is success, one owned by someone else is `AlreadyExists`;
//! - new service accounts are eventually consistent (a grant right after the
//!   create may fail with `Transient` and succeed later);
//! - IAM policies are read-modify-write guarded by an etag (`Conflict`);
//! - job creation is a long-running operation that `ensure_job` waits out.
//!
//! Administrative calls (create, delete, set policy) are the platform's own;
//! data-plane calls take the [`Credential`] they run as, and the adapter refuses
//! any resource that credential was not granted.

pub mod identity;
pub mod jobs;
pub mod objects;
pub mod secrets;
pub mod warehouse;

use std::fmt;

pub use identity::{Binding, Identity, Policy, ServiceAccount, ServiceAccountSpec};
pub use jobs::{Execution, ExecutionOverrides, ExecutionState, Job, JobRunner, JobSpec};
pub use objects::{Bucket, BucketSpec, ObjectInfo, ObjectStore, Precondition};
pub use secrets::{SecretInfo, SecretPayload, SecretSpec, SecretStore};
pub use warehouse::{
    Column, Dataset, DatasetSpec, ExpectedObject, LoadedObject, PageDigest, QueryRequest,
    QueryResult, TableInfo, Warehouse, WriteMode,
};

/// Who a data-plane call runs as.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// The control plane's own identity, which administers every resource.
    Platform,
    /// A tenant's service account, proven by a key (local adapter) or obtained by
    /// impersonation (gcp adapter).
    ServiceAccount { email: String, key: String },
}

impl Credential {
    /// The IAM member this credential acts as, e.g. `serviceAccount:client-x-sa@…`.
    pub fn member(&self) -> String {
        match self {
            Credential::Platform => "platform".to_owned(),
            Credential::ServiceAccount { email, .. } => member_for(email),
        }
    }
}

/// The IAM member string of a service account.
pub fn member_for(email: &str) -> String {
    format!("serviceAccount:{email}")
}

// The key is a secret: never print it.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Platform => f.write_str("Credential::Platform"),
            Credential::ServiceAccount { email, .. } => f
                .debug_struct("Credential::ServiceAccount")
                .field("email", email)
                .field("key", &"<redacted>")
                .finish(),
        }
    }
}

/// A resource on which roles are granted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceRef {
    Bucket(String),
    Dataset(String),
    Secret(String),
    /// The project (cell) itself, e.g. for `roles/bigquery.jobUser`.
    Project,
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourceRef::Bucket(n) => write!(f, "bucket {n}"),
            ResourceRef::Dataset(n) => write!(f, "dataset {n}"),
            ResourceRef::Secret(n) => write!(f, "secret {n}"),
            ResourceRef::Project => f.write_str("project"),
        }
    }
}

/// What a data-plane call does to a resource; roles grant a set of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Read,
    Write,
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Permission::Read => "read",
            Permission::Write => "write",
        })
    }
}

/// The predefined Google roles ledgerlake grants, and what each allows.
pub mod roles {
    use super::{Permission, ResourceRef};

    pub const STORAGE_OBJECT_VIEWER: &str = "roles/storage.objectViewer";
    pub const STORAGE_OBJECT_ADMIN: &str = "roles/storage.objectAdmin";
    pub const BIGQUERY_DATA_VIEWER: &str = "roles/bigquery.dataViewer";
    pub const BIGQUERY_DATA_EDITOR: &str = "roles/bigquery.dataEditor";
    pub const BIGQUERY_JOB_USER: &str = "roles/bigquery.jobUser";
    pub const SECRET_ACCESSOR: &str = "roles/secretmanager.secretAccessor";
    pub const SECRET_VERSION_ADDER: &str = "roles/secretmanager.secretVersionAdder";

    /// Whether `role` on `resource` allows `permission`. Roles of another
    /// resource type allow nothing, so a mistaken grant cannot widen access.
    pub fn allows(role: &str, resource: &ResourceRef, permission: Permission) -> bool {
        use Permission::*;
        matches!(
            (resource, role, permission),
            (ResourceRef::Bucket(_), STORAGE_OBJECT_VIEWER, Read)
                | (ResourceRef::Bucket(_), STORAGE_OBJECT_ADMIN, _)
                | (ResourceRef::Dataset(_), BIGQUERY_DATA_VIEWER, Read)
                | (ResourceRef::Dataset(_), BIGQUERY_DATA_EDITOR, _)
                | (ResourceRef::Secret(_), SECRET_ACCESSOR, Read)
                | (ResourceRef::Secret(_), SECRET_VERSION_ADDER, Write)
                | (ResourceRef::Project, BIGQUERY_JOB_USER, Read)
        )
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn roles_allow_only_on_their_own_resource_type() {
            let bucket = ResourceRef::Bucket("b".into());
            let dataset = ResourceRef::Dataset("d".into());
            let secret = ResourceRef::Secret("s".into());
            assert!(allows(STORAGE_OBJECT_ADMIN, &bucket, Permission::Write));
            assert!(allows(STORAGE_OBJECT_VIEWER, &bucket, Permission::Read));
            assert!(!allows(STORAGE_OBJECT_VIEWER, &bucket, Permission::Write));
            assert!(!allows(STORAGE_OBJECT_ADMIN, &dataset, Permission::Read));
            assert!(allows(BIGQUERY_DATA_VIEWER, &dataset, Permission::Read));
            assert!(!allows(BIGQUERY_DATA_VIEWER, &dataset, Permission::Write));
            assert!(allows(SECRET_ACCESSOR, &secret, Permission::Read));
            assert!(!allows(SECRET_ACCESSOR, &secret, Permission::Write));
            assert!(allows(SECRET_VERSION_ADDER, &secret, Permission::Write));
            assert!(!allows(SECRET_VERSION_ADDER, &secret, Permission::Read));
            assert!(!allows("roles/owner", &secret, Permission::Read));
        }
    }
}
