//! Opening the store: URL handling, connecting to SQLite or PostgreSQL,
//! refusing files that are not state stores, and the migrations.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{AnyConnection, Connection};

use super::error::{self, sqlite_corruption};
use super::{Backend, Store, StoreError};

pub(super) static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
pub(super) static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a SQLite connection waits for another writer before giving up.
const SQLITE_BUSY_TIMEOUT_PRAGMA: &str = "PRAGMA busy_timeout = 10000";
const SQLITE_MAX_CONNECTIONS: u32 = 8;
const POSTGRES_MAX_CONNECTIONS: u32 = 10;
/// How long to wait for a pooled connection (and, at open, for the server).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(15);
/// Two processes opening a fresh SQLite file at once can race on the first
/// migration; the loser retries and then finds it applied.
const SQLITE_OPEN_ATTEMPTS: u32 = 5;

const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

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
        self.execute(sqlx::query("SELECT 1")).await?;
        Ok(())
    }
}

/// What a database URL names.
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
        // sqlx ends the user info at the first `/`, `?` or `#`, redact_url at
        // the last `@`: a password holding one of those unencoded would be
        // read in part as a path or parameter, which sqlx quotes in its
        // errors and logs. Refused, so that both read the URL alike.
        let userinfo = url
            .split_once("://")
            .and_then(|(_, rest)| rest.rsplit_once('@'))
            .map(|(userinfo, _)| userinfo);
        if userinfo.is_some_and(|u| u.contains(['/', '?', '#'])) {
            return Err(invalid(
                "/, ? or # before the last @: percent-encode them in the user name and \
                 password (%2F, %3F, %23), and any @ after the host (%40)",
            ));
        }
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
        // sqlx's message may quote a piece of the URL (a parameter's value):
        // it is shown only when the URL holds nothing to mask.
        reason: if location == url {
            e.to_string()
        } else {
            "sqlx cannot read it; percent-encode any @ : / ? # % in the user name and password"
                .to_owned()
        },
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

// ----- URLs --------------------------------------------------------------------

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
pub(super) fn percent_encode_path(path: &str) -> String {
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

/// What a URL that [`redact_url`] cannot make sense of shows after its scheme.
const REDACTED_URL: &str = "<redacted>";

/// The URL with any password (in the user info or a `password=` parameter)
/// masked, for messages and logs.
///
/// The user info runs from `://` to the *last* `@` of the whole URL: an
/// unencoded password may hold `#`, `?`, `/`, `:` or `@`, and a wrong guess
/// at where it ends would print the rest of it. A URL whose user info or
/// scheme cannot be told apart shows only its scheme.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // No authority: a user info here would be malformed, so anything
        // with an `@` is hidden whole.
        if url.contains('@') {
            return match url.split_once(':') {
                Some((scheme, _)) if is_scheme(scheme) => format!("{scheme}:{REDACTED_URL}"),
                _ => REDACTED_URL.to_owned(),
            };
        }
        return redact_query(url);
    };
    if !is_scheme(scheme) {
        return REDACTED_URL.to_owned();
    }
    let Some((userinfo, after)) = rest.rsplit_once('@') else {
        return format!("{scheme}://{}", redact_query(rest));
    };
    // A `password=` parameter whose value holds an `@` reads as a user info
    // ending there, and where that password ends cannot be told.
    if userinfo
        .split_once('?')
        .is_some_and(|(_, query)| query.to_ascii_lowercase().contains("password="))
    {
        return format!("{scheme}://{REDACTED_URL}");
    }
    // The user name is kept (it helps to see who connects) only when it is
    // plainly one; anything else could be part of the password.
    let is_user = |u: &str| {
        u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%'))
    };
    let userinfo = match userinfo.split_once(':') {
        Some((user, _password)) if is_user(user) => format!("{user}:***"),
        None if is_user(userinfo) => userinfo.to_owned(),
        _ => "***".to_owned(),
    };
    format!("{scheme}://{userinfo}@{}", redact_query(after))
}

