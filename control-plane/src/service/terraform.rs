//! `tenants export-terraform`: a tenant's resources as a call of
//! `terraform/modules/tenant` with an `import` block for each, rendered from
//! `templates/terraform/tenant.tf.tera` with the reconciler's own plan for the
//! tenant (names, labels, grants, job definitions as the adapter writes
//! them), so the Terraform and the reconciler cannot drift apart.

use serde::Serialize;
use std::collections::BTreeMap;

use cloud::naming::{self, Labels, TenantId};
use cloud::ports::ResourceRef;

use super::ServiceError;
use crate::reconciler::plan::Planned;
use crate::reconciler::Reconciler;

/// The template, part of the binary: what it renders is what this build's
/// reconciler makes.
const TEMPLATE: &str = include_str!("../../../templates/terraform/tenant.tf.tera");
const TEMPLATE_NAME: &str = "tenant.tf.tera";

/// Where the module is, from the root the output goes into (an environment
/// root of `infra/environments/<env>/`).
pub const DEFAULT_MODULE_SOURCE: &str = "../../../terraform/modules/tenant";

/// What the plan does not say: where the module lives, where data lives and
/// who the platform is.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The module's source, relative (`./…`, `../…`) or a registry address.
    pub module_source: String,
    /// The buckets' and datasets' location (`LEDGERLAKE_GCP_LOCATION`).
    pub location: String,
    /// The control plane's IAM member (`serviceAccount:<email>`), owner of
    /// the tenant's datasets.
    pub platform_member: String,
}

