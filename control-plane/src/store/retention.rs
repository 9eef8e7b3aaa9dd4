//! Pruning what is only kept for a while: finished OAuth states, webhook
//! events and deliveries past Xero's delivery window, expired connect links
//! and leases nobody holds any more, and — after a longer retention — the
//! runs that ended, the audit log and the query audit. A run still queued or
//! running is never pruned, however old. Runs and the audit logs outlive
//! their tenant's teardown until their own retention is over.
//!
//! The long-kept tables are pruned in batches of [`PRUNE_BATCH`] rows, each
//! found through an index on its age (migration 0008), so the first prune of
//! a large store neither holds a long lock nor reads the table through.

use std::time::Duration;

use super::{now_ms, Store, StoreError};

/// Rows of runs or audit deleted per statement, as SQL: a literal, not a
/// parameter, so that PostgreSQL's generic plan knows the batch is small and
/// finds it through the index on age (with a parameter it guesses a tenth of
/// the table and scans it).
macro_rules! prune_batch {
    () => {
        "1000"
    };
}

/// [`prune_batch!`] as a number (tests/scale.rs prunes more than two
/// batches, which fails if the two differ).
pub const PRUNE_BATCH: i64 = 1_000;

/// Ended runs past their retention (`$1` cutoff ms), a batch at a time.
pub(super) const PRUNE_RUNS: &str = concat!(
    "DELETE FROM runs WHERE id IN \
     (SELECT id FROM runs WHERE finished_at < $1 ORDER BY finished_at LIMIT ",
    prune_batch!(),
    ")"
);

/// Audit-log lines past their retention.
pub(super) const PRUNE_AUDIT: &str = concat!(
    "DELETE FROM audit_log WHERE id IN \
     (SELECT id FROM audit_log WHERE at < $1 ORDER BY at LIMIT ",
    prune_batch!(),
    ")"
);

/// Questions of the query audit past their retention.
pub(super) const PRUNE_QUERY_AUDIT: &str = concat!(
    "DELETE FROM query_audit WHERE id IN \
     (SELECT id FROM query_audit WHERE created_at < $1 ORDER BY created_at LIMIT ",
    prune_batch!(),
    ")"
);

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
    /// Runs after they ended (queued and running runs are kept).
    pub runs: Duration,
    /// Audit-log lines after they were written.
    pub audit_log: Duration,
    /// The query audit's questions after they were asked.
    pub query_audit: Duration,
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
            // Hourly syncs of 10,000 tenants end 240,000 runs a day: 90
            // days keeps about 22 million, each a few hundred bytes.
            runs: Duration::from_secs(90 * DAY),
            // Who did what is kept for a year (and the questions asked).
            audit_log: Duration::from_secs(365 * DAY),
            query_audit: Duration::from_secs(365 * DAY),
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
    pub runs: u64,
    pub audit_log: u64,
    pub query_audit: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.oauth_states
            + self.webhook_events
            + self.webhook_deliveries
            + self.connect_links
            + self.leases
            + self.runs
            + self.audit_log
            + self.query_audit
    }
}

fn cutoff(now: i64, keep: Duration) -> i64 {
    now.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX))
}

impl Store {
    /// Deletes every record past its retention.
    pub async fn prune(&self, keep: &Retention) -> Result<Pruned, StoreError> {
        self.prune_at(keep, now_ms()).await
    }

    /// [`Store::prune`] as if it were `now` (ms since the epoch).
    pub async fn prune_at(&self, keep: &Retention, now: i64) -> Result<Pruned, StoreError> {
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
            runs: self
                .prune_in_batches(PRUNE_RUNS, cutoff(now, keep.runs))
                .await?,
            audit_log: self
                .prune_in_batches(PRUNE_AUDIT, cutoff(now, keep.audit_log))
                .await?,
            query_audit: self
                .prune_in_batches(PRUNE_QUERY_AUDIT, cutoff(now, keep.query_audit))
                .await?,
        })
    }

    /// Runs a batched delete (`$1` cutoff) until a batch comes back short;
    /// returns the rows deleted.
    async fn prune_in_batches(&self, sql: &'static str, before: i64) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let deleted = self.execute(sqlx::query(sql).bind(before)).await?;
            total += deleted;
            if deleted < PRUNE_BATCH as u64 {
                return Ok(total);
            }
        }
    }
}
