//! The audit log: who did what, to which tenant, when.

use cloud::TenantId;
use sqlx::any::AnyRow;

use super::{get, get_time, now_ms, AuditEntry, Store, StoreError};

fn audit_from_row(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    let tenant: Option<String> = get(row, "tenant_id")?;
    let detail: String = get(row, "detail")?;
    Ok(AuditEntry {
        id: get(row, "id")?,
        at: get_time(row, "at")?,
        actor: get(row, "actor")?,
        action: get(row, "action")?,
        tenant: tenant
            .map(|t| TenantId::parse(&t))
            .transpose()
            .map_err(|e| StoreError::InvalidData {
                column: "audit_log.tenant_id",
                reason: e.to_string(),
            })?,
        detail: serde_json::from_str(&detail).map_err(|e| StoreError::InvalidData {
            column: "audit_log.detail",
            reason: e.to_string(),
        })?,
    })
}

impl Store {
    /// Appends one line to the audit log. `detail` is stored as JSON text.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        tenant: Option<&TenantId>,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let detail = serde_json::to_string(detail).map_err(|e| StoreError::InvalidData {
            column: "audit_log.detail",
            reason: e.to_string(),
        })?;
        self.execute(
            sqlx::query(
                "INSERT INTO audit_log (at, actor, action, tenant_id, detail) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(now_ms())
            .bind(actor)
            .bind(action)
            .bind(tenant.map(TenantId::as_str))
            .bind(detail),
        )
        .await?;
        Ok(())
    }

    /// The latest `limit` audit entries, newest first; only those about
    /// `tenant` when one is given.
    pub async fn list_audit(
        &self,
        tenant: Option<&TenantId>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = limit.max(0);
        let query = match tenant {
            Some(t) => sqlx::query(
                "SELECT id, at, actor, action, tenant_id, detail FROM audit_log \
                 WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(t.as_str())
            .bind(limit),
            None => sqlx::query(
                "SELECT id, at, actor, action, tenant_id, detail FROM audit_log \
                 ORDER BY id DESC LIMIT $1",
            )
            .bind(limit),
        };
        self.fetch_all(query, audit_from_row).await
    }
}
