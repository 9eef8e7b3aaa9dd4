//! The state store's errors.

use std::path::PathBuf;

use cloud::TenantId;

/// Every message is complete on its own: causes are part of the text and
/// deliberately not exposed through `source()`, so that printing the error
/// chain (`{:#}` with anyhow) does not repeat them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not one the store understands.
    #[error("invalid database URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// A SQLite state file that is not a SQLite database, is corrupt, or is a
    /// database of something else. The file was left exactly as it was.
    #[error(
        "the state file {} is not a usable ledgerlake state store: {reason}; \
         nothing was changed (the file was neither modified nor deleted) — \
         restore it from a backup or point --database-url at another file",
        path.display()
    )]
    NotAStateStore { path: PathBuf, reason: String },

    /// Preparing the state file's location failed.
    #[error("cannot prepare the state file {}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },

    /// The database could not be reached or opened.
    #[error("cannot open the state store at {location}: {cause}")]
    Connect {
        /// The file, or the URL with its password masked.
        location: String,
        cause: sqlx::Error,
    },

    /// Applying the schema migrations failed.
    #[error("migrating the state store at {location} failed: {cause}")]
    Migrate {
        location: String,
        cause: sqlx::migrate::MigrateError,
    },

    #[error("tenant {0} not found")]
    TenantNotFound(TenantId),

    #[error("tenant {tenant} already has a run in progress ({run}); wait for it or follow it with `runs show {run}`")]
    RunActive { tenant: TenantId, run: String },

    #[error("run {0} not found")]
    RunNotFound(String),

    /// No recorded question has this id (for this tenant).
    #[error("question {0} not found")]
    QueryNotFound(String),

    #[error(
        "tenant {0} is being deleted; wait for its teardown to finish before provisioning it again"
    )]
    TenantDeleting(TenantId),

    /// Cells are registered, but none is active with room; nothing was recorded.
    #[error(
        "no cell has room for tenant {0}: every cell is full or draining; \
         register another with `cells add` or reopen one with `cells activate`"
    )]
    NoCellRoom(TenantId),

    /// This deployment places every tenant in a cell, and none is registered.
    #[error(
        "no cell is registered, and tenant {0} must be placed in one (a GCP project and region); \
         register one with `cells add <id> --project <project> --region <region>`"
    )]
    NoCells(TenantId),

    /// Registering a cell clashed with one that exists (its id or its project).
    #[error("{0}")]
    CellConflict(String),

    /// A stored value the code cannot interpret (written by something else, or a newer version).
    #[error("the state store holds an invalid {column}: {reason}")]
    InvalidData {
        column: &'static str,
        reason: String,
    },

    /// Any other database failure.
    #[error("state store query failed: {0}")]
    Database(sqlx::Error),
}

impl StoreError {
    /// Whether retrying the same call later may succeed (lock timeouts,
    /// dropped connections, pool exhaustion).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(e) | StoreError::Connect { cause: e, .. } => is_transient_sqlx(e),
            _ => false,
        }
    }
}

pub(crate) fn is_transient_sqlx(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                // Serialization failure, deadlock, lock not available, too many
                // connections, admin shutdown, cannot connect now.
                matches!(
                    pg.code(),
                    "40001" | "40P01" | "55P03" | "53300" | "57P01" | "57P03"
                )
            } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // BUSY (5) and LOCKED (6), with their extended codes.
                db.code()
                    .and_then(|c| sqlite_primary_code(&c))
                    .is_some_and(|c| c == 5 || c == 6)
            } else {
                false
            }
        }
        _ => false,
    }
}

/// The primary result code of a numeric SQLite (extended) result code.
pub(crate) fn sqlite_primary_code(code: &str) -> Option<i64> {
    code.parse::<i64>().ok().map(|c| c & 0xff)
}

/// SQLITE_CORRUPT (11) and SQLITE_NOTADB (26), with their extended codes: the
/// reason to give for refusing the file, or `None` for any other error.
pub(crate) fn sqlite_corruption(e: &sqlx::Error) -> Option<String> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    db.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
    let code = db.code().and_then(|c| sqlite_primary_code(&c))?;
    (code == 11 || code == 26).then(|| format!("SQLite reports: {}", db.message()))
}
