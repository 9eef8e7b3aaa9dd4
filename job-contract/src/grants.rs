//! What each tenant's service account may do: the roles its runs rely on, on
//! the tenant's own resources only (and BigQuery jobs in the project, which
//! BigQuery grants on the project alone, and reading the Xero app's client
//! secret of its project when jobs read it by reference). The plan ensures
//! exactly these; no tenant holds a role on another tenant's resources.

use cloud::naming::{self, DeploymentPrefix, TenantId};
use cloud::ports::{roles, ResourceRef};

/// `role` on `resource`, for the tenant's service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub resource: ResourceRef,
    pub role: &'static str,
}

/// The tenant's grants, in the order the plan lists them. `app_secret`: the
/// secret of the Xero app's client secret its jobs read by reference, if any
/// ([`crate::plan::JobTemplate::app_secret`]).
pub fn tenant_grants(
    id: &TenantId,
    prefix: Option<&DeploymentPrefix>,
    app_secret: Option<&str>,
) -> Vec<Grant> {
    let secret = naming::secret_name(id);
    let grant = |resource, role| Grant { resource, role };
    let mut grants = vec![
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
    ];
    // Read only, on a secret the platform owns; removed with the tenant.
    grants.extend(
        app_secret.map(|name| grant(ResourceRef::Secret(name.to_owned()), roles::SECRET_ACCESSOR)),
    );
    grants
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_on_the_tenants_own_resources() {
        let id = TenantId::parse("acme").expect("id");
        let grants = tenant_grants(&id, None, None);
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

    #[test]
    fn the_app_secret_is_read_only_and_the_one_grant_beyond_the_tenants_own() {
        let id = TenantId::parse("acme").expect("id");
        let grants = tenant_grants(&id, None, Some("xero-app-client-secret"));
        assert_eq!(grants.len(), 7);
        assert_eq!(grants[..6], tenant_grants(&id, None, None)[..]);
        assert_eq!(
            grants[6],
            Grant {
                resource: ResourceRef::Secret("xero-app-client-secret".into()),
                role: roles::SECRET_ACCESSOR,
            }
        );
    }
}
