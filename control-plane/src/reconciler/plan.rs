//! What a tenant consists of: the resources the reconciler ensures, in
//! dependency order. Names come from `cloud::naming`, so the plan of a tenant
//! is a pure function of its id and the deployment settings.

use std::collections::BTreeMap;
use std::fmt;

use cloud::naming::{self, DeploymentPrefix, TenantId};
use cloud::ports::{roles, JobSpec, ResourceRef};

/// How a tenant's jobs are defined: the program (the `tenant-job` binary
/// locally, its image on Cloud Run) and the plain configuration every run gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTemplate {
    pub image: String,
    /// Plain settings only (endpoints, prefixes): never secrets.
    pub env: BTreeMap<String, String>,
    pub timeout_seconds: u64,
}

impl JobTemplate {
    /// `tenant-job` beside the running executable (or one folder up, where
    /// cargo puts binaries next to test executables in `deps/`), else found
    /// on the PATH at run time.
    pub fn beside_current_exe() -> Self {
        let found = std::env::current_exe().ok().and_then(|exe| {
            exe.ancestors()
                .skip(1)
                .take(2)
                .map(|dir| dir.join("tenant-job"))
                .find(|p| p.is_file())
        });
        JobTemplate {
            image: found.map_or_else(|| "tenant-job".to_owned(), |p| p.display().to_string()),
            env: BTreeMap::new(),
            timeout_seconds: 3600,
        }
    }
}

/// The kind of a tenant resource, as shown by `tenants show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    ServiceAccount,
    Bucket,
    Dataset,
    Secret,
    IamBinding,
    Job,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::ServiceAccount => "service_account",
            ResourceKind::Bucket => "bucket",
            ResourceKind::Dataset => "dataset",
            ResourceKind::Secret => "secret",
            ResourceKind::IamBinding => "iam_binding",
            ResourceKind::Job => "job",
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
    /// A job definition (Cloud Run job) the tenant's runs execute.
    Job {
        spec: JobSpec,
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
            Planned::Job { .. } => ResourceKind::Job,
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
            Planned::Job { spec } => spec.name.clone(),
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
    pub fn new(
        id: &TenantId,
        prefix: Option<&DeploymentPrefix>,
        sa_email: String,
        jobs: &JobTemplate,
    ) -> Self {
        let bucket = naming::bucket_name(prefix, id);
        let raw = naming::raw_dataset(id);
        let transformed = naming::transformed_dataset(id);
        let secret = naming::secret_name(id);
        let member = cloud::ports::member_for(&sa_email);
        let job = |name: String, command: &str| {
            let mut env = jobs.env.clone();
            env.insert("LEDGERLAKE_TENANT".to_owned(), id.to_string());
            if let Some(p) = prefix {
                env.insert("LEDGERLAKE_BUCKET_PREFIX".to_owned(), p.as_str().to_owned());
            }
            Planned::Job {
                spec: JobSpec {
                    name,
                    labels: naming::tenant_labels(id),
                    image: jobs.image.clone(),
                    args: vec![command.to_owned(), "--tenant".to_owned(), id.to_string()],
                    env,
                    service_account: sa_email.clone(),
                    timeout_seconds: jobs.timeout_seconds,
                },
            }
        };
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
                // Runs act as the account with the grants above.
                vec![
                    job(naming::ingest_job(id), "ingest"),
                    job(naming::transform_job(id), "transform"),
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
        TenantPlan::new(
            &id,
            None,
            "client-acme-sa@local.iam.local".into(),
            &JobTemplate::beside_current_exe(),
        )
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
        // Jobs come last, after the grants their runs rely on.
        let last: Vec<String> = plan.levels[3].iter().map(Planned::name).collect();
        assert_eq!(last, ["ingest-acme", "transform-acme"]);
    }
}