/// RFC 3986's `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// `text` (what follows the user info) with the values of its `password=`
/// parameters masked.
fn redact_query(text: &str) -> String {
    let Some((path, query)) = text.split_once('?') else {
        return text.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
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

    /// Unencoded passwords with the characters that end a naive user info;
    /// each holds `leak`, which nothing else in the tests' URLs does, so a
    /// piece of one shows too.
    const HOSTILE_PASSWORDS: &[&str] = &[
        "Pw#leak1",
        "Pw?leak2",
        "Pw/leak3",
        "Pw@leak4",
        "Pw:leak5",
        "Pw@x#y?z/leak6",
        "Pw://h@leak7",
        "1234?sslmode=leak8",
        "Pw&password=x@leak9",
        "leak10",
    ];

    /// `text` as a test may print it: no password, nor a piece of one.
    fn shown(text: &str, password: &str) -> String {
        text.replace(password, "<PASSWORD>")
            .replace("leak", "<LEAK>")
    }

    /// `redact_url(url)` is `expected`, and a failure prints no password.
    fn assert_redacted(url: &str, password: &str, expected: &str) {
        let redacted = redact_url(url);
        assert!(
            redacted == expected,
            "{} gave {}",
            shown(url, password),
            shown(&redacted, password)
        );
    }

    #[test]
    fn passwords_are_masked() {
        assert_redacted(
            "postgres://ll:s3cr%40t@db.example:5432/ll?sslmode=require",
            "s3cr%40t",
            "postgres://ll:***@db.example:5432/ll?sslmode=require",
        );
        assert_redacted(
            "postgres://db/ll?user=ll&password=hunter2",
            "hunter2",
            "postgres://db/ll?user=ll&password=***",
        );
        assert_eq!(redact_url("postgres://ll@db/ll"), "postgres://ll@db/ll");
        assert_eq!(redact_url("sqlite:///x.db"), "sqlite:///x.db");
    }

    #[test]
    fn hostile_passwords_are_masked_whole() {
        for password in HOSTILE_PASSWORDS {
            for (url, expected) in [
                (
                    format!("postgres://ll:{password}@db.example:5432/ll"),
                    "postgres://ll:***@db.example:5432/ll",
                ),
                (
                    format!("postgresql://ll:{password}@db/ll?sslmode=require"),
                    "postgresql://ll:***@db/ll?sslmode=require",
                ),
                (
                    format!("postgres://ll:{password}@db/ll#frag"),
                    "postgres://ll:***@db/ll#frag",
                ),
                (
                    format!("postgres://db/ll?user=ll&password={password}"),
                    // An `@` in it could end a user info: all is hidden.
                    if password.contains('@') {
                        "postgres://<redacted>"
                    } else {
                        "postgres://db/ll?user=ll&password=***"
                    },
                ),
            ] {
                assert_redacted(&url, password, expected);
            }
        }
        assert_redacted(
            "postgres://ll:p#ss@db/ll",
            "p#ss",
            "postgres://ll:***@db/ll",
        );
        // A user name that is not plainly one may be part of the password.
        assert_redacted("postgres://ll/x:Pw@db/ll", "Pw", "postgres://***@db/ll");
        assert_redacted("postgres://a@b@db/ll", "b", "postgres://***@db/ll");
    }

    #[test]
    fn urls_that_cannot_be_understood_show_only_their_scheme() {
        for (url, expected) in [
            ("postgres:ll:Pw#leak@db/ll", "postgres:<redacted>"),
            ("postgres:/ll:Pw-leak@db", "postgres:<redacted>"),
            ("ll:Pw-leak://x@db/ll", "<redacted>"),
            // Without `//` what precedes the first `:` is taken for the scheme.
            ("ll:Pw-leak@db/ll", "ll:<redacted>"),
            ("-x:Pw-leak@db/ll", "<redacted>"),
            ("postgres//ll:Pw-leak@db", "<redacted>"),
        ] {
            assert_redacted(url, "leak", expected);
        }
    }

    #[tokio::test]
    async fn unreadable_postgres_urls_are_refused_without_the_password() {
        for password in HOSTILE_PASSWORDS {
            // A password with `/`, `?` or `#` is refused before sqlx reads
            // it; sqlx reads the others as redact_url does, and finds
            // nothing listening on the port.
            let url = format!("postgres://ll:{password}@127.0.0.1:1/ll");
            let ambiguous = password.contains(['/', '?', '#']);
            let (message, expected_kind) = match Store::open(&url).await {
                Ok(_) => panic!("{} opened", shown(&url, password)),
                Err(e) => (
                    format!("{e} {e:?}"),
                    match e {
                        StoreError::InvalidUrl { .. } => ambiguous,
                        StoreError::Connect { .. } => !ambiguous,
                        _ => false,
                    },
                ),
            };
            assert!(!message.contains("leak"), "{}", shown(&message, password));
            assert!(expected_kind, "{}", shown(&message, password));
        }
        let message = match Store::open("postgres://ll:p#ss@db/ll").await {
            Ok(_) => panic!("opened"),
            Err(e @ StoreError::InvalidUrl { .. }) => shown(&e.to_string(), "p#ss"),
            Err(e) => panic!(
                "expected an invalid URL, got {}",
                shown(&e.to_string(), "p#ss")
            ),
        };
        assert!(!message.contains("<PASSWORD>"), "{message}");
        assert!(message.contains("postgres://ll:***@db/ll"), "{message}");
    }

    #[test]
    fn paths_survive_percent_encoding() {
        for p in ["/tmp/a b/c?d#e%f.db", "/tmp/ünï/state.db", "/plain/path.db"] {
            assert_eq!(percent_decode(&percent_encode_path(p)).as_deref(), Some(p));
        }
    }
}
