//! Pruning what is only kept for a while: finished OAuth states, webhook
//! events and deliveries past Xero's delivery window, expired connect links
//! and leases nobody holds any more. The audit log, runs and the query audit
//! have no retention: they are kept, past their tenant's teardown too.

use std::time::Duration;

use super::{now_ms, Store, StoreError};

/// How long each kind of record is kept once it no longer matters.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// OAuth states after they expired.
    pub oauth_states: Duration,
    /// Webhook events after they were received.
    pub webhook_events: Duration,
    /// Digests of webhook deliveries: longer than Xero keeps retrying one.
    pub webhook_deliveries: Duration,
    /// Connect links after they expired.
    pub connect_links: Duration,
    /// Leases after they expired.
    pub leases: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        Retention {
            oauth_states: Duration::from_secs(DAY),
            webhook_events: Duration::from_secs(30 * DAY),
            webhook_deliveries: Duration::from_secs(3 * DAY),
            connect_links: Duration::from_secs(30 * DAY),
            leases: Duration::from_secs(DAY),
        }
    }
}

/// What one pruning pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    pub oauth_states: u64,
    pub webhook_events: u64,
    pub webhook_deliveries: u64,
    pub connect_links: u64,
    pub leases: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.oauth_states
            + self.webhook_events
            + self.webhook_deliveries
            + self.connect_links
            + self.leases
    }
}

fn cutoff(now: i64, keep: Duration) -> i64 {
    now.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX))
}

impl Store {
    /// Deletes every record past its retention.
    pub async fn prune(&self, keep: &Retention) -> Result<Pruned, StoreError> {
        let now = now_ms();
        let delete = |sql: &'static str, before: i64| async move {
            self.execute(sqlx::query(sql).bind(before)).await
        };
        Ok(Pruned {
            oauth_states: delete(
                "DELETE FROM oauth_states WHERE expires_at < $1",
                cutoff(now, keep.oauth_states),
            )
            .await?,
            webhook_events: delete(
                "DELETE FROM webhook_events WHERE received_at < $1",
                cutoff(now, keep.webhook_events),
            )
            .await?,
            webhook_deliveries: delete(
                "DELETE FROM webhook_deliveries WHERE received_at < $1",
                cutoff(now, keep.webhook_deliveries),
            )
            .await?,
            connect_links: delete(
                "DELETE FROM connect_links WHERE expires_at < $1",
                cutoff(now, keep.connect_links),
            )
            .await?,
            leases: delete(
                "DELETE FROM leases WHERE expires_at < $1",
                cutoff(now, keep.leases),
            )
            .await?,
        })
    }
}
