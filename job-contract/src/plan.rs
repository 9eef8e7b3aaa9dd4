//! What a tenant consists of: the resources the control plane's reconciler
//! ensures, in dependency order, with the grants its runs rely on
//! ([`crate::grants`]) and the job definitions they run as. Names come from
//! `cloud::naming`, so the plan of a tenant is a pure function of its id and
//! the deployment settings.

use std::collections::BTreeMap;
use std::fmt;

use cloud::naming::{self, DeploymentPrefix, TenantId};
use cloud::ports::{JobSpec, ResourceRef};

use crate::command::RunCommand;
use crate::env::{self as job_env, JobEnvironment};
use crate::grants::{self, Grant};

/// The secret, in each project tenants live in (each cell), that holds the
/// Xero app's client secret when jobs read it by reference
/// ([`JobTemplate::app_secret`]). The control plane writes it
/// (`control-plane cells add`, `cells sync-secret`); each tenant's account
/// may only read it.
pub const XERO_APP_SECRET: &str = "xero-app-client-secret";

/// How a tenant's jobs are defined: the program (the `tenant-job` binary
/// locally, its image on Cloud Run) and the plain settings every run gets
/// (written into the job definitions' environment; never secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTemplate {
    pub image: String,
    /// Where the Xero app's client secret reaches the jobs from. `Some(name)`:
    /// the secret of that name in the tenant's own project, which the job
    /// definitions reference and the tenant's account is granted to read
    /// (Google Cloud: one copy per cell, since one policy names at most 1,500
    /// principals and a cell holds at most 100 tenants). `None`: each run
    /// carries it (the local adapter, where runs are child processes).
    pub app_secret: Option<String>,
    pub timeout_seconds: u64,
    /// One base URL for every Xero host (the sandbox); Xero's own when unset.
    pub xero_endpoint: Option<String>,
    /// Calls per minute per organisation the job allows itself; Xero's 60
    /// when unset (raise only against the sandbox with its limits off).
    pub xero_per_minute: Option<u32>,
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
            app_secret: None,
            timeout_seconds: 3600,
            xero_endpoint: None,
            xero_per_minute: None,
        }
    }

    /// The plain environment of `id`'s job definitions: the tenant, the
    /// bucket prefix, the Xero settings and the C library's arenas and mmap
    /// threshold, no secret.
    pub fn environment(&self, id: &TenantId, prefix: Option<&DeploymentPrefix>) -> JobEnvironment {
        JobEnvironment {
            bucket_prefix: prefix.cloned(),
            xero_endpoint: self.xero_endpoint.clone(),
            xero_per_minute: self.xero_per_minute,
            malloc_arenas: Some(job_env::JOB_MALLOC_ARENAS),
            malloc_mmap_threshold: Some(job_env::JOB_MALLOC_MMAP_THRESHOLD),
            ..JobEnvironment::new(id.clone())
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
        // Plain settings only: secrets reach each execution, never a definition.
        let env = jobs.environment(id, prefix).without_secrets().to_env_map();
        let secret_env: BTreeMap<String, String> = jobs
            .app_secret
            .iter()
            .map(|name| (job_env::XERO_CLIENT_SECRET.to_owned(), name.clone()))
            .collect();
        let job = |command: RunCommand| Planned::Job {
            spec: JobSpec {
                name: command.job_name(id),
                labels: naming::tenant_labels(id),
                image: jobs.image.clone(),
                args: command.args(id),
                env: env.clone(),
                secret_env: secret_env.clone(),
                service_account: sa_email.clone(),
                timeout_seconds: jobs.timeout_seconds,
            },
        };
        let binding = |Grant { resource, role }| Planned::Binding {
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
                    Planned::Bucket { name: bucket },
                    Planned::Dataset { name: raw },
                    Planned::Dataset { name: transformed },
                    Planned::Secret { name: secret },
                ],
                grants::tenant_grants(id, prefix, jobs.app_secret.as_deref())
                    .into_iter()
                    .map(binding)
                    .collect(),
                // Runs act as the account with the grants above. The ingest
                // job also carries sync runs (see `RunCommand::job_name`).
                vec![job(RunCommand::Ingest), job(RunCommand::Transform)],
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

    #[test]
    fn with_the_app_secret_by_reference_jobs_name_it_and_the_account_may_read_it() {
        let id = TenantId::parse("acme").expect("id");
        let jobs = JobTemplate {
            app_secret: Some(XERO_APP_SECRET.into()),
            ..JobTemplate::beside_current_exe()
        };
        let plan = TenantPlan::new(&id, None, "sa@local".into(), &jobs);
        let member = cloud::ports::member_for("sa@local");
        assert!(plan.levels[2].contains(&Planned::Binding {
            resource: ResourceRef::Secret(XERO_APP_SECRET.into()),
            role: cloud::ports::roles::SECRET_ACCESSOR,
            member,
        }));
        // Nothing of the platform's is the tenant's data: a --keep-data
        // teardown removes the grant like the others.
        assert_eq!(plan.resources().filter(|p| p.is_data()).count(), 3);
        for p in plan.resources() {
            if let Planned::Job { spec } = p {
                assert_eq!(
                    spec.secret_env,
                    BTreeMap::from([(
                        job_env::XERO_CLIENT_SECRET.to_owned(),
                        XERO_APP_SECRET.to_owned()
                    )])
                );
                assert!(!spec.env.contains_key(job_env::XERO_CLIENT_SECRET));
            }
        }
        // Without it, runs carry the secret and the plan names none.
        let local = TenantPlan::new(
            &id,
            None,
            "sa@local".into(),
            &JobTemplate::beside_current_exe(),
        );
        assert!(local.resources().all(|p| match p {
            Planned::Job { spec } => spec.secret_env.is_empty(),
            Planned::Binding { resource, .. } =>
                *resource != ResourceRef::Secret(XERO_APP_SECRET.into()),
            _ => true,
        }));
    }

    #[test]
    fn job_definitions_carry_the_plain_environment_only() {
        let id = TenantId::parse("acme").expect("id");
        let prefix = DeploymentPrefix::parse("dev").expect("prefix");
        let jobs = JobTemplate {
            xero_endpoint: Some("http://127.0.0.1:9".into()),
            xero_per_minute: Some(1000),
            ..JobTemplate::beside_current_exe()
        };
        let plan = TenantPlan::new(&id, Some(&prefix), "sa@local".into(), &jobs);
        let specs: Vec<&JobSpec> = plan
            .resources()
            .filter_map(|p| match p {
                Planned::Job { spec } => Some(spec),
                _ => None,
            })
            .collect();
        assert_eq!(specs.len(), 2);
        for spec in specs {
            let env = JobEnvironment::from_env(|n| spec.env.get(n).cloned()).expect("env");
            assert_eq!(env, jobs.environment(&id, Some(&prefix)));
            assert_eq!(
                spec.env
                    .get(crate::env::MALLOC_ARENA_MAX)
                    .map(String::as_str),
                Some("2"),
                "every job definition limits glibc's arenas"
            );
            assert_eq!(
                spec.env
                    .get(crate::env::MALLOC_MMAP_THRESHOLD)
                    .map(String::as_str),
                Some("131072"),
                "every job definition fixes glibc's mmap threshold"
            );
            assert!(spec
                .env
                .keys()
                .all(|k| crate::env::NAMES.contains(&k.as_str())
                    && !crate::env::SECRET_NAMES.contains(&k.as_str())));
            let command: RunCommand = spec.args[0].parse().expect("command");
            assert_eq!(command.job_name(&id), spec.name);
            assert_eq!(spec.args, command.args(&id));
        }
    }
}
