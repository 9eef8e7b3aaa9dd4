//! A tenant's resources and their conditions.

use std::collections::HashMap;

use cloud::TenantId;
use sqlx::any::AnyRow;

use super::{get, get_parsed, get_time, now_ms, tenant_write_err, Store, StoreError};
use super::{ResourceRecord, ResourceStatus};

/// The columns of a [`ResourceRecord`], as a literal for `concat!`.
macro_rules! resource_columns {
    () => {
        "kind, name, status, message, observed_generation, attempts, last_error, last_transition"
    };
}

/// One tenant's resources (every full pass).
pub(super) const LIST_RESOURCES: &str = concat!(
    "SELECT ",
    resource_columns!(),
    " FROM resources WHERE tenant_id = $1 ORDER BY created_at, kind, name"
);

/// One resource (every status a pass records).
pub(super) const GET_RESOURCE: &str = concat!(
    "SELECT ",
    resource_columns!(),
    " FROM resources WHERE tenant_id = $1 AND kind = $2 AND name = $3"
);

/// The resources of the tenants with ids from `$1` to `$2`: those of a page
/// of tenants, read through the primary key's leading column.
pub(super) const RESOURCES_IN_RANGE: &str = concat!(
    "SELECT tenant_id, ",
    resource_columns!(),
    " FROM resources WHERE tenant_id >= $1 AND tenant_id <= $2 \
     ORDER BY tenant_id, created_at, kind, name"
);

/// The resources of Failed tenants (the service's resync reads their
/// backoff), without reading anyone else's.
pub(super) const RESOURCES_OF_FAILED: &str = concat!(
    "SELECT tenant_id, ",
    resource_columns!(),
    " FROM resources WHERE tenant_id IN (SELECT id FROM tenants WHERE phase = 'Failed') \
     ORDER BY tenant_id, created_at, kind, name"
);

fn resource_from_row(row: &AnyRow) -> Result<ResourceRecord, StoreError> {
    Ok(ResourceRecord {
        kind: get(row, "kind")?,
        name: get(row, "name")?,
        status: get_parsed(row, "status")?,
        message: get(row, "message")?,
        observed_generation: get(row, "observed_generation")?,
        attempts: get(row, "attempts")?,
        last_error: get(row, "last_error")?,
        last_transition: get_time(row, "last_transition")?,
    })
}

impl Store {
    /// The tenant's resources, in a stable order: by when each was first
    /// recorded, then kind, then name. Empty for an unknown tenant.
    pub async fn list_resources(&self, id: &TenantId) -> Result<Vec<ResourceRecord>, StoreError> {
        self.fetch_all(
            sqlx::query(LIST_RESOURCES).bind(id.as_str()),
            resource_from_row,
        )
        .await
    }

    /// The resources of every tenant whose id is from `first` to `last`
    /// (both included), grouped by tenant in the order of
    /// [`Store::list_resources`]: one query for a page of tenants.
    pub async fn resources_in_range(
        &self,
        first: &TenantId,
        last: &TenantId,
    ) -> Result<HashMap<TenantId, Vec<ResourceRecord>>, StoreError> {
        self.grouped_resources(
            sqlx::query(RESOURCES_IN_RANGE)
                .bind(first.as_str())
                .bind(last.as_str()),
        )
        .await
    }

    /// The resources of every Failed tenant, grouped by tenant: what the
    /// service's resync needs to time their retries, in one query that
    /// reads no settled tenant's rows.
    pub async fn resources_of_failed_tenants(
        &self,
    ) -> Result<HashMap<TenantId, Vec<ResourceRecord>>, StoreError> {
        self.grouped_resources(sqlx::query(RESOURCES_OF_FAILED))
            .await
    }

    async fn grouped_resources(
        &self,
        query: super::Query<'_>,
    ) -> Result<HashMap<TenantId, Vec<ResourceRecord>>, StoreError> {
        let rows = self
            .fetch_all(query, |row| {
                Ok((
                    get_parsed::<TenantId>(row, "tenant_id")?,
                    resource_from_row(row)?,
                ))
            })
            .await?;
        let mut grouped: HashMap<TenantId, Vec<ResourceRecord>> = HashMap::new();
        for (tenant, resource) in rows {
            grouped.entry(tenant).or_default().push(resource);
        }
        Ok(grouped)
    }

