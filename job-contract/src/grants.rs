//! What each tenant's service account may do: the roles its runs rely on, on
//! the tenant's own resources only (and BigQuery jobs in the project, which
//! BigQuery grants on the project alone). The plan ensures exactly these; no
//! tenant holds a role on another tenant's resources.

use cloud::naming::{self, DeploymentPrefix, TenantId};
use cloud::ports::{roles, ResourceRef};

/// `role` on `resource`, for the tenant's service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub resource: ResourceRef,
    pub role: &'static str,
}

/// The tenant's grants, in the order the plan lists them.
pub fn tenant_grants(id: &TenantId, prefix: Option<&DeploymentPrefix>) -> Vec<Grant> {
    let secret = naming::secret_name(id);
    let grant = |resource, role| Grant { resource, role };
    vec![
        // Ingest writes raw pages, cursors, summaries and the token lease;
        // transform reads them.
        grant(
            ResourceRef::Bucket(naming::bucket_name(prefix, id)),
            roles::STORAGE_OBJECT_ADMIN,
        ),
        // Transform loads the raw dataset and builds the transformed one.
        grant(
            ResourceRef::Dataset(naming::raw_dataset(id)),
            roles::BIGQUERY_DATA_EDITOR,
        ),
        grant(
            ResourceRef::Dataset(naming::transformed_dataset(id)),
            roles::BIGQUERY_DATA_EDITOR,
        ),
        // Ingest reads the token set and writes the refreshed one back.
        grant(ResourceRef::Secret(secret.clone()), roles::SECRET_ACCESSOR),
        grant(ResourceRef::Secret(secret), roles::SECRET_VERSION_ADDER),
        grant(ResourceRef::Project, roles::BIGQUERY_JOB_USER),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_on_the_tenants_own_resources() {
        let id = TenantId::parse("acme").expect("id");
        let grants = tenant_grants(&id, None);
        assert_eq!(grants.len(), 6);
        for g in &grants {
            match &g.resource {
                ResourceRef::Project => assert_eq!(g.role, roles::BIGQUERY_JOB_USER),
                ResourceRef::Bucket(n) | ResourceRef::Dataset(n) | ResourceRef::Secret(n) => {
                    assert!(n.contains("acme"), "{n}")
                }
            }
        }
    }
}
