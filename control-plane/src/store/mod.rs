//! The control plane's state store: tenants (desired state, generation,
//! phase), their resources and conditions, the audit log and leases.
//!
//! One code path serves both backends through `sqlx::any`: SQLite by default
//! (`sqlite://<path>`, a file created if missing) and PostgreSQL in production
//! (`postgres://…`). Every statement uses `$1`-style placeholders, which both
//! accept, and every timestamp is stored as unix milliseconds in a 64-bit
//! integer, since the Any driver has no date types. Migrations for each backend
//! live in `control-plane/migrations/{sqlite,postgres}` and run on open.
//!
//! Writes are race-safe between processes: creation is
//! `INSERT … ON CONFLICT DO NOTHING` followed by a read, status updates are
//! single upserts, and leases are conditional upserts whose row count says who
//! won. Calls that would change nothing issue no write at all, so a no-op
//! reconcile costs only reads.
//!
//! Each entity's methods live in a module of their own (`tenants`, `cells`,
//! `resources`, `runs`, `onboarding`, `audit`, `leases`, `api_tokens`,
//! `query_audit`, `retention`; `opening` for connecting and migrating;
//! `hot` lists the queries of the hot paths for the EXPLAIN test); they run
//! statements through the private `execute`, `fetch_optional` and
//! `fetch_all`, which map errors the same way everywhere, and decode rows
//! with the getters below.

mod api_tokens;
mod audit;
mod cells;
mod connect_links;
mod error;
mod hot;
mod leases;
mod onboarding;
mod opening;
mod query_audit;
mod resources;
mod retention;
mod runs;
mod tenants;
#[cfg(test)]
mod tests;
mod types;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use cloud::TenantId;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AnyPool, Decode, Executor, Row, Type};
use time::OffsetDateTime;

pub use api_tokens::{ApiTokenRecord, Revocation, TOKEN_PREFIX};
pub use cells::{CellRecord, NewCell, WithoutCells};
pub use connect_links::ConnectLinkRecord;
pub use error::StoreError;
pub use hot::{HotQuery, Sample, HOT_QUERIES};
pub use onboarding::{PendingConsent, WebhookEventRecord};
pub use opening::{redact_url, sqlite_url};
pub use query_audit::{ConversationTurn, NewQueryAudit, QueryAuditRecord, QueryOutcome};
pub use retention::{Pruned, Retention, PRUNE_BATCH};
pub use runs::{DueCursor, DuePage, DueTenant, RunCommand, RunRecord, RunStatus, RunTrigger};
pub use tenants::{ListedTenant, TenantPage};
pub use types::{
    AuditEntry, CellState, Desired, ParseEnumError, Phase, ResourceRecord, ResourceStatus,
    TenantRecord,
};

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A handle on the state store. Cheap to clone; clones share one pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The file, or the URL with its password masked; for messages.
    location: String,
    /// The SQLite file, to name it in corruption errors.
    sqlite_path: Option<PathBuf>,
}

// ----- running statements ------------------------------------------------------

/// A statement with its `$n` parameters bound.
type Query<'q> = sqlx::query::Query<'q, Any, AnyArguments<'q>>;

impl Store {
    /// Runs a statement on the pool and returns how many rows it affected.
    async fn execute(&self, query: Query<'_>) -> Result<u64, StoreError> {
        self.execute_in(&self.pool, query).await
    }

    /// [`Store::execute`] on a given connection: `&mut *tx` in a transaction.
    async fn execute_in<'c>(
        &self,
        on: impl Executor<'c, Database = Any>,
        query: Query<'_>,
    ) -> Result<u64, StoreError> {
        query
            .execute(on)
            .await
            .map(|done| done.rows_affected())
            .map_err(|e| self.db_err(e))
    }

    /// Runs a query on the pool and decodes its first row, if any, with `map`.
    async fn fetch_optional<T>(
        &self,
        query: Query<'_>,
        map: impl FnOnce(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let row = query
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db_err(e))?;
        row.as_ref().map(map).transpose()
    }

    /// Runs a query on the pool and decodes every row with `map`.
    async fn fetch_all<T>(
        &self,
        query: Query<'_>,
        map: impl FnMut(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db_err(e))?;
        rows.iter().map(map).collect()
    }

    /// Wraps a database error, recognising a corrupt SQLite file.
    fn db_err(&self, e: sqlx::Error) -> StoreError {
        if let Some(path) = &self.sqlite_path {
            if let Some(reason) = error::sqlite_corruption(&e) {
                return StoreError::NotAStateStore {
                    path: path.clone(),
                    reason,
                };
            }
        }
        StoreError::Database(e)
    }
}

/// Reads a foreign-key violation on a write of a tenant's row (a resource,
/// a run) as "no such tenant"; any other error stays as it is.
fn tenant_write_err(id: &TenantId, e: StoreError) -> StoreError {
    match &e {
        StoreError::Database(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
            StoreError::TenantNotFound(id.clone())
        }
        _ => e,
    }
}

/// The stored form of a secret shown once (connect links, API tokens): its
/// SHA-256 in hex. A lookup by it needs no constant-time comparison.
pub(crate) fn secret_hash(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

// ----- rows --------------------------------------------------------------------

fn get<'r, T>(row: &'r AnyRow, column: &'static str) -> Result<T, StoreError>
where
    T: Decode<'r, Any> + Type<Any>,
{
    row.try_get(column).map_err(StoreError::Database)
}

/// A boolean: INTEGER 0/1 on SQLite, BOOLEAN on PostgreSQL.
fn get_bool(row: &AnyRow, column: &'static str) -> Result<bool, StoreError> {
    match row.try_get::<i64, _>(column) {
        Ok(v) => Ok(v != 0),
        Err(_) => get(row, column),
    }
}

fn get_parsed<T: FromStr>(row: &AnyRow, column: &'static str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    let text: String = get(row, column)?;
    text.parse().map_err(|e: T::Err| StoreError::InvalidData {
        column,
        reason: e.to_string(),
    })
}

fn get_time(row: &AnyRow, column: &'static str) -> Result<OffsetDateTime, StoreError> {
    stored_time(column, get(row, column)?)
}

/// [`get_time`] for a nullable column.
fn get_time_opt(row: &AnyRow, column: &'static str) -> Result<Option<OffsetDateTime>, StoreError> {
    let ms: Option<i64> = get(row, column)?;
    ms.map(|ms| stored_time(column, ms)).transpose()
}

// ----- timestamps: unix milliseconds in a 64-bit integer ------------------------

fn now_ms() -> i64 {
    ms_from_time(OffsetDateTime::now_utc())
}

/// `ttl` after `now` (in ms), saturating: an expiry time to store.
fn ms_after(now: i64, ttl: Duration) -> i64 {
    now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

fn ms_from_time(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn time_from_ms(ms: i64) -> Result<OffsetDateTime, String> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| format!("{ms} ms since the epoch is out of range: {e}"))
}

/// A stored time read from `column`; out of range is invalid data there.
fn stored_time(column: &'static str, ms: i64) -> Result<OffsetDateTime, StoreError> {
    time_from_ms(ms).map_err(|reason| StoreError::InvalidData { column, reason })
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_at_millisecond_precision() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let back = time_from_ms(ms_from_time(t)).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        assert_eq!(ms_from_time(back), 1_700_000_000_123);
        assert!(time_from_ms(i64::MAX).is_err());
    }
}
