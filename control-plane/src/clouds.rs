//! The Cloud a tenant's work runs on: the shared one locally, its cell's on
//! Google Cloud (see `cloud::cells`). Every tenant path asks here, so a tenant
//! is never acted on in another cell's project.

use cloud::naming::TenantId;
use cloud::{CellLocation, Cloud, CloudError, Clouds};

use crate::store::{Store, StoreError, TenantRecord};

#[derive(Debug, thiserror::Error)]
pub enum TenantCloudError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("tenant {0} does not exist")]
    UnknownTenant(TenantId),
    #[error("tenant {tenant}: {source}")]
    Cloud {
        tenant: TenantId,
        #[source]
        source: CloudError,
    },
}

/// Where a tenant's cell is (`None`: not placed, or its cell is gone).
pub async fn location(
    store: &Store,
    tenant: &TenantRecord,
) -> Result<Option<CellLocation>, StoreError> {
    Ok(match &tenant.cell {
        Some(cell) => store.get_cell(cell).await?.map(|c| CellLocation {
            project: c.project,
            region: c.region,
        }),
        None => None,
    })
}

/// The Cloud of a tenant already read.
pub async fn of_tenant(
    clouds: &Clouds,
    store: &Store,
    tenant: &TenantRecord,
) -> Result<Cloud, TenantCloudError> {
    if let Clouds::Shared(cloud) = clouds {
        return Ok(cloud.clone());
    }
    let location = location(store, tenant).await?;
    clouds
        .for_cell(location.as_ref())
        .map_err(|source| TenantCloudError::Cloud {
            tenant: tenant.id.clone(),
            source,
        })
}

/// The Cloud of tenant `id`.
pub async fn of_tenant_id(
    clouds: &Clouds,
    store: &Store,
    id: &TenantId,
) -> Result<Cloud, TenantCloudError> {
    if let Clouds::Shared(cloud) = clouds {
        return Ok(cloud.clone());
    }
    let tenant = store
        .get_tenant(id)
        .await?
        .ok_or_else(|| TenantCloudError::UnknownTenant(id.clone()))?;
    of_tenant(clouds, store, &tenant).await
}