    pub async fn get_resource(
        &self,
        id: &TenantId,
        kind: &str,
        name: &str,
    ) -> Result<Option<ResourceRecord>, StoreError> {
        self.fetch_optional(
            sqlx::query(GET_RESOURCE)
                .bind(id.as_str())
                .bind(kind)
                .bind(name),
            resource_from_row,
        )
        .await
    }

    /// Counts an attempt at ensuring a resource for tenant `generation`,
    /// creating the row as `Pending` if it is new. The count starts again
    /// at 1 when the generation differs from the previous attempt's, so
    /// `attempts` is the number of tries at the current desired state.
    /// Returns the new count. Unknown tenant: [`StoreError::TenantNotFound`].
    pub async fn record_attempt(
        &self,
        id: &TenantId,
        kind: &str,
        name: &str,
        generation: i64,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO resources \
               (tenant_id, kind, name, status, message, observed_generation, attempts, \
                attempt_generation, last_error, last_transition, created_at) \
             VALUES ($1, $2, $3, 'Pending', NULL, 0, 1, $4, NULL, $5, $5) \
             ON CONFLICT (tenant_id, kind, name) DO UPDATE SET \
               attempts = CASE WHEN resources.attempt_generation = excluded.attempt_generation \
                               THEN resources.attempts + 1 ELSE 1 END, \
               attempt_generation = excluded.attempt_generation \
             RETURNING attempts",
        )
        .bind(id.as_str())
        .bind(kind)
        .bind(name)
        .bind(generation)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| tenant_write_err(id, self.db_err(e)))?;
        get(&row, "attempts")
    }

    /// Sets a resource's condition, creating the row if needed. Values are
    /// stored exactly as given (pass the previous `last_error` to keep it).
    /// `last_transition` moves only when `status` changes. Returns whether
    /// anything changed; when nothing would, nothing is written.
    /// Unknown tenant: [`StoreError::TenantNotFound`].
    #[allow(clippy::too_many_arguments)]
    pub async fn set_resource_status(
        &self,
        id: &TenantId,
        kind: &str,
        name: &str,
        status: ResourceStatus,
        message: Option<&str>,
        last_error: Option<&str>,
        observed_generation: i64,
    ) -> Result<bool, StoreError> {
        if let Some(current) = self.get_resource(id, kind, name).await? {
            if current.status == status
                && current.message.as_deref() == message
                && current.last_error.as_deref() == last_error
                && current.observed_generation == observed_generation
            {
                return Ok(false);
            }
        }
        self.execute(
            sqlx::query(
                "INSERT INTO resources \
                   (tenant_id, kind, name, status, message, observed_generation, attempts, \
                    attempt_generation, last_error, last_transition, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 0, 0, $7, $8, $8) \
                 ON CONFLICT (tenant_id, kind, name) DO UPDATE SET \
                   last_transition = CASE WHEN resources.status = excluded.status \
                                          THEN resources.last_transition \
                                          ELSE excluded.last_transition END, \
                   status = excluded.status, \
                   message = excluded.message, \
                   observed_generation = excluded.observed_generation, \
                   last_error = excluded.last_error",
            )
            .bind(id.as_str())
            .bind(kind)
            .bind(name)
            .bind(status.as_str())
            .bind(message)
            .bind(observed_generation)
            .bind(last_error)
            .bind(now_ms()),
        )
        .await
        .map_err(|e| tenant_write_err(id, e))?;
        Ok(true)
    }

    /// Removes one resource row. Returns whether it existed.
    pub async fn delete_resource(
        &self,
        id: &TenantId,
        kind: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        let deleted = self
            .execute(
                sqlx::query(
                    "DELETE FROM resources WHERE tenant_id = $1 AND kind = $2 AND name = $3",
                )
                .bind(id.as_str())
                .bind(kind)
                .bind(name),
            )
            .await?;
        Ok(deleted > 0)
    }
}
