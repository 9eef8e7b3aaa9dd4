//! What a tenant consists of: the resources the reconciler ensures, in
//! dependency order. Names come from `cloud::naming`, so the plan of a tenant
//! is a pure function of its id and the deployment settings.

use std::fmt;

use cloud::naming::{self, DeploymentPrefix, TenantId};
use cloud::ports::{roles, ResourceRef};

/// The kind of a tenant resource, as shown by `tenants show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    ServiceAccount,
    Bucket,
    Dataset,
    Secret,
    IamBinding,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::ServiceAccount => "service_account",
            ResourceKind::Bucket => "bucket",
            ResourceKind::Dataset => "dataset",
            ResourceKind::Secret => "secret",
            ResourceKind::IamBinding => "iam_binding",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One resource of a tenant and how to ensure it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    ServiceAccount {
        account_id: String,
        email: String,
    },
    Bucket {
        name: String,
    },
    Dataset {
        name: String,
    },
    Secret {
        name: String,
    },
    /// `role` on `resource` for the tenant's service account.
    Binding {
        resource: ResourceRef,
        role: &'static str,
        member: String,
    },
}

impl Planned {
    pub fn kind(&self) -> ResourceKind {
        match self {
            Planned::ServiceAccount { .. } => ResourceKind::ServiceAccount,
            Planned::Bucket { .. } => ResourceKind::Bucket,
            Planned::Dataset { .. } => ResourceKind::Dataset,
            Planned::Secret { .. } => ResourceKind::Secret,
            Planned::Binding { .. } => ResourceKind::IamBinding,
        }
    }

    /// The name recorded in the state store and shown to operators.
    pub fn name(&self) -> String {
        match self {
            Planned::ServiceAccount { email, .. } => email.clone(),
            Planned::Bucket { name } | Planned::Dataset { name } | Planned::Secret { name } => {
                name.clone()
            }
            Planned::Binding { resource, role, .. } => match resource {
                ResourceRef::Bucket(n) => format!("bucket/{n} {role}"),
                ResourceRef::Dataset(n) => format!("dataset/{n} {role}"),
                ResourceRef::Secret(n) => format!("secret/{n} {role}"),
                ResourceRef::Project => format!("project {role}"),
            },
        }
    }

    /// Whether teardown with `--keep-data` leaves this resource in place.
    pub fn is_data(&self) -> bool {
        matches!(self, Planned::Bucket { .. } | Planned::Dataset { .. })
    }
}

/// A tenant's resources grouped in levels: every resource depends only on
/// resources of earlier levels, so a level's members can be ensured concurrently.
#[derive(Debug, Clone)]
pub struct TenantPlan {
    pub levels: Vec<Vec<Planned>>,
}

impl TenantPlan {
    pub fn new(id: &TenantId, prefix: Option<&DeploymentPrefix>, sa_email: String) -> Self {
        let bucket = naming::bucket_name(prefix, id);
        let raw = naming::raw_dataset(id);
        let transformed = naming::transformed_dataset(id);
        let secret = naming::secret_name(id);
        let member = cloud::ports::member_for(&sa_email);
        let binding = |resource: ResourceRef, role: &'static str| Planned::Binding {
            resource,
            role,
            member: member.clone(),
        };
        TenantPlan {
            levels: vec![
                vec![Planned::ServiceAccount {
                    account_id: naming::service_account_id(id),
                    email: sa_email.clone(),
                }],
                vec![
                    Planned::Bucket {
                        name: bucket.clone(),
                    },
                    Planned::Dataset { name: raw.clone() },
                    Planned::Dataset {
                        name: transformed.clone(),
                    },
                    Planned::Secret {
                        name: secret.clone(),
                    },
                ],
                vec![
                    binding(ResourceRef::Bucket(bucket), roles::STORAGE_OBJECT_ADMIN),
                    binding(ResourceRef::Dataset(raw), roles::BIGQUERY_DATA_EDITOR),
                    binding(
                        ResourceRef::Dataset(transformed),
                        roles::BIGQUERY_DATA_EDITOR,
                    ),
                    binding(ResourceRef::Secret(secret.clone()), roles::SECRET_ACCESSOR),
                    binding(ResourceRef::Secret(secret), roles::SECRET_VERSION_ADDER),
                    binding(ResourceRef::Project, roles::BIGQUERY_JOB_USER),
                ],
            ],
        }
    }

    pub fn resources(&self) -> impl Iterator<Item = &Planned> {
        self.levels.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> TenantPlan {
        let id = TenantId::parse("acme").expect("id");
        TenantPlan::new(&id, None, "client-acme-sa@local.iam.local".into())
    }

    #[test]
    fn plan_names_every_resource_once_in_dependency_order() {
        let plan = plan();
        let names: Vec<String> = plan.resources().map(Planned::name).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(plan.levels[0][0].kind(), ResourceKind::ServiceAccount);
        assert!(names.contains(&"client-acme-bucket".to_owned()));
        assert!(names.contains(&"raw_acme".to_owned()));
        assert!(names.contains(&"transformed_acme".to_owned()));
        assert!(names.contains(&"xero_token_acme".to_owned()));
        // Bindings come after the resources they are on.
        assert!(plan.levels[2]
            .iter()
            .all(|p| p.kind() == ResourceKind::IamBinding));
        assert_eq!(plan.resources().filter(|p| p.is_data()).count(), 3);
    }
}
