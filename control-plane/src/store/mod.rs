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

mod error;
mod onboarding;
mod runs;
#[cfg(test)]
mod tests;
mod types;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use cloud::TenantId;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{Any, AnyConnection, AnyPool, Connection, Decode, Row, Type};
use time::OffsetDateTime;

pub use error::StoreError;
pub use onboarding::{PendingConsent, WebhookEventRecord};
pub use runs::{RunCommand, RunRecord, RunStatus, RunTrigger};
pub use types::{
    AuditEntry, Desired, ParseEnumError, Phase, ResourceRecord, ResourceStatus, TenantRecord,
};

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a SQLite connection waits for another writer before giving up.
const SQLITE_BUSY_TIMEOUT_PRAGMA: &str = "PRAGMA busy_timeout = 10000";
const SQLITE_MAX_CONNECTIONS: u32 = 8;
const POSTGRES_MAX_CONNECTIONS: u32 = 10;
/// How long to wait for a pooled connection (and, at open, for the server).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(15);
/// Two processes opening a fresh SQLite file at once can race on the first
/// migration; the loser retries and then finds it applied.
const SQLITE_OPEN_ATTEMPTS: u32 = 5;
/// The polling interval of [`Store::acquire_lease_waiting`].
const LEASE_POLL: Duration = Duration::from_millis(50);

const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

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

const TENANT_COLUMNS: &str =
    "id, desired, generation, phase, keep_data, message, created_at, updated_at";

const RESOURCE_COLUMNS: &str =
    "kind, name, status, message, observed_generation, attempts, last_error, last_transition";

impl Store {
    /// Opens (creating if needed) the state store at `url` and brings its
    /// schema up to date.
    ///
    /// `sqlite://<path>` (or `sqlite:<path>`; the path percent-decoded, relative
    /// to the working directory unless absolute) opens or creates a SQLite
    /// file, with WAL journaling, `synchronous=NORMAL`, a busy timeout and
    /// foreign keys on. An existing file that is not a SQLite database, is
    /// corrupt, or belongs to something else is refused with
    /// [`StoreError::NotAStateStore`] and left untouched.
    ///
    /// `postgres://…` / `postgresql://…` connects to PostgreSQL (any libpq-style
    /// parameters sqlx understands, e.g. `?options=-c%20search_path%3Dledgerlake`).
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        match parse_url(url)? {
            Target::Sqlite(path) => open_sqlite(&path).await,
            Target::Postgres(url) => open_postgres(&url).await,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where the store lives: the SQLite file, or the URL with its password masked.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Closes every pooled connection, waiting for checked-out ones to return.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Checks that the database answers (for readiness probes).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    // ----- tenants -------------------------------------------------------

    /// Records that tenant `id` is wanted. A new tenant starts with desired
    /// `present`, generation 1 and phase `Pending`, and `true` is returned
    /// with it; an existing wanted tenant is returned unchanged with `false`.
    /// A tenant being torn down (desired `absent`) is refused with
    /// [`StoreError::TenantDeleting`]. Safe when several processes race.
    pub async fn want_tenant(&self, id: &TenantId) -> Result<(TenantRecord, bool), StoreError> {
        // A concurrent teardown may remove the row between our insert and our
        // read; try again a few times before giving up.
        for _ in 0..3 {
            let now = now_ms();
            let created = sqlx::query(
                "INSERT INTO tenants \
                   (id, desired, generation, phase, keep_data, message, created_at, updated_at) \
                 VALUES ($1, 'present', 1, 'Pending', FALSE, NULL, $2, $2) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id.as_str())
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(|e| self.db_err(e))?
            .rows_affected()
                == 1;
            match self.get_tenant(id).await? {
                Some(t) if t.desired == Desired::Absent => {
                    return Err(StoreError::TenantDeleting(id.clone()))
                }
                Some(t) => return Ok((t, created)),
                None => continue,
            }
        }
        Err(StoreError::TenantDeleting(id.clone()))
    }

    /// Marks tenant `id` for teardown: desired `absent`, phase `Deleting`,
    /// `keep_data` as given, and the generation bumped unless it already was
    /// absent. Calling it again is harmless (and may change `keep_data`, or
    /// restart a teardown that ended `Failed`).
    pub async fn mark_deleting(
        &self,
        id: &TenantId,
        keep_data: bool,
    ) -> Result<TenantRecord, StoreError> {
        // SET expressions all see the row's old values.
        sqlx::query(
            "UPDATE tenants SET \
               generation = CASE WHEN desired = 'absent' THEN generation ELSE generation + 1 END, \
               message = CASE WHEN phase = 'Deleting' THEN message ELSE NULL END, \
               desired = 'absent', phase = 'Deleting', keep_data = $2, updated_at = $3 \
             WHERE id = $1 AND (desired <> 'absent' OR phase <> 'Deleting' OR keep_data <> $2)",
        )
        .bind(id.as_str())
        .bind(keep_data)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        self.get_tenant(id)
            .await?
            .ok_or_else(|| StoreError::TenantNotFound(id.clone()))
    }

    pub async fn get_tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1");
        sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db_err(e))?
            .map(|row| tenant_from_row(&row))
            .transpose()
    }

