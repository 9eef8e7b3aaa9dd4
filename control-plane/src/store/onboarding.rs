//! Onboarding state: single-use OAuth states, the Xero organisations each
//! tenant connected, and webhook events with the sync requests they raise.

use std::collections::HashMap;
use std::time::Duration;

use cloud::TenantId;

use super::tenants::{tenant_columns, tenant_from_row};
use super::{get, get_bool, get_parsed, ms_after, now_ms, Store, StoreError, TenantRecord};

/// The tenants a webhook marked for a sync, oldest mark first.
pub(super) const SYNC_REQUESTED: &str = "SELECT id, schedule, next_run_at FROM tenants \
     WHERE sync_requested_at IS NOT NULL ORDER BY sync_requested_at, id";

pub(super) const NEEDS_CONSENT: &str = "SELECT needs_consent FROM tenants WHERE id = $1";

/// The token keep-alive's scan, in one query: wanted tenants that have a
/// Xero organisation connected and whose refresh token was not refused.
pub(super) const KEEPALIVE_TENANTS: &str = concat!(
    "SELECT ",
    tenant_columns!(),
    " FROM tenants t WHERE t.desired = 'present' AND NOT t.needs_consent \
     AND EXISTS (SELECT 1 FROM xero_connections c WHERE c.tenant_id = t.id) \
     ORDER BY t.id"
);

/// The connections of the tenants with ids from `$1` to `$2` (a page).
pub(super) const CONNECTIONS_IN_RANGE: &str = "SELECT tenant_id, xero_tenant_id \
     FROM xero_connections WHERE tenant_id >= $1 AND tenant_id <= $2 \
     ORDER BY tenant_id, xero_tenant_id";

/// A consent in flight, as the callback finds it.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingConsent {
    pub tenant: TenantId,
    /// The PKCE verifier: a secret until the code is exchanged.
    pub pkce_verifier: String,
    /// The hash of the connect link the consent started from.
    pub link_hash: Option<String>,
}

impl std::fmt::Debug for PendingConsent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingConsent")
            .field("tenant", &self.tenant)
            .field("pkce_verifier", &"<redacted>")
            .finish()
    }
}

/// One change notification as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEventRecord {
    pub xero_tenant_id: String,
    pub event_category: String,
    pub event_type: String,
    pub resource_id: String,
    pub event_date: String,
}