#[derive(Debug, Serialize)]
struct ServiceAccountContext {
    account_id: String,
    email: String,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
struct GrantContext {
    key: String,
    kind: &'static str,
    resource: String,
    role: &'static str,
    member: String,
}

#[derive(Debug, Serialize)]
struct JobContext {
    name: String,
    image: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    secret_env: BTreeMap<String, String>,
    timeout_seconds: u64,
}

/// The template's context (documented at the top of the template).
#[derive(Debug, Serialize)]
struct Context {
    tenant: String,
    module_name: String,
    module_source: String,
    project: String,
    region: String,
    location: String,
    labels: Labels,
    service_account: ServiceAccountContext,
    bucket: String,
    raw_dataset: String,
    transformed_dataset: String,
    token_secret: String,
    /// Automatic replication, as the gcp adapter creates secrets.
    secret_replica_location: Option<String>,
    platform_member: String,
    grants: Vec<GrantContext>,
    jobs: Vec<JobContext>,
}

fn invalid(message: String) -> ServiceError {
    ServiceError::invalid("invalid_export", message)
}

/// Checks what the operator gave before anything is read.
fn validate(options: &ExportOptions) -> Result<(), ServiceError> {
    let source = &options.module_source;
    let local = source.starts_with("./") || source.starts_with("../");
    let registry = !source.is_empty()
        && !source.starts_with('.')
        && !source.starts_with('/')
        && !source.chars().any(|c| c.is_whitespace() || c == '"');
    if !(local || registry) {
        return Err(invalid(format!(
            "module source {source:?} must start with ./ or ../ (a path Terraform reads as \
             local), or be a registry or git address"
        )));
    }
    let member = &options.platform_member;
    if !(member.starts_with("serviceAccount:") && member.contains('@'))
        || member.chars().any(char::is_whitespace)
    {
        return Err(invalid(format!(
            "platform member {member:?} must be serviceAccount:<email> (the control \
             service's account)"
        )));
    }
    if options.location.trim().is_empty() {
        return Err(invalid("the location must not be empty".to_owned()));
    }
    Ok(())
}

/// Renders tenant `id`'s module call and import blocks. The tenant must be
/// wanted and placed in a cell (only cells are projects Terraform can name).
pub async fn export_tenant(
    reconciler: &Reconciler,
    id: &TenantId,
    options: &ExportOptions,
) -> Result<String, ServiceError> {
    validate(options)?;
    let store = reconciler.store();
    let tenant = store
        .get_tenant(id)
        .await?
        .ok_or_else(|| ServiceError::tenant_not_found(id))?;
    let Some(location) = crate::clouds::location(store, &tenant).await? else {
        return Err(ServiceError::conflict(
            "tenant_not_placed",
            format!(
                "tenant {id} has no cell: only a tenant in a cell (a Google Cloud project) \
                 has resources Terraform can manage"
            ),
        ));
    };
    let cloud = reconciler
        .clouds()
        .for_cell(Some(&location))
        .map_err(|e| ServiceError::conflict("tenant_not_placed", e.to_string()))?;
    let plan = reconciler.plan(&cloud, id);
    let mut grants = Vec::new();
    let mut jobs = Vec::new();
    let mut service_account = None;
    for p in plan.resources() {
        match p {
            Planned::ServiceAccount { account_id, email } => {
                service_account = Some(ServiceAccountContext {
                    account_id: account_id.clone(),
                    email: email.clone(),
                })
            }
            Planned::Binding {
                resource,
                role,
                member,
            } => {
                let (kind, name) = match resource {
                    ResourceRef::Bucket(n) => ("bucket", n.clone()),
                    ResourceRef::Dataset(n) => ("dataset", n.clone()),
                    ResourceRef::Secret(n) => ("secret", n.clone()),
                    ResourceRef::Project => ("project", String::new()),
                };
                grants.push(GrantContext {
                    key: p.name(),
                    kind,
                    resource: name,
                    role,
                    member: member.clone(),
                });
            }
            Planned::Job { spec } => jobs.push(JobContext {
                name: spec.name.clone(),
                image: spec.image.clone(),
                args: spec.args.clone(),
                env: cloud.jobs.definition_env(spec),
                secret_env: spec.secret_env.clone(),
                timeout_seconds: spec.timeout_seconds,
            }),
            Planned::Bucket { .. } | Planned::Dataset { .. } | Planned::Secret { .. } => {}
        }
    }
    let context = Context {
        tenant: id.to_string(),
        module_name: format!("tenant_{}", id.as_str().replace('-', "_")),
        module_source: options.module_source.clone(),
        project: location.project,
        region: location.region,
        location: options.location.clone(),
        labels: naming::tenant_labels(id),
        service_account: service_account.ok_or_else(|| ServiceError::Internal {
            context: "reading the tenant's plan",
            source: "it names no service account".into(),
        })?,
        bucket: naming::bucket_name(reconciler.prefix(), id),
        raw_dataset: naming::raw_dataset(id),
        transformed_dataset: naming::transformed_dataset(id),
        token_secret: naming::secret_name(id),
        secret_replica_location: None,
        platform_member: options.platform_member.clone(),
        grants,
        jobs,
    };
    render(&context)
}

fn render(context: &Context) -> Result<String, ServiceError> {
    let mut tera = tera::Tera::default();
    tera.add_raw_template(TEMPLATE_NAME, TEMPLATE)
        .map_err(|e| ServiceError::internal("reading the Terraform template", e))?;
    let context = tera::Context::from_serialize(context)
        .map_err(|e| ServiceError::internal("preparing the Terraform template", e))?;
    tera.render(TEMPLATE_NAME, &context)
        .map_err(|e| ServiceError::internal("rendering the Terraform template", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ExportOptions {
        ExportOptions {
            module_source: DEFAULT_MODULE_SOURCE.to_owned(),
            location: "EU".to_owned(),
            platform_member: "serviceAccount:control@p.iam.gserviceaccount.com".to_owned(),
        }
    }

    #[test]
    fn what_the_operator_gives_is_checked() {
        assert!(validate(&options()).is_ok());
        for bad in [
            ExportOptions {
                module_source: "..".into(),
                ..options()
            },
            ExportOptions {
                module_source: "/abs/path".into(),
                ..options()
            },
            ExportOptions {
                module_source: "a\" b".into(),
                ..options()
            },
            ExportOptions {
                platform_member: "control@p".into(),
                ..options()
            },
            ExportOptions {
                platform_member: "serviceAccount:x y@p".into(),
                ..options()
            },
            ExportOptions {
                location: " ".into(),
                ..options()
            },
        ] {
            assert!(
                matches!(validate(&bad), Err(ServiceError::Invalid { .. })),
                "{bad:?}"
            );
        }
    }
}