    /// Every tenant, ordered by id.
    pub async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY id");
        sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db_err(e))?
            .iter()
            .map(tenant_from_row)
            .collect()
    }

    /// Sets the tenant's phase and message. Returns whether anything changed;
    /// when nothing would, nothing is written (and `updated_at` stays).
    pub async fn set_phase(
        &self,
        id: &TenantId,
        phase: Phase,
        message: Option<&str>,
    ) -> Result<bool, StoreError> {
        let current = self
            .get_tenant(id)
            .await?
            .ok_or_else(|| StoreError::TenantNotFound(id.clone()))?;
        if current.phase == phase && current.message.as_deref() == message {
            return Ok(false);
        }
        let updated = sqlx::query(
            "UPDATE tenants SET phase = $2, message = $3, updated_at = $4 WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(phase.as_str())
        .bind(message)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::TenantNotFound(id.clone()));
        }
        Ok(true)
    }

    /// Removes the tenant record and all its resource rows, atomically.
    /// Returns whether the tenant existed. This is the last step of a
    /// teardown; the store does not check that the resources are gone.
    pub async fn delete_tenant(&self, id: &TenantId) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.db_err(e))?;
        sqlx::query("DELETE FROM resources WHERE tenant_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
        let deleted = sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?
            .rows_affected();
        tx.commit().await.map_err(|e| self.db_err(e))?;
        Ok(deleted > 0)
    }

    // ----- resources -----------------------------------------------------

    /// The tenant's resources, in a stable order: by when each was first
    /// recorded, then kind, then name. Empty for an unknown tenant.
    pub async fn list_resources(&self, id: &TenantId) -> Result<Vec<ResourceRecord>, StoreError> {
        let sql = format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources WHERE tenant_id = $1 \
             ORDER BY created_at, kind, name"
        );
        sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db_err(e))?
            .iter()
            .map(resource_from_row)
            .collect()
    }

    /// Every tenant's resources in one query, grouped by tenant (in the order
    /// of [`Store::list_resources`]). A pass over all tenants reads this once
    /// instead of once per tenant.
    pub async fn list_all_resources(
        &self,
    ) -> Result<HashMap<TenantId, Vec<ResourceRecord>>, StoreError> {
        let sql = format!(
            "SELECT tenant_id, {RESOURCE_COLUMNS} FROM resources \
             ORDER BY tenant_id, created_at, kind, name"
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db_err(e))?;
        let mut grouped: HashMap<TenantId, Vec<ResourceRecord>> = HashMap::new();
        for row in &rows {
            let tenant: TenantId = get_parsed(row, "tenant_id")?;
            grouped
                .entry(tenant)
                .or_default()
                .push(resource_from_row(row)?);
        }
        Ok(grouped)
    }

    pub async fn get_resource(
        &self,
        id: &TenantId,
        kind: &str,
        name: &str,
    ) -> Result<Option<ResourceRecord>, StoreError> {
        let sql = format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources \
             WHERE tenant_id = $1 AND kind = $2 AND name = $3"
        );
        sqlx::query(&sql)
            .bind(id.as_str())
            .bind(kind)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db_err(e))?
            .map(|row| resource_from_row(&row))
            .transpose()
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
        .map_err(|e| self.tenant_write_err(id, e))?;
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
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(|e| self.tenant_write_err(id, e))?;
        Ok(true)
    }

    /// Removes one resource row. Returns whether it existed.
    pub async fn delete_resource(
        &self,
        id: &TenantId,
        kind: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        let deleted =
            sqlx::query("DELETE FROM resources WHERE tenant_id = $1 AND kind = $2 AND name = $3")
                .bind(id.as_str())
                .bind(kind)
                .bind(name)
                .execute(&self.pool)
                .await
                .map_err(|e| self.db_err(e))?
                .rows_affected();
        Ok(deleted > 0)
    }

    // ----- audit log -----------------------------------------------------

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
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, tenant_id, detail) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(now_ms())
        .bind(actor)
        .bind(action)
        .bind(tenant.map(TenantId::as_str))
        .bind(detail)
        .execute(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
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
        query
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db_err(e))?
            .iter()
            .map(audit_from_row)
            .collect()
    }

    // ----- leases --------------------------------------------------------

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
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let expires_at = now.saturating_add(ttl_ms);
        let won = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET \
               holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.expires_at <= $4 OR leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?
        .rows_affected();
        Ok(won > 0)
    }

    /// Releases the lease if `holder` holds it. Returns whether it did.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        let released = sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(|e| self.db_err(e))?
            .rows_affected();
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
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.try_acquire_lease(name, holder, ttl).await? {
                return Ok(true);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(LEASE_POLL.min(deadline - now)).await;
        }
    }

    // ----- errors --------------------------------------------------------

    /// Wraps a database error, recognising a corrupt SQLite file.
    fn db_err(&self, e: sqlx::Error) -> StoreError {
        if let Some(path) = &self.sqlite_path {
            if let Some(reason) = sqlite_corruption(&e) {
                return StoreError::NotAStateStore {
                    path: path.clone(),
                    reason,
                };
            }
        }
        StoreError::Database(e)
    }

    /// Like [`Store::db_err`], reading a foreign-key violation on a write of a
    /// tenant's row as "no such tenant".
    fn tenant_write_err(&self, id: &TenantId, e: sqlx::Error) -> StoreError {
        match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StoreError::TenantNotFound(id.clone())
            }
            _ => self.db_err(e),
        }
    }
}