impl Store {
    /// Stores a new consent's `state` with its PKCE verifier for `ttl`, and
    /// the hash of the connect link it started from.
    pub async fn put_oauth_state(
        &self,
        state: &str,
        tenant: &TenantId,
        pkce_verifier: &str,
        ttl: Duration,
        link_hash: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        self.execute(
            sqlx::query(
                "INSERT INTO oauth_states \
                 (state, tenant_id, pkce_verifier, created_at, expires_at, link_hash) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(state)
            .bind(tenant.as_str())
            .bind(pkce_verifier)
            .bind(now)
            .bind(ms_after(now, ttl))
            .bind(link_hash),
        )
        .await?;
        // Expired states are useless; drop them while we are here.
        self.execute(
            sqlx::query("DELETE FROM oauth_states WHERE expires_at < $1")
                .bind(now - 24 * 3600 * 1000),
        )
        .await?;
        Ok(())
    }

    /// Consumes `state`: returns its consent once, while unexpired; `None` for an
    /// unknown, expired or already used state. Atomic, so a replay racing the
    /// first use also gets `None`.
    pub async fn take_oauth_state(
        &self,
        state: &str,
    ) -> Result<Option<PendingConsent>, StoreError> {
        self.fetch_optional(
            sqlx::query(
                "UPDATE oauth_states SET consumed_at = $2 \
                 WHERE state = $1 AND consumed_at IS NULL AND expires_at > $2 \
                 RETURNING tenant_id, pkce_verifier, link_hash",
            )
            .bind(state)
            .bind(now_ms()),
            |row| {
                let tenant: String = get(row, "tenant_id")?;
                let tenant = TenantId::parse(&tenant).map_err(|e| StoreError::InvalidData {
                    column: "oauth_states.tenant_id",
                    reason: e.to_string(),
                })?;
                Ok(PendingConsent {
                    tenant,
                    pkce_verifier: get(row, "pkce_verifier")?,
                    link_hash: get(row, "link_hash")?,
                })
            },
        )
        .await
    }

    /// Records the organisations a consent granted to `tenant` (idempotent)
    /// and clears its need for consent.
    pub async fn record_connections(
        &self,
        tenant: &TenantId,
        organisations: &[(String, Option<String>)],
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(|e| self.db_err(e))?;
        for (org, name) in organisations {
            self.execute_in(
                &mut *tx,
                sqlx::query(
                    "INSERT INTO xero_connections (tenant_id, xero_tenant_id, tenant_name, connected_at) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (tenant_id, xero_tenant_id) DO UPDATE SET tenant_name = excluded.tenant_name",
                )
                .bind(tenant.as_str())
                .bind(org)
                .bind(name.as_deref())
                .bind(now),
            )
            .await?;
        }
        self.execute_in(
            &mut *tx,
            sqlx::query("UPDATE tenants SET needs_consent = FALSE WHERE id = $1 AND needs_consent")
                .bind(tenant.as_str()),
        )
        .await?;
        tx.commit().await.map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// The Xero organisation ids connected to `tenant`.
    pub async fn connections_of(&self, tenant: &TenantId) -> Result<Vec<String>, StoreError> {
        self.fetch_all(
            sqlx::query(
                "SELECT xero_tenant_id FROM xero_connections WHERE tenant_id = $1 ORDER BY xero_tenant_id",
            )
            .bind(tenant.as_str()),
            |row| get(row, "xero_tenant_id"),
        )
        .await
    }

    /// The tenants whose Xero token sets the keep-alive looks after: wanted,
    /// connected to at least one organisation, and not needing consent, by
    /// id. One query for every tenant (not two reads per tenant).
    pub async fn tenants_to_keep_alive(&self) -> Result<Vec<TenantRecord>, StoreError> {
        self.fetch_all(sqlx::query(KEEPALIVE_TENANTS), tenant_from_row)
            .await
    }

    /// The organisations connected to each tenant whose id is from `first`
    /// to `last` (both included): one query for a page of tenants.
    pub async fn connections_in_range(
        &self,
        first: &TenantId,
        last: &TenantId,
    ) -> Result<HashMap<TenantId, Vec<String>>, StoreError> {
        let rows = self
            .fetch_all(
                sqlx::query(CONNECTIONS_IN_RANGE)
                    .bind(first.as_str())
                    .bind(last.as_str()),
                |row| {
                    Ok((
                        get_parsed::<TenantId>(row, "tenant_id")?,
                        get::<String>(row, "xero_tenant_id")?,
                    ))
                },
            )
            .await?;
        let mut grouped: HashMap<TenantId, Vec<String>> = HashMap::new();
        for (tenant, organisation) in rows {
            grouped.entry(tenant).or_default().push(organisation);
        }
        Ok(grouped)
    }

    /// The tenants connected to a Xero organisation.
    pub async fn tenants_of_organisation(
        &self,
        xero_tenant_id: &str,
    ) -> Result<Vec<TenantId>, StoreError> {
        self.fetch_all(
            sqlx::query(
                "SELECT tenant_id FROM xero_connections WHERE xero_tenant_id = $1 ORDER BY tenant_id",
            )
            .bind(xero_tenant_id),
            |row| {
                let id: String = get(row, "tenant_id")?;
                TenantId::parse(&id).map_err(|e| StoreError::InvalidData {
                    column: "xero_connections.tenant_id",
                    reason: e.to_string(),
                })
            },
        )
        .await
    }

    /// Records webhook events and marks every tenant connected to their
    /// organisations for an incremental sync. Returns the tenants marked.
    pub async fn record_webhook_events(
        &self,
        events: &[WebhookEventRecord],
    ) -> Result<Vec<TenantId>, StoreError> {
        Ok(self
            .record_webhook_delivery(None, events)
            .await?
            .unwrap_or_default())
    }

    /// [`Store::record_webhook_events`] for one delivery identified by
    /// `digest` (the SHA-256 of its signed body): `None`, and nothing
    /// recorded, when that delivery was recorded before (a replay). The
    /// digest and the events are recorded in one transaction, so a delivery
    /// that failed to record is taken when Xero sends it again.
    pub async fn record_webhook_delivery(
        &self,
        digest: Option<&str>,
        events: &[WebhookEventRecord],
    ) -> Result<Option<Vec<TenantId>>, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(|e| self.db_err(e))?;
        if let Some(digest) = digest {
            let first = self
                .execute_in(
                    &mut *tx,
                    sqlx::query(
                        "INSERT INTO webhook_deliveries (digest, received_at) VALUES ($1, $2) \
                         ON CONFLICT (digest) DO NOTHING",
                    )
                    .bind(digest)
                    .bind(now),
                )
                .await?;
            if first == 0 {
                return Ok(None);
            }
        }
        for e in events {
            self.execute_in(
                &mut *tx,
                sqlx::query(
                    "INSERT INTO webhook_events \
                       (received_at, xero_tenant_id, event_category, event_type, resource_id, event_date) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(now)
                .bind(&e.xero_tenant_id)
                .bind(&e.event_category)
                .bind(&e.event_type)
                .bind(&e.resource_id)
                .bind(&e.event_date),
            )
            .await?;
            self.execute_in(
                &mut *tx,
                sqlx::query(
                    "UPDATE tenants SET sync_requested_at = $1 \
                     WHERE sync_requested_at IS NULL \
                       AND id IN (SELECT tenant_id FROM xero_connections WHERE xero_tenant_id = $2)",
                )
                .bind(now)
                .bind(&e.xero_tenant_id),
            )
            .await?;
        }
        tx.commit().await.map_err(|e| self.db_err(e))?;
        let mut marked = Vec::new();
        for e in events {
            for t in self.tenants_of_organisation(&e.xero_tenant_id).await? {
                if !marked.contains(&t) {
                    marked.push(t);
                }
            }
        }
        Ok(Some(marked))
    }

    /// Tenants with an incremental sync requested (by a webhook), oldest first.
    pub async fn tenants_with_sync_requested(&self) -> Result<Vec<TenantId>, StoreError> {
        self.fetch_all(sqlx::query(SYNC_REQUESTED), |row| get_parsed(row, "id"))
            .await
    }

    /// The same tenants with their schedules, as the scheduler tick takes them.
    pub async fn due_by_webhook(&self) -> Result<Vec<super::DueTenant>, StoreError> {
        self.fetch_all(sqlx::query(SYNC_REQUESTED), |row| {
            Ok(super::DueTenant {
                tenant: get_parsed(row, "id")?,
                schedule: get(row, "schedule")?,
                next_run_at: get(row, "next_run_at")?,
            })
        })
        .await
    }

    /// Marks a tenant whose refresh token is dead: a person must consent again.
    pub async fn mark_needs_consent(&self, tenant: &TenantId) -> Result<(), StoreError> {
        self.execute(
            sqlx::query(
                "UPDATE tenants SET needs_consent = TRUE, updated_at = $2 WHERE id = $1 AND NOT needs_consent",
            )
            .bind(tenant.as_str())
            .bind(now_ms()),
        )
        .await?;
        Ok(())
    }

    pub async fn needs_consent(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        self.fetch_optional(sqlx::query(NEEDS_CONSENT).bind(tenant.as_str()), |row| {
            get_bool(row, "needs_consent")
        })
        .await?
        .ok_or_else(|| StoreError::TenantNotFound(tenant.clone()))
    }
}
