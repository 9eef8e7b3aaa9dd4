//! Leases: named, expiring locks that cooperating processes take in turn.

use std::time::Duration;

use super::{ms_after, now_ms, Store, StoreError};

/// The polling interval of [`Store::acquire_lease_waiting`].
const LEASE_POLL: Duration = Duration::from_millis(50);

impl Store {
    /// Takes the lease `name` for `holder` for `ttl`, if it is free, expired,
    /// or already held by `holder` (which renews it). Returns whether
    /// `holder` now holds it. Expiry uses this process's clock, so clocks of
    /// cooperating machines must agree to well within the ttl.
    pub async fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let won = self
            .execute(
                sqlx::query(
                    "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET \
                       holder = excluded.holder, expires_at = excluded.expires_at \
                     WHERE leases.expires_at <= $4 OR leases.holder = excluded.holder",
                )
                .bind(name)
                .bind(holder)
                .bind(ms_after(now, ttl))
                .bind(now),
            )
            .await?;
        Ok(won > 0)
    }

    /// Releases the lease if `holder` holds it. Returns whether it did.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        let released = self
            .execute(
                sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                    .bind(name)
                    .bind(holder),
            )
            .await?;
        Ok(released > 0)
    }

    /// [`Store::try_acquire_lease`], retried every 50 ms until it succeeds or
    /// `wait` has passed. Returns whether `holder` got the lease.
    pub async fn acquire_lease_waiting(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<bool, StoreError> {
        // Elapsed time, not `now + wait`, which panics past an Instant's range.
        let started = tokio::time::Instant::now();
        loop {
            if self.try_acquire_lease(name, holder, ttl).await? {
                return Ok(true);
            }
            let waited = started.elapsed();
            if waited >= wait {
                return Ok(false);
            }
            tokio::time::sleep(LEASE_POLL.min(wait - waited)).await;
        }
    }
}
