//! Tenant operations: view, list, provision, tear down, schedule.

use cloud::naming::TenantId;

use super::ServiceError;
use crate::output::TenantView;
use crate::reconciler::{Reconciler, TenantReport};
use crate::store::{Store, StoreError};

fn not_found(id: &TenantId) -> ServiceError {
    ServiceError::not_found("tenant_not_found", format!("tenant {id} does not exist"))
}

/// The tenant as `tenants show` and `GET /v1/tenants/{id}` present it.
pub async fn view(store: &Store, id: &TenantId) -> Result<TenantView, ServiceError> {
    TenantView::load(store, id)
        .await?
        .ok_or_else(|| not_found(id))
}

/// Every tenant, oldest first.
pub async fn list(store: &Store) -> Result<Vec<TenantView>, ServiceError> {
    let tenants = store.list_tenants().await?;
    let mut views = Vec::with_capacity(tenants.len());
    for t in &tenants {
        // A tenant torn down between the two reads is simply not listed.
        if let Some(v) = TenantView::load(store, &t.id).await? {
            views.push(v);
        }
    }
    Ok(views)
}

/// Records the tenant as wanted (audited by `actor`) and runs one pass.
pub async fn provision(
    reconciler: &Reconciler,
    id: &TenantId,
    actor: &str,
) -> Result<TenantReport, ServiceError> {
    Ok(reconciler.provision(id, actor).await?)
}

/// Marks the tenant for deletion (audited by `actor`) and runs the teardown.
pub async fn teardown(
    reconciler: &Reconciler,
    id: &TenantId,
    keep_data: bool,
    actor: &str,
) -> Result<TenantReport, ServiceError> {
    Ok(reconciler.teardown(id, keep_data, actor).await?)
}

/// Sets (or, with `None`, resets to the default) when the tenant syncs.
pub async fn set_schedule(
    store: &Store,
    id: &TenantId,
    schedule: Option<&str>,
    actor: &str,
) -> Result<(), ServiceError> {
    if let Some(s) = schedule {
        crate::scheduler::parse_schedule(s)
            .map_err(|e| ServiceError::invalid("invalid_schedule", e.to_string()))?;
    }
    match store.set_schedule(id, schedule).await {
        Err(StoreError::TenantNotFound(_)) => return Err(not_found(id)),
        other => other?,
    }
    store
        .audit(
            actor,
            "tenant.schedule",
            Some(id),
            &serde_json::json!({ "schedule": schedule }),
        )
        .await?;
    Ok(())
}