// ----- opening ---------------------------------------------------------------

#[derive(Debug, PartialEq)]
enum Target {
    Sqlite(PathBuf),
    Postgres(String),
}

fn parse_url(url: &str) -> Result<Target, StoreError> {
    let invalid = |reason: &str| StoreError::InvalidUrl {
        url: redact_url(url),
        reason: reason.to_owned(),
    };
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        for param in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            if param != "mode=rwc" {
                return Err(invalid(
                    "sqlite URLs take no parameters (the file is created if missing)",
                ));
            }
        }
        let path = percent_decode(path)
            .ok_or_else(|| invalid("the path is not valid percent-encoded UTF-8"))?;
        if path.is_empty() {
            return Err(invalid("no file path; expected sqlite://<path>"));
        }
        if path == ":memory:" {
            return Err(invalid(
                "in-memory databases are not supported; the state must outlive the process",
            ));
        }
        Ok(Target::Sqlite(PathBuf::from(path)))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Target::Postgres(url.to_owned()))
    } else {
        Err(invalid(
            "expected sqlite://<path> or postgres://<user>:<password>@<host>/<database>",
        ))
    }
}

async fn open_postgres(url: &str) -> Result<Store, StoreError> {
    let location = redact_url(url);
    let options = AnyConnectOptions::from_str(url).map_err(|e| StoreError::InvalidUrl {
        url: location.clone(),
        reason: e.to_string(),
    })?;
    let connect_err = |cause| StoreError::Connect {
        location: location.clone(),
        cause,
    };
    // One direct connection first: it fails fast with the real cause (the
    // pool would retry a refused connection until its timeout), and it runs
    // the migrations. sqlx holds an advisory lock while migrating
    // PostgreSQL, so concurrent openers do not race.
    let mut conn =
        match tokio::time::timeout(ACQUIRE_TIMEOUT, AnyConnection::connect_with(&options)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(connect_err(e)),
            Err(_) => {
                return Err(connect_err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {} s", ACQUIRE_TIMEOUT.as_secs()),
                ))))
            }
        };
    let migrated = POSTGRES_MIGRATOR.run_direct(&mut conn).await;
    // Closing only tidies up; the migration's answer stands either way.
    let _ = conn.close().await;
    migrated.map_err(|e| migrate_error(&location, e))?;
    let pool = AnyPoolOptions::new()
        .max_connections(POSTGRES_MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(connect_err)?;
    Ok(Store {
        pool,
        backend: Backend::Postgres,
        location,
        sqlite_path: None,
    })
}

