//! Connect links: the single-use, expiring links that alone start a consent.
//! Only a link's SHA-256 is stored; the link itself is shown once.

use std::time::Duration;

use cloud::TenantId;
use time::OffsetDateTime;

use super::{get, get_parsed, get_time, get_time_opt, ms_after, now_ms, Store, StoreError};

/// A connect link as stored (without the link itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectLinkRecord {
    pub tenant: TenantId,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// When a consent started from it completed.
    pub used_at: Option<OffsetDateTime>,
}

impl ConnectLinkRecord {
    /// Whether a consent may still start from it.
    pub fn is_usable(&self, now: OffsetDateTime) -> bool {
        self.used_at.is_none() && self.expires_at > now
    }
}

impl Store {
    /// Records a new link for `tenant`, valid for `ttl`; returns its expiry.
    pub async fn create_connect_link(
        &self,
        token_hash: &str,
        tenant: &TenantId,
        created_by: &str,
        ttl: Duration,
    ) -> Result<OffsetDateTime, StoreError> {
        let now = now_ms();
        let expires = ms_after(now, ttl);
        self.execute(
            sqlx::query(
                "INSERT INTO connect_links (token_hash, tenant_id, created_by, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(token_hash)
            .bind(tenant.as_str())
            .bind(created_by)
            .bind(now)
            .bind(expires),
        )
        .await?;
        super::stored_time("connect_links.expires_at", expires)
    }

    /// The link with this hash, used or not, expired or not.
    pub async fn get_connect_link(
        &self,
        token_hash: &str,
    ) -> Result<Option<ConnectLinkRecord>, StoreError> {
        self.fetch_optional(
            sqlx::query(
                "SELECT tenant_id, created_by, created_at, expires_at, used_at \
                 FROM connect_links WHERE token_hash = $1",
            )
            .bind(token_hash),
            |row| {
                Ok(ConnectLinkRecord {
                    tenant: get_parsed(row, "tenant_id")?,
                    created_by: get(row, "created_by")?,
                    created_at: get_time(row, "created_at")?,
                    expires_at: get_time(row, "expires_at")?,
                    used_at: get_time_opt(row, "used_at")?,
                })
            },
        )
        .await
    }

    /// Marks the link used, once: true for the one caller that used it while
    /// it was unused and unexpired (atomic, so two consents racing on one link
    /// cannot both complete).
    pub async fn use_connect_link(&self, token_hash: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        let changed = self
            .execute(
                sqlx::query(
                    "UPDATE connect_links SET used_at = $2 \
                     WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
                )
                .bind(token_hash)
                .bind(now),
            )
            .await?;
        Ok(changed == 1)
    }

    /// Consents started and not yet finished or expired: for the link with
    /// this hash, or (with `None`) in all.
    pub async fn count_pending_consents(&self, link_hash: Option<&str>) -> Result<i64, StoreError> {
        let now = now_ms();
        let query = match link_hash {
            Some(hash) => sqlx::query(
                "SELECT COUNT(*) AS n FROM oauth_states \
                 WHERE link_hash = $1 AND consumed_at IS NULL AND expires_at > $2",
            )
            .bind(hash)
            .bind(now),
            None => sqlx::query(
                "SELECT COUNT(*) AS n FROM oauth_states \
                 WHERE consumed_at IS NULL AND expires_at > $1",
            )
            .bind(now),
        };
        Ok(self
            .fetch_optional(query, |row| get::<i64>(row, "n"))
            .await?
            .unwrap_or(0))
    }

    /// Forgets the Xero organisations of `tenant` (an operator's
    /// `tenants disconnect`), so that a consent for another one is accepted.
    pub async fn clear_connections(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        self.execute(
            sqlx::query("DELETE FROM xero_connections WHERE tenant_id = $1").bind(tenant.as_str()),
        )
        .await
    }
}