async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
    let io_err = |cause| StoreError::Io {
        path: path.to_path_buf(),
        cause,
    };
    let path = std::path::absolute(path).map_err(io_err)?;
    let location = path.display().to_string();
    let path_str = path.to_str().ok_or_else(|| StoreError::InvalidUrl {
        url: location.clone(),
        reason: "the path is not valid UTF-8".to_owned(),
    })?;
    let url = format!("sqlite://{}", percent_encode_path(path_str));

    if sqlite_file_has_content(&path)? {
        inspect_existing_sqlite(&path, &url).await?;
    } else if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|cause| StoreError::Io {
            path: parent.to_path_buf(),
            cause,
        })?;
    }

    let mut attempt = 1;
    loop {
        match open_sqlite_pool(&path, &url, &location).await {
            Err(e) if attempt < SQLITE_OPEN_ATTEMPTS && retry_sqlite_open(&e) => {
                tracing::debug!(error = %e, attempt, "opening the state store raced; retrying");
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

async fn open_sqlite_pool(path: &Path, url: &str, location: &str) -> Result<Store, StoreError> {
    let options = AnyConnectOptions::from_str(&format!("{url}?mode=rwc")).map_err(|e| {
        StoreError::InvalidUrl {
            url: location.to_owned(),
            reason: e.to_string(),
        }
    })?;
    let pool = AnyPoolOptions::new()
        .max_connections(SQLITE_MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                for pragma in [
                    // Before anything else, so the pragmas below wait too.
                    SQLITE_BUSY_TIMEOUT_PRAGMA,
                    "PRAGMA journal_mode = WAL",
                    "PRAGMA synchronous = NORMAL",
                    "PRAGMA foreign_keys = ON",
                ] {
                    sqlx::query(pragma).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(|e| sqlite_open_error(path, location, e))?;
    if let Err(e) = SQLITE_MIGRATOR.run(&pool).await {
        pool.close().await;
        return Err(match &e {
            MigrateError::Execute(inner) | MigrateError::ExecuteMigration(inner, _) => {
                match sqlite_corruption(inner) {
                    Some(reason) => StoreError::NotAStateStore {
                        path: path.to_path_buf(),
                        reason,
                    },
                    None => migrate_error(location, e),
                }
            }
            _ => migrate_error(location, e),
        });
    }
    Ok(Store {
        pool,
        backend: Backend::Sqlite,
        location: location.to_owned(),
        sqlite_path: Some(path.to_path_buf()),
    })
}

/// Whether a failed SQLite open is worth retrying: lock contention, or a
/// migration that lost a race with another process migrating the same file.
fn retry_sqlite_open(e: &StoreError) -> bool {
    match e {
        StoreError::Connect { cause, .. } => error::is_transient_sqlx(cause),
        StoreError::Migrate {
            cause: MigrateError::Execute(_) | MigrateError::ExecuteMigration(..),
            ..
        } => true,
        _ => false,
    }
}

/// Checks the file's first bytes without opening it as a database. Returns
/// whether there is an existing, non-empty file (an empty file is a valid,
/// empty SQLite database).
fn sqlite_file_has_content(path: &Path) -> Result<bool, StoreError> {
    use std::io::Read;

    let not_a_store = |reason: &str| StoreError::NotAStateStore {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let io_err = |cause| StoreError::Io {
        path: path.to_path_buf(),
        cause,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(e)),
    };
    let meta = file.metadata().map_err(io_err)?;
    if meta.is_dir() {
        return Err(not_a_store("it is a directory"));
    }
    if meta.len() == 0 {
        return Ok(false);
    }
    let mut header = Vec::with_capacity(SQLITE_HEADER.len());
    file.take(SQLITE_HEADER.len() as u64)
        .read_to_end(&mut header)
        .map_err(io_err)?;
    if header != SQLITE_HEADER {
        return Err(not_a_store(
            "it does not start with the SQLite file header, so it is not a SQLite database",
        ));
    }
    Ok(true)
}

/// Before anything may write to an existing file: checks its integrity and
/// that it is a ledgerlake store (or an empty database), on a plain
/// connection that changes nothing.
async fn inspect_existing_sqlite(path: &Path, url: &str) -> Result<(), StoreError> {
    let location = path.display().to_string();
    let options = AnyConnectOptions::from_str(&format!("{url}?mode=rw")).map_err(|e| {
        StoreError::InvalidUrl {
            url: location.clone(),
            reason: e.to_string(),
        }
    })?;
    let mut conn = AnyConnection::connect_with(&options)
        .await
        .map_err(|e| sqlite_open_error(path, &location, e))?;
    let result = inspect_sqlite_connection(path, &location, &mut conn).await;
    // Closing only tidies up; the inspection's answer stands either way.
    let _ = conn.close().await;
    result
}

async fn inspect_sqlite_connection(
    path: &Path,
    location: &str,
    conn: &mut AnyConnection,
) -> Result<(), StoreError> {
    let not_a_store = |reason: String| StoreError::NotAStateStore {
        path: path.to_path_buf(),
        reason,
    };
    let check: String = sqlx::query_scalar("PRAGMA quick_check(1)")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| sqlite_open_error(path, location, e))?;
    if check != "ok" {
        return Err(not_a_store(format!(
            "SQLite's integrity check failed: {check}"
        )));
    }
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| sqlite_open_error(path, location, e))?;
    let has_history = tables.iter().any(|t| t == "_sqlx_migrations");
    let foreign: Vec<&str> = tables
        .iter()
        .map(String::as_str)
        .filter(|t| !t.starts_with("sqlite_") && *t != "_sqlx_migrations")
        .collect();
    if !has_history && !foreign.is_empty() {
        return Err(not_a_store(format!(
            "it is a SQLite database of something else (tables {}) with no ledgerlake schema history",
            foreign.join(", ")
        )));
    }
    Ok(())
}

fn sqlite_open_error(path: &Path, location: &str, e: sqlx::Error) -> StoreError {
    match sqlite_corruption(&e) {
        Some(reason) => StoreError::NotAStateStore {
            path: path.to_path_buf(),
            reason,
        },
        None => StoreError::Connect {
            location: location.to_owned(),
            cause: e,
        },
    }
}

/// SQLITE_CORRUPT (11) and SQLITE_NOTADB (26), with their extended codes.
fn sqlite_corruption(e: &sqlx::Error) -> Option<String> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    db.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
    let code = db.code().and_then(|c| error::sqlite_primary_code(&c))?;
    (code == 11 || code == 26).then(|| format!("SQLite reports: {}", db.message()))
}

fn migrate_error(location: &str, e: MigrateError) -> StoreError {
    match e {
        MigrateError::VersionMissing(version) => StoreError::Migrate {
            location: format!(
                "{location} (its schema has migration {version}, which this build of ledgerlake \
                 does not know: it was written by a newer version; upgrade ledgerlake)"
            ),
            cause: e,
        },
        e => StoreError::Migrate {
            location: location.to_owned(),
            cause: e,
        },
    }
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
    let ms: i64 = get(row, column)?;
    time_from_ms(ms).map_err(|reason| StoreError::InvalidData { column, reason })
}

/// [`get_time`] for a nullable column.
fn get_time_opt(row: &AnyRow, column: &'static str) -> Result<Option<OffsetDateTime>, StoreError> {
    let ms: Option<i64> = get(row, column)?;
    ms.map(|ms| time_from_ms(ms).map_err(|reason| StoreError::InvalidData { column, reason }))
        .transpose()
}

fn tenant_from_row(row: &AnyRow) -> Result<TenantRecord, StoreError> {
    Ok(TenantRecord {
        id: get_parsed(row, "id")?,
        desired: get_parsed(row, "desired")?,
        generation: get(row, "generation")?,
        phase: get_parsed(row, "phase")?,
        keep_data: get_bool(row, "keep_data")?,
        message: get(row, "message")?,
        created_at: get_time(row, "created_at")?,
        updated_at: get_time(row, "updated_at")?,
    })
}

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

// ----- small helpers -------------------------------------------------------------

fn now_ms() -> i64 {
    ms_from_time(OffsetDateTime::now_utc())
}

fn ms_from_time(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn time_from_ms(ms: i64) -> Result<OffsetDateTime, String> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| format!("{ms} ms since the epoch is out of range: {e}"))
}

/// The `sqlite://` URL of a state file, escaped so that any path (spaces,
/// `%`, `?`, `#`) survives [`Store::open`]'s decoding.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", percent_encode_path(&path.to_string_lossy()))
}

/// Decodes `%XX` escapes; `None` on a bad escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Escapes everything in a path but unreserved characters and `/`, so that
/// sqlx's own decoding gives back exactly `path`.
fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL with any password (in the user info or a `password=` parameter) masked.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn urls_are_parsed() {
        assert_eq!(
            parse_url("sqlite:///var/lib/ll/state.db").ok(),
            Some(Target::Sqlite(PathBuf::from("/var/lib/ll/state.db")))
        );
        assert_eq!(
            parse_url("sqlite://.ledgerlake/state.db?mode=rwc").ok(),
            Some(Target::Sqlite(PathBuf::from(".ledgerlake/state.db")))
        );
        assert_eq!(
            parse_url("sqlite:state%20db.sqlite").ok(),
            Some(Target::Sqlite(PathBuf::from("state db.sqlite")))
        );
        assert_eq!(
            parse_url("postgres://u:p@h/db").ok(),
            Some(Target::Postgres("postgres://u:p@h/db".into()))
        );
        assert!(parse_url("postgresql://h/db").is_ok());
        for bad in [
            "sqlite://",
            "sqlite::memory:",
            "sqlite://x.db?mode=ro",
            "sqlite://x%zz.db",
            "mysql://u:secret@h/db",
            "state.db",
        ] {
            assert!(
                matches!(parse_url(bad), Err(StoreError::InvalidUrl { .. })),
                "{bad}"
            );
        }
        let msg = parse_url("mysql://u:secret@h/db")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!msg.contains("secret"), "{msg}");
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact_url("postgres://ll:s3cr%40t@db.example:5432/ll?sslmode=require"),
            "postgres://ll:***@db.example:5432/ll?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://db/ll?user=ll&password=hunter2"),
            "postgres://db/ll?user=ll&password=***"
        );
        assert_eq!(redact_url("postgres://ll@db/ll"), "postgres://ll@db/ll");
        assert_eq!(redact_url("sqlite:///x.db"), "sqlite:///x.db");
    }

    #[test]
    fn paths_survive_percent_encoding() {
        for p in ["/tmp/a b/c?d#e%f.db", "/tmp/ünï/state.db", "/plain/path.db"] {
            assert_eq!(percent_decode(&percent_encode_path(p)).as_deref(), Some(p));
        }
    }

    #[test]
    fn timestamps_round_trip_at_millisecond_precision() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let back = time_from_ms(ms_from_time(t)).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        assert_eq!(ms_from_time(back), 1_700_000_000_123);
        assert!(time_from_ms(i64::MAX).is_err());
    }
}
