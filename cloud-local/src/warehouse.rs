//! The warehouse as DuckDB: one database file per dataset.
//!
//! A file per dataset (not a schema per dataset in one file) because the file
//! is the unit DuckDB can open read-only and lock: a query opens only its own
//! dataset's file, read-only, with external access (other files, ATTACH,
//! COPY, extensions, the network) disabled and the configuration locked, so
//! even a guard bug cannot reach another tenant's data. It also makes a
//! dataset a single file to back up, restore or delete. The one way a
//! statement reads another dataset is `execute_reading`: each source the
//! credential may read is attached read-only under its name before external
//! access is switched off.
//!
//! A DuckDB file can be open read-write by only one process at a time, or
//! read-only by many. Within this process a per-dataset read-write lock lets
//! queries run side by side (each on its own read-only open of the file)
//! while anything that writes the file runs alone; another process holding
//! the file (a running `tenant-job`, say) makes the call fail with
//! `Transient`, to be retried.

use std::collections::HashMap;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use duckdb::{AccessMode, Config, Connection, InterruptHandle};
use tokio::sync::{oneshot, OwnedRwLockWriteGuard, RwLock};

use super::auth::Authoriser;
use super::fsio::{self, shown};
use super::identity::{create_resource_record, remove_policy};
use super::layout::Layout;
use super::readers::{Readers, WriterNotice};
use super::sqlvalue;
use cloud::error::{CloudError, CloudResult};
use cloud::naming::Labels;
use cloud::ports::{
    Column, Credential, Dataset, DatasetSpec, ExpectedObject, LoadedObject, PageDigest, Permission,
    QueryRequest, QueryResult, ResourceRef, TableInfo, Warehouse, WriteMode,
};

/// How often a timed-out query is interrupted again until it stops.
const INTERRUPT_REPEAT: Duration = Duration::from_millis(50);

/// The rule a table name follows, quoted in refusals.
pub const TABLE_RULE: &str =
    "a table name is 1 to 128 characters of ASCII letters, digits and '_', not starting with a digit";

/// DuckDB's memory limit in MiB for every connection to a dataset (loading,
/// building the models, data tests, publishing, queries); unset:
/// [`DEFAULT_MEMORY_MIB`].
pub const MEMORY_ENV: &str = "LEDGERLAKE_LOCAL_DUCKDB_MEMORY_MIB";
/// DuckDB's threads for every connection; unset: one per core.
pub const THREADS_ENV: &str = "LEDGERLAKE_LOCAL_DUCKDB_THREADS";
/// The models of 400,000 invoices build within it (at 160 MiB
/// `fct_invoice_lines` ran out of memory); the transform is about as fast
/// as without a limit (BENCHMARKS.md).
pub const DEFAULT_MEMORY_MIB: u32 = 192;

/// What a DuckDB connection may use. Beyond the memory limit DuckDB spills
/// rather than growing, into a directory of its own under the data
/// directory's `tmp/` (`duckdb-<uuid>`: readers of one file in several
/// processes must not share one; DuckDB removes it on close, `tmp/`'s sweep
/// after a crash). A connection that writes does not keep insertion order:
/// no table's rows have an order, and keeping it holds rows back in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuckDbLimits {
    pub memory_mib: u32,
    /// `None`: DuckDB's default, one thread per core.
    pub threads: Option<u32>,
}

impl Default for DuckDbLimits {
    fn default() -> Self {
        DuckDbLimits {
            memory_mib: DEFAULT_MEMORY_MIB,
            threads: None,
        }
    }
}

impl DuckDbLimits {
    /// From [`MEMORY_ENV`] and [`THREADS_ENV`]; a value that is not a whole
    /// number above 0 is refused.
    pub fn from_env() -> CloudResult<Self> {
        let number = |name: &'static str| -> CloudResult<Option<u32>> {
            match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => v
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(Some)
                    .ok_or_else(|| {
                        CloudError::permanent(
                            name,
                            format!("must be a whole number above 0, not {}", shown(&v)),
                        )
                    }),
                _ => Ok(None),
            }
        };
        Ok(DuckDbLimits {
            memory_mib: number(MEMORY_ENV)?.unwrap_or(DEFAULT_MEMORY_MIB),
            threads: number(THREADS_ENV)?,
        })
    }

    /// `db` is the database file: under `warehouse/` (or `tmp/` while it
    /// is created), so `tmp/` is beside its folder.
    fn apply(self, config: Config, db: &Path) -> duckdb::Result<Config> {
        let mut config = config.with("memory_limit", format!("{}MiB", self.memory_mib))?;
        if let Some(root) = db.parent().and_then(Path::parent) {
            let spill = root
                .join("tmp")
                .join(format!("duckdb-{}", uuid::Uuid::new_v4().simple()));
            config = config.with("temp_directory", spill.to_string_lossy())?;
        }
        match self.threads {
            Some(n) => config.threads(i64::from(n)),
            None => Ok(config),
        }
    }
}

fn dataset_resource(name: &str) -> String {
    format!("dataset {name}")
}

fn validate_table(dataset: &str, table: &str) -> CloudResult<()> {
    let ok = (1..=128).contains(&table.len())
        && !table.starts_with(|c: char| c.is_ascii_digit())
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(CloudError::permanent(
            format!("table {} in dataset {dataset}", shown(table)),
            format!("invalid table name; {TABLE_RULE}"),
        ))
    }
}

/// `"name"` with inner quotes doubled.
fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `'text'` with inner quotes doubled.
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Classifies a DuckDB error: another process holding the file is transient.
fn duck_err(resource: &str, e: &duckdb::Error) -> CloudError {
    let message = e.to_string();
    if message.contains("Could not set lock") || message.contains("Conflicting lock") {
        CloudError::transient(
            resource,
            format!("the dataset is open in another process; try again ({message})"),
        )
    } else {
        CloudError::permanent(resource, message)
    }
}

/// Settings every connection gets: no extension is ever installed or loaded
/// (nothing is fetched from the network), and no file but the database itself
/// may be touched.
fn base_config(
    resource: &str,
    mode: AccessMode,
    db: &Path,
    limits: DuckDbLimits,
) -> CloudResult<Config> {
    config_with_access(resource, mode, false, db, limits)
}

/// `limits` go first: DuckDB refuses a temporary directory once external
/// access is off.
fn config_with_access(
    resource: &str,
    mode: AccessMode,
    external: bool,
    db: &Path,
    limits: DuckDbLimits,
) -> CloudResult<Config> {
    let build = || -> duckdb::Result<Config> {
        limits
            .apply(Config::default(), db)?
            .access_mode(mode)?
            .enable_autoload_extension(false)?
            .with("autoinstall_known_extensions", "false")?
            .with("allow_community_extensions", "false")?
            .enable_external_access(external)
    };
    build().map_err(|e| duck_err(resource, &e))
}

/// The configuration of a connection to `db` that writes: read-write,
/// `limits` applied, insertion order not kept, and each commit written
/// straight into the file. (A writer closes its connection right after its
/// work, and closing checkpoints: with DuckDB's default threshold a large
/// commit was first written whole into the WAL, only to be read back and
/// written again on close.)
fn writer_config(
    resource: &str,
    db: &Path,
    external: bool,
    limits: DuckDbLimits,
) -> CloudResult<Config> {
    config_with_access(resource, AccessMode::ReadWrite, external, db, limits)?
        .with("preserve_insertion_order", "false")
        .and_then(|c| c.with("checkpoint_threshold", "0b"))
        .map_err(|e| duck_err(resource, &e))
}

/// Opens the dataset read-only, confined to its own file, configuration locked.
fn open_read_only(resource: &str, path: &Path, limits: DuckDbLimits) -> CloudResult<Connection> {
    let config = base_config(resource, AccessMode::ReadOnly, path, limits)?
        .with("lock_configuration", "true")
        .map_err(|e| duck_err(resource, &e))?;
    Connection::open_with_flags(path, config).map_err(|e| duck_err(resource, &e))
}

/// How long a writer, its notice up, waits for readers in other processes to
/// let go of the file: they close their kept opens within about
/// [`crate::readers::SWEEP`] of seeing the notice, and a query already
/// running finishes first. Waiting with the notice up, rather than failing and
/// retrying later, keeps readers from taking the file back in between.
const WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens `path` read-write with a fresh `config` for each try, waiting (up to
/// [`WRITER_WAIT`]) while another process holds the file.
fn open_read_write(
    resource: &str,
    path: &Path,
    config: impl Fn() -> CloudResult<Config>,
) -> CloudResult<Connection> {
    let started = Instant::now();
    loop {
        match Connection::open_with_flags(path, config()?) {
            Ok(conn) => return Ok(conn),
            Err(e) => {
                let err = duck_err(resource, &e);
                if !err.is_retryable() || started.elapsed() >= WRITER_WAIT {
                    return Err(err);
                }
                std::thread::sleep(crate::readers::SWEEP);
            }
        }
    }
}

/// Opens the dataset for writing, confined to its own file, configuration locked.
fn open_writer(resource: &str, path: &Path, limits: DuckDbLimits) -> CloudResult<Connection> {
    open_read_write(resource, path, || {
        writer_config(resource, path, false, limits)?
            .with("lock_configuration", "true")
            .map_err(|e| duck_err(resource, &e))
    })
}

/// Opens the dataset for writing with read access to exactly the files
/// `allowed` (the NDJSON being loaded): external access is disabled right
/// after opening, with those paths excepted, and the configuration locked.
fn open_loader(
    resource: &str,
    path: &Path,
    allowed: &[&Path],
    limits: DuckDbLimits,
) -> CloudResult<Connection> {
    let conn = open_read_write(resource, path, || {
        writer_config(resource, path, true, limits)
    })?;
    let allowed = allowed
        .iter()
        .map(|p| {
            p.to_str().map(quote_literal).ok_or_else(|| {
                CloudError::permanent(resource, "the data directory's path is not UTF-8")
            })
        })
        .collect::<CloudResult<Vec<_>>>()?;
    conn.execute_batch(&format!(
        "SET allowed_paths = [{}]; \
         SET enable_external_access = false; SET lock_configuration = true;",
        allowed.join(", ")
    ))
    .map_err(|e| duck_err(resource, &e))?;
    Ok(conn)
}

/// Opens the dataset for writing with each of `sources` attached read-only
/// under its own name, so statements can read `<source>.<table>`. External
/// access is on only while attaching; then it is disabled and the
/// configuration locked, so the statements reach no other file, cannot
/// attach anything else, and cannot write to a source.
fn open_with_sources(
    resource: &str,
    path: &Path,
    sources: &[(String, std::path::PathBuf)],
    limits: DuckDbLimits,
) -> CloudResult<Connection> {
    let conn = open_read_write(resource, path, || {
        writer_config(resource, path, true, limits)
    })?;
    let mut setup = String::new();
    for (name, file) in sources {
        let file = file.to_str().ok_or_else(|| {
            CloudError::permanent(resource, "the data directory's path is not UTF-8")
        })?;
        setup.push_str(&format!(
            "ATTACH {} AS {} (READ_ONLY); ",
            quote_literal(file),
            quote_ident(name)
        ));
    }
    setup.push_str("SET enable_external_access = false; SET lock_configuration = true;");
    conn.execute_batch(&setup)
        .map_err(|e| duck_err(resource, &e))?;
    Ok(conn)
}

fn read_dataset(layout: &Layout, name: &str) -> CloudResult<Dataset> {
    let resource = dataset_resource(name);
    fsio::read_json::<Dataset>(&resource, &layout.dataset_meta(name))?
        .ok_or_else(|| CloudError::not_found(resource))
}

/// The dataset's file, which must exist with its record.
fn existing_file(layout: &Layout, name: &str) -> CloudResult<std::path::PathBuf> {
    read_dataset(layout, name)?;
    let path = layout.dataset_file(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(CloudError::not_found(format!(
            "{} (its database file is missing; ensure the dataset again)",
            dataset_resource(name)
        )))
    }
}

/// Creates an empty database file atomically: built under `tmp/`, then linked
/// into place only if no file is there yet.
fn create_database_file(layout: &Layout, name: &str) -> CloudResult<()> {
    let resource = dataset_resource(name);
    let dest = layout.dataset_file(name);
    if dest.exists() {
        return Ok(());
    }
    let tmp = layout
        .tmp_dir()
        .join(format!("{}.duckdb", uuid::Uuid::new_v4().simple()));
    let built = open_writer(&resource, &tmp, DuckDbLimits::default()).and_then(|conn| {
        conn.execute_batch("CHECKPOINT")
            .map_err(|e| duck_err(&resource, &e))
    });
    let linked = built.and_then(|()| match fs::hard_link(&tmp, &dest) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(fsio::io_fail(&resource, &dest, &e)),
    });
    let _ = fs::remove_file(&tmp);
    let _ = fs::remove_file(tmp.with_extension("duckdb.wal"));
    linked
}

fn table_exists(conn: &Connection, resource: &str, table: &str) -> CloudResult<bool> {
    conn.query_row(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() \
         AND schema_name = 'main' AND table_name = ?",
        [table],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .map_err(|e| duck_err(resource, &e))
}

/// `(name, type)` of each column of a table.
fn columns_of(
    conn: &Connection,
    resource: &str,
    database: &str,
    table: &str,
) -> CloudResult<Vec<(String, String)>> {
    let mut stmt = conn
        .prepare(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = ? \
             AND schema_name = 'main' AND table_name = ? ORDER BY column_index",
        )
        .map_err(|e| duck_err(resource, &e))?;
    let rows = stmt
        .query_map([database, table], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(|e| duck_err(resource, &e))?;
    rows.collect::<duckdb::Result<Vec<_>>>()
        .map_err(|e| duck_err(resource, &e))
}

fn load_blocking(
    layout: &Layout,
    dataset: &str,
    table: &str,
    ndjson: &[u8],
    mode: WriteMode,
    limits: DuckDbLimits,
) -> CloudResult<u64> {
    let resource = format!("table {table} in dataset {dataset}");
    let path = existing_file(layout, dataset)?;
    if ndjson.iter().all(u8::is_ascii_whitespace) {
        // Nothing to load, and no row to infer a schema from.
        return Ok(0);
    }
    let tmp_dir = layout.tmp_dir();
    let mut file = tempfile::Builder::new()
        .suffix(".ndjson")
        .tempfile_in(&tmp_dir)
        .map_err(|e| fsio::io_fail(&resource, &tmp_dir, &e))?;
    file.write_all(ndjson)
        .and_then(|()| file.flush())
        .map_err(|e| fsio::io_fail(&resource, file.path(), &e))?;
    let conn = open_loader(&resource, &path, &[file.path()], limits)?;
    let source = quote_literal(&file.path().to_string_lossy());
    let target = format!("main.{}", quote_ident(table));
    let run = |sql: &str| conn.execute_batch(sql).map_err(|e| duck_err(&resource, &e));
    run("BEGIN TRANSACTION")?;
    let result = (|| -> CloudResult<u64> {
        run(&format!(
            "CREATE TEMP TABLE ledgerlake_load AS SELECT * FROM read_json({source}, \
             format = 'newline_delimited', sample_size = -1)"
        ))?;
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM temp.main.ledgerlake_load", [], |r| {
                r.get(0)
            })
            .map_err(|e| duck_err(&resource, &e))?;
        if mode == WriteMode::Truncate || !table_exists(&conn, &resource, table)? {
            // Replaces the table in the same transaction: readers see the old
            // rows or the new, never an empty or half-loaded table.
            run(&format!(
                "CREATE OR REPLACE TABLE {target} AS SELECT * FROM temp.main.ledgerlake_load"
            ))?;
        } else {
            // Append: columns new in this load are added (as a BigQuery load
            // with field addition allowed would), then rows are matched by name.
            let have = columns_of(
                &conn,
                &resource,
                &current_database(&conn, &resource)?,
                table,
            )?;
            for (col, ty) in columns_of(&conn, &resource, "temp", "ledgerlake_load")? {
                if !have.iter().any(|(c, _)| c.eq_ignore_ascii_case(&col)) {
                    run(&format!(
                        "ALTER TABLE {target} ADD COLUMN {} {ty}",
                        quote_ident(&col)
                    ))?;
                }
            }
            run(&format!(
                "INSERT INTO {target} BY NAME SELECT * FROM temp.main.ledgerlake_load"
            ))?;
        }
        run("DROP TABLE temp.main.ledgerlake_load")?;
        Ok(u64::try_from(rows).unwrap_or(0))
    })();
    match result {
        Ok(rows) => {
            run("COMMIT")?;
            tracing::debug!(%dataset, %table, rows, "loaded NDJSON");
            Ok(rows)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Loads the lines of `objects` in `bucket` into the temporary table
/// `table` with DuckDB's own reader (the connection may read exactly those
/// files and nothing else) and runs `then`, all in one transaction, if every
/// object holds what it should.
fn load_lines_blocking(
    layout: &Layout,
    dataset: &str,
    table: &str,
    bucket: &str,
    objects: &[ExpectedObject],
    then: &str,
    limits: DuckDbLimits,
) -> CloudResult<Vec<LoadedObject>> {
    let resource = format!("table {table} in dataset {dataset}");
    let path = existing_file(layout, dataset)?;
    if !layout.bucket_meta(bucket).exists() {
        return Err(CloudError::not_found(format!("bucket {bucket}")));
    }
    let root = layout.bucket_dir(bucket);
    let mut files = Vec::with_capacity(objects.len());
    for object in objects {
        let key = &object.key;
        fsio::validate_key(bucket, key)?;
        let file = root.join(key);
        // A regular file of the bucket's own folder, never a link out of it.
        match fs::symlink_metadata(&file) {
            Ok(meta) if meta.is_file() && file.starts_with(&root) => files.push(file),
            _ => {
                return Err(CloudError::not_found(format!(
                    "object {} in bucket {bucket}",
                    shown(key)
                )))
            }
        }
    }
    let root_text = root.to_str().ok_or_else(|| {
        CloudError::permanent(&resource, "the data directory's path is not UTF-8")
    })?;
    // Each step's time, for the debug log (where a batch's time goes).
    let started = Instant::now();
    // First what each object holds, before anything is loaded.
    let mut read = Vec::with_capacity(objects.len());
    for (expected, file) in objects.iter().zip(&files) {
        let object = read_page(&expected.key, file, PAGE_READ_BUFFER)
            .map_err(|e| fsio::io_fail(&resource, file, &e))?;
        let matches = expected.matches(&object);
        read.push(object);
        if !matches {
            return Ok(read);
        }
    }
    let checked = started.elapsed();
    let allowed: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let conn = open_loader(&resource, &path, &allowed, limits)?;
    let opened = started.elapsed();
    let target = format!("temp.main.{}", quote_ident(table));
    let run = |sql: &str| conn.execute_batch(sql).map_err(|e| duck_err(&resource, &e));
    let fail = |e: duckdb::Error| duck_err(&resource, &e);
    // The object's key is its path after the bucket's folder.
    let object = format!("substr(filename, {})", root_text.len() + 2);
    let list = files
        .iter()
        .map(|f| quote_literal(&f.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(", ");
    run("BEGIN TRANSACTION")?;
    let mut split = Duration::ZERO;
    let mut merged = Duration::ZERO;
    let result = (|| -> CloudResult<()> {
        run(&format!(
            "CREATE TEMP TABLE {target} (object VARCHAR NOT NULL, line BIGINT NOT NULL, text VARCHAR NOT NULL)"
        ))?;
        if !files.is_empty() {
            run(&format!(
                "INSERT INTO {target} (object, line, text) \
                 SELECT object, line, text FROM ( \
                     SELECT {object} AS object, unnest(lines) AS text, \
                            generate_subscripts(lines, 1) AS line \
                       FROM (SELECT filename, string_split(content, chr(10)) AS lines \
                               FROM read_text([{list}])) \
                 ) WHERE text <> ''"
            ))?;
        }
        // The objects changed between the two reads: nothing happens.
        let loaded: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {target}"), [], |r| r.get(0))
            .map_err(fail)?;
        let expected: u64 = objects.iter().map(|o| o.lines).sum();
        if u64::try_from(loaded).ok() != Some(expected) {
            return Err(CloudError::transient(
                &resource,
                format!("{loaded} lines were loaded where {expected} were read first: an object changed meanwhile"),
            ));
        }
        split = started.elapsed();
        run(then)?;
        merged = started.elapsed();
        run(&format!("DROP TABLE {target}"))
    })();
    if let Err(e) = result {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(e);
    }
    run("COMMIT")?;
    let committed = started.elapsed();
    drop(conn);
    let ms = |d: Duration| d.as_millis();
    tracing::debug!(
        %dataset, %table, %bucket, objects = objects.len(),
        check_ms = ms(checked),
        open_ms = ms(opened.saturating_sub(checked)),
        split_ms = ms(split.saturating_sub(opened)),
        merge_ms = ms(merged.saturating_sub(split)),
        commit_ms = ms(committed.saturating_sub(merged)),
        close_ms = ms(started.elapsed().saturating_sub(committed)),
        "loaded lines"
    );
    Ok(read)
}

/// The buffer a page is read through to hash it.
const PAGE_READ_BUFFER: usize = 1 << 20;

/// What the page `key` at `path` holds (its SHA-256 and lines), read here
/// rather than by DuckDB, whose SHA-256 (no SHA instructions) took about 3.5
/// times as long over the same pages (BENCHMARKS.md).
fn read_page(key: &str, path: &Path, buffer: usize) -> std::io::Result<LoadedObject> {
    let mut file = fs::File::open(path)?;
    let mut digest = PageDigest::new();
    let mut buf = vec![0u8; buffer.max(1)];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(digest.finish(key.to_owned())),
            Ok(n) => digest.update(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn current_database(conn: &Connection, resource: &str) -> CloudResult<String> {
    conn.query_row("SELECT current_database()", [], |r| r.get(0))
        .map_err(|e| duck_err(resource, &e))
}

fn list_tables_blocking(
    layout: &Layout,
    dataset: &str,
    limits: DuckDbLimits,
) -> CloudResult<Vec<TableInfo>> {
    let resource = dataset_resource(dataset);
    let path = existing_file(layout, dataset)?;
    let conn = open_read_only(&resource, &path, limits)?;
    let names = |sql: &str| -> CloudResult<Vec<String>> {
        let mut stmt = conn.prepare(sql).map_err(|e| duck_err(&resource, &e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| duck_err(&resource, &e))?;
        rows.collect::<duckdb::Result<Vec<_>>>()
            .map_err(|e| duck_err(&resource, &e))
    };
    let mut out = Vec::new();
    for table in names(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() \
         AND schema_name = 'main' AND NOT internal",
    )? {
        let rows: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM main.{}", quote_ident(&table)),
                [],
                |r| r.get(0),
            )
            .map_err(|e| duck_err(&resource, &e))?;
        out.push(TableInfo {
            name: table,
            rows: u64::try_from(rows).ok(),
        });
    }
    for view in names(
        "SELECT view_name FROM duckdb_views() WHERE database_name = current_database() \
         AND schema_name = 'main' AND NOT internal",
    )? {
        out.push(TableInfo {
            name: view,
            rows: None,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The statement wrapped so that DuckDB itself stops after `limit` rows (the
/// result is materialised, so the cap must apply before, not after). The
/// newlines keep a trailing `--` comment from swallowing the closing parenthesis.
fn capped(sql: &str, limit: usize) -> String {
    let mut body = sql.trim();
    while let Some(rest) = body.strip_suffix(';') {
        body = rest.trim_end();
    }
    format!("SELECT * FROM (\n{body}\n) AS ledgerlake_query LIMIT {limit}")
}

fn query_blocking(
    layout: &Layout,
    readers: &Readers,
    limits: DuckDbLimits,
    req: &QueryRequest,
    handle_tx: oneshot::Sender<Arc<InterruptHandle>>,
    timed_out: &AtomicBool,
) -> CloudResult<QueryResult> {
    let resource = dataset_resource(&req.dataset);
    let path = existing_file(layout, &req.dataset)?;
    // A writer in another process (a job refreshing the dataset) holds the
    // file for a while: wait for it within the query's time, then say so.
    let conn = loop {
        match readers.connection(&resource, &path, || {
            open_read_only(&resource, &path, limits)
        }) {
            Ok(conn) => break conn,
            Err(CloudError::Transient { .. }) if !timed_out.load(Ordering::SeqCst) => {
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(CloudError::Transient { .. }) => {
                return Err(CloudError::transient(
                    resource.clone(),
                    "the dataset was being written (a refresh under way) for the whole query timeout; try again",
                ))
            }
            Err(e) => return Err(e),
        }
    };
    let _ = handle_tx.send(conn.interrupt_handle());
    let timeout_err = || {
        CloudError::permanent(
            resource.clone(),
            format!(
                "the query ran longer than its timeout of {} ms and was cancelled",
                req.timeout.as_millis()
            ),
        )
    };
    if timed_out.load(Ordering::SeqCst) {
        return Err(timeout_err());
    }
    let fail = |e: duckdb::Error| {
        if timed_out.load(Ordering::SeqCst) {
            timeout_err()
        } else {
            duck_err(&resource, &e)
        }
    };
    let limit = req.max_rows.saturating_add(1);
    let mut stmt = conn.prepare(&capped(&req.sql, limit)).map_err(fail)?;
    let mut rows = stmt.query([]).map_err(fail)?;
    let columns: Vec<Column> = match rows.as_ref() {
        Some(s) => (0..s.column_count())
            .map(|i| Column {
                name: s.column_name(i).cloned().unwrap_or_default(),
                data_type: sqlvalue::sql_type(&s.column_type(i)),
            })
            .collect(),
        None => Vec::new(),
    };
    let mut out = Vec::new();
    let mut truncated = false;
    while let Some(row) = rows.next().map_err(fail)? {
        if out.len() == req.max_rows {
            truncated = true;
            break;
        }
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            let v: duckdb::types::Value = row.get(i).map_err(fail)?;
            values.push(sqlvalue::to_json(&v));
        }
        out.push(values);
    }
    Ok(QueryResult {
        columns,
        rows: out,
        truncated,
    })
}

type DatasetLocks = StdMutex<HashMap<String, Arc<RwLock<()>>>>;

/// Datasets as DuckDB files under `warehouse/`, their metadata under `meta/datasets/`.
#[derive(Debug, Clone)]
pub struct LocalWarehouse {
    layout: Arc<Layout>,
    auth: Authoriser,
    locks: Arc<DatasetLocks>,
    /// Read-only opens kept between queries.
    readers: Readers,
    limits: DuckDbLimits,
}

impl LocalWarehouse {
    /// With the default [`DuckDbLimits`].
    pub fn new(layout: Arc<Layout>, auth: Authoriser) -> Self {
        LocalWarehouse {
            layout,
            auth,
            locks: Arc::new(StdMutex::new(HashMap::new())),
            readers: Readers::new(),
            limits: DuckDbLimits::default(),
        }
    }

    /// What its DuckDB connections may use.
    pub fn with_limits(mut self, limits: DuckDbLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The dataset's lock: queries share it (read-only opens of one file
    /// coexist), everything that writes or replaces the file holds it alone.
    fn dataset_lock(&self, name: &str) -> Arc<RwLock<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(name.to_owned()).or_default().clone()
    }

    /// Runs `f` on a blocking thread while holding the dataset's lock alone.
    async fn with_dataset<T, F>(&self, name: &str, f: F) -> CloudResult<T>
    where
        F: FnOnce(&Layout) -> CloudResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let guard = self.dataset_lock(name).write_owned().await;
        self.run_locked(name, guard, f).await
    }

    async fn run_locked<T, F>(
        &self,
        name: &str,
        guard: OwnedRwLockWriteGuard<()>,
        f: F,
    ) -> CloudResult<T>
    where
        F: FnOnce(&Layout) -> CloudResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let layout = self.layout.clone();
        let readers = self.readers.clone();
        let file = layout.dataset_file(name);
        fsio::blocking(&dataset_resource(name), move || {
            let _guard = guard;
            // Readers in this and other processes let go of the file.
            let _notice = WriterNotice::announce(&readers, &file);
            f(&layout)
        })
        .await
    }

    async fn authorise(
        &self,
        cred: &Credential,
        dataset: &str,
        permission: Permission,
    ) -> CloudResult<()> {
        fsio::validate_name("dataset", dataset)?;
        self.auth
            .authorise(cred, &ResourceRef::Dataset(dataset.to_owned()), permission)
            .await
    }
}

#[async_trait]
impl Warehouse for LocalWarehouse {
    async fn ensure_dataset(&self, spec: &DatasetSpec) -> CloudResult<Dataset> {
        fsio::validate_name("dataset", &spec.name)?;
        let spec = spec.clone();
        let name = spec.name.clone();
        self.with_dataset(&name, move |layout| {
            let resource = dataset_resource(&spec.name);
            let meta = layout.dataset_meta(&spec.name);
            // The record before the file: a crash in between leaves a record
            // whose file the next ensure creates.
            let dataset = match fsio::read_json::<Dataset>(&resource, &meta)? {
                Some(existing) => existing,
                None => {
                    let fresh = Dataset {
                        name: spec.name.clone(),
                        labels: spec.labels.clone(),
                        created_at: fsio::now(),
                    };
                    let bytes = fsio::to_json(&resource, &fresh)?;
                    let target = ResourceRef::Dataset(spec.name.clone());
                    if create_resource_record(layout, &target, &meta, &bytes)? {
                        tracing::debug!(dataset = %spec.name, "created dataset");
                        fresh
                    } else {
                        read_dataset(layout, &spec.name)?
                    }
                }
            };
            fsio::check_owner(&resource, &dataset.labels, &spec.labels)?;
            create_database_file(layout, &spec.name)?;
            Ok(dataset)
        })
        .await
    }

    async fn get_dataset(&self, name: &str) -> CloudResult<Dataset> {
        fsio::validate_name("dataset", name)?;
        let layout = self.layout.clone();
        let name = name.to_owned();
        // A record whose database file is missing (a crash between the two)
        // is not a dataset yet: NotFound sends the caller to ensure_dataset,
        // which adopts the record and creates the file.
        fsio::blocking("dataset", move || {
            existing_file(&layout, &name)?;
            read_dataset(&layout, &name)
        })
        .await
    }

    async fn list_datasets(&self, labels: &Labels) -> CloudResult<Vec<Dataset>> {
        let layout = self.layout.clone();
        let labels = labels.clone();
        fsio::blocking("datasets", move || {
            let mut out = Vec::new();
            for name in fsio::json_names("datasets", &layout.dataset_meta_dir())? {
                match read_dataset(&layout, &name) {
                    Ok(d) if fsio::has_labels(&d.labels, &labels) => out.push(d),
                    Ok(_) | Err(CloudError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete_dataset(&self, name: &str) -> CloudResult<()> {
        fsio::validate_name("dataset", name)?;
        let name_owned = name.to_owned();
        self.with_dataset(name, move |layout| {
            let name = name_owned;
            let resource = dataset_resource(&name);
            let meta = layout.dataset_meta(&name);
            if !meta.exists() {
                return Err(CloudError::not_found(resource));
            }
            remove_policy(layout, &ResourceRef::Dataset(name.clone()))?;
            fsio::remove_file(&resource, &layout.dataset_file(&name))?;
            fsio::remove_file(&resource, &layout.dataset_wal(&name))?;
            // The record last: a crash before it leaves a dataset a second delete finishes.
            fsio::remove_file(&resource, &meta)?;
            tracing::debug!(dataset = %name, "deleted dataset");
            Ok(())
        })
        .await
    }

    async fn list_tables(&self, cred: &Credential, dataset: &str) -> CloudResult<Vec<TableInfo>> {
        self.authorise(cred, dataset, Permission::Read).await?;
        let name = dataset.to_owned();
        let limits = self.limits;
        self.with_dataset(dataset, move |layout| {
            list_tables_blocking(layout, &name, limits)
        })
        .await
    }

    async fn load_ndjson(
        &self,
        cred: &Credential,
        dataset: &str,
        table: &str,
        ndjson: Vec<u8>,
        mode: WriteMode,
    ) -> CloudResult<u64> {
        validate_table(dataset, table)?;
        self.authorise(cred, dataset, Permission::Write).await?;
        let (name, table, limits) = (dataset.to_owned(), table.to_owned(), self.limits);
        self.with_dataset(dataset, move |layout| {
            load_blocking(layout, &name, &table, &ndjson, mode, limits)
        })
        .await
    }

    async fn load_lines(
        &self,
        cred: &Credential,
        dataset: &str,
        table: &str,
        bucket: &str,
        objects: &[ExpectedObject],
        then: &str,
    ) -> CloudResult<Vec<LoadedObject>> {
        validate_table(dataset, table)?;
        self.authorise(cred, dataset, Permission::Write).await?;
        // The files are read by DuckDB, not through the object store: the
        // credential must be one that may read them there.
        fsio::validate_name("bucket", bucket)?;
        self.auth
            .authorise(
                cred,
                &ResourceRef::Bucket(bucket.to_owned()),
                Permission::Read,
            )
            .await?;
        let (name, table, bucket) = (dataset.to_owned(), table.to_owned(), bucket.to_owned());
        let (objects, then, limits) = (objects.to_vec(), then.to_owned(), self.limits);
        self.with_dataset(dataset, move |layout| {
            load_lines_blocking(layout, &name, &table, &bucket, &objects, &then, limits)
        })
        .await
    }

    async fn execute(&self, cred: &Credential, dataset: &str, sql: &str) -> CloudResult<()> {
        self.authorise(cred, dataset, Permission::Write).await?;
        let (name, sql, limits) = (dataset.to_owned(), sql.to_owned(), self.limits);
        self.with_dataset(dataset, move |layout| {
            let resource = dataset_resource(&name);
            let path = existing_file(layout, &name)?;
            let conn = open_writer(&resource, &path, limits)?;
            conn.execute_batch(&sql)
                .map_err(|e| duck_err(&resource, &e))
        })
        .await
    }

    async fn execute_reading(
        &self,
        cred: &Credential,
        dataset: &str,
        sql: &str,
        sources: &[String],
    ) -> CloudResult<()> {
        self.authorise(cred, dataset, Permission::Write).await?;
        // The dataset's own tables are reachable anyway; attaching its file
        // a second time would conflict with the writer.
        let mut sources: Vec<String> = sources
            .iter()
            .filter(|s| s.as_str() != dataset)
            .cloned()
            .collect();
        sources.sort();
        sources.dedup();
        for source in &sources {
            self.authorise(cred, source, Permission::Read).await?;
        }
        // Every file involved is held for the whole call (a source being
        // loaded meanwhile would be read half-written or fail its lock),
        // taken in name order so that two calls cannot deadlock.
        let mut names: Vec<&str> = sources.iter().map(String::as_str).collect();
        names.push(dataset);
        names.sort_unstable();
        let mut guards = Vec::with_capacity(names.len());
        for name in names {
            guards.push(self.dataset_lock(name).write_owned().await);
        }
        let layout = self.layout.clone();
        let readers = self.readers.clone();
        let (name, sql, limits) = (dataset.to_owned(), sql.to_owned(), self.limits);
        fsio::blocking(&dataset_resource(dataset), move || {
            let _guards = guards;
            let _notice = WriterNotice::announce(&readers, &layout.dataset_file(&name));
            let resource = dataset_resource(&name);
            let path = existing_file(&layout, &name)?;
            let attached = sources
                .into_iter()
                .map(|s| existing_file(&layout, &s).map(|p| (s, p)))
                .collect::<CloudResult<Vec<_>>>()?;
            let conn = open_with_sources(&resource, &path, &attached, limits)?;
            conn.execute_batch(&sql)
                .map_err(|e| duck_err(&resource, &e))
        })
        .await
    }

    async fn query(&self, cred: &Credential, req: &QueryRequest) -> CloudResult<QueryResult> {
        self.authorise(cred, &req.dataset, Permission::Read).await?;
        let resource = dataset_resource(&req.dataset);
        // Durations, not `now + timeout` as a deadline: that panics for a
        // timeout past an Instant's range, where tokio's `timeout` waits for ever.
        let started = tokio::time::Instant::now();
        let guard = tokio::time::timeout(req.timeout, self.dataset_lock(&req.dataset).read_owned())
            .await
            .map_err(|_| {
                CloudError::transient(
                    resource.clone(),
                    "the dataset stayed busy with another operation for the whole query timeout",
                )
            })?;
        let (handle_tx, mut handle_rx) = oneshot::channel();
        let timed_out = Arc::new(AtomicBool::new(false));
        let flag = timed_out.clone();
        let request = req.clone();
        let layout = self.layout.clone();
        let readers = self.readers.clone();
        let limits = self.limits;
        let mut task = tokio::task::spawn_blocking(move || {
            let _guard = guard;
            query_blocking(&layout, &readers, limits, &request, handle_tx, &flag)
        });
        let left = req.timeout.saturating_sub(started.elapsed());
        let joined = match tokio::time::timeout(left, &mut task).await {
            Ok(joined) => joined,
            Err(_) => {
                // A real interrupt, repeated until the query stops (the first may
                // land before the statement starts).
                timed_out.store(true, Ordering::SeqCst);
                let mut handle: Option<Arc<InterruptHandle>> = None;
                loop {
                    if handle.is_none() {
                        handle = handle_rx.try_recv().ok();
                    }
                    if let Some(h) = &handle {
                        h.interrupt();
                    }
                    if let Ok(joined) = tokio::time::timeout(INTERRUPT_REPEAT, &mut task).await {
                        tracing::debug!(dataset = %req.dataset, "query interrupted at its timeout");
                        break joined;
                    }
                }
            }
        };
        joined.map_err(|e| CloudError::permanent(resource, format!("internal task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(conn: &Connection, sql: &str) -> String {
        match conn.execute_batch(sql) {
            Ok(()) => panic!("{sql} succeeded"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_read_only_connection_refuses_writes_attach_files_and_settings() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let mine = dir.path().join("mine.duckdb");
        let theirs = dir.path().join("theirs.duckdb");
        for path in [&mine, &theirs] {
            let conn = open_writer("d", path, DuckDbLimits::default()).expect("writer");
            conn.execute_batch("CREATE TABLE t AS SELECT 1 AS x")
                .expect("create");
        }
        let conn = open_read_only("d", &mine, DuckDbLimits::default()).expect("read-only");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("reads its own table");
        assert_eq!(n, 1);
        for sql in [
            "CREATE TABLE evil AS SELECT 1",
            "INSERT INTO t VALUES (2)",
            "DROP TABLE t",
        ] {
            let e = refusal(&conn, sql);
            assert!(e.contains("read-only"), "{sql}: {e}");
        }
        let out = dir.path().join("out.csv");
        for sql in [
            format!("ATTACH '{}' AS other", theirs.display()),
            format!("ATTACH '{}' AS other (READ_ONLY)", theirs.display()),
            "SELECT * FROM read_csv('/etc/passwd')".to_owned(),
            format!("COPY t TO '{}'", out.display()),
        ] {
            let e = refusal(&conn, &sql);
            assert!(e.contains("disabled by configuration"), "{sql}: {e}");
        }
        assert!(!out.exists());
        for sql in [
            "SET enable_external_access = true",
            "SET access_mode = 'READ_WRITE'",
            "SET autoinstall_known_extensions = true",
        ] {
            let e = refusal(&conn, sql);
            assert!(
                e.contains("locked") || e.contains("Cannot change"),
                "{sql}: {e}"
            );
        }
        let e = refusal(&conn, "INSTALL httpfs");
        assert!(!e.is_empty());
    }

    /// The page check agrees with DuckDB, which loads the page, on its
    /// SHA-256 and on its lines that are not empty (the lines the load keeps),
    /// whatever buffer the page is read through.
    #[test]
    fn a_pages_digest_and_lines_are_the_ones_duckdb_reads() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let conn = Connection::open_in_memory().expect("duckdb");
        let pages: [&[u8]; 9] = [
            b"",
            b"\n",
            b"\n\n\n",
            b"{\"a\": 1}",
            b"{\"a\": 1}\n",
            b"{\"a\": 1}\n{\"a\": 2}\n",
            b"\n{\"a\": 1}\n\n\n{\"a\": 2}",
            b"{\"a\": 1}\r\n\r\n{\"a\": \"caf\xc3\xa9\"}\n",
            b"x\ny\n\nzz\n\n",
        ];
        for (i, page) in pages.into_iter().enumerate() {
            let path = dir.path().join(format!("{i}.ndjson"));
            fs::write(&path, page).expect("write");
            let (sha, lines): (String, i64) = conn
                .query_row(
                    &format!(
                        "SELECT sha256(content), \
                                len(list_filter(string_split(content, chr(10)), lambda l: l <> '')) \
                           FROM read_text({})",
                        quote_literal(&path.to_string_lossy())
                    ),
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .expect("duckdb reads the page");
            for buffer in [1, 2, 3, 7, PAGE_READ_BUFFER] {
                let read = read_page("page", &path, buffer).expect("digest");
                assert_eq!(read.key, "page");
                assert_eq!(
                    read.sha256,
                    sha.to_ascii_lowercase(),
                    "page {i}, buffer {buffer}"
                );
                assert_eq!(
                    Some(read.lines),
                    u64::try_from(lines).ok(),
                    "page {i}, buffer {buffer}"
                );
            }
        }
        let missing = read_page(
            "missing",
            &dir.path().join("missing.ndjson"),
            PAGE_READ_BUFFER,
        )
        .expect_err("no such page");
        assert_eq!(missing.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn the_loader_reads_exactly_its_files() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let db = dir.path().join("d.duckdb");
        drop(open_writer("d", &db, DuckDbLimits::default()).expect("create"));
        let allowed = dir.path().join("in.ndjson");
        let also = dir.path().join("also.ndjson");
        let other = dir.path().join("other.ndjson");
        for p in [&allowed, &also, &other] {
            fs::write(p, "{\"a\": 1}\n").expect("write");
        }
        let conn = open_loader(
            "d",
            &db,
            &[allowed.as_path(), also.as_path()],
            DuckDbLimits::default(),
        )
        .expect("loader");
        let lit = |p: &Path| quote_literal(&p.to_string_lossy());
        for sql in [
            format!("SELECT count(*) FROM read_json({})", lit(&allowed)),
            format!(
                "SELECT count(*) FROM read_text([{}, {}])",
                lit(&allowed),
                lit(&also)
            ),
            format!("SELECT count(*) FROM read_blob({})", lit(&also)),
        ] {
            let n: i64 = conn
                .query_row(&sql, [], |r| r.get(0))
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert!(n >= 1, "{sql}");
        }
        for sql in [
            format!("SELECT * FROM read_json({})", lit(&other)),
            format!("SELECT * FROM read_text({})", lit(&other)),
            format!(
                "SELECT * FROM read_blob([{}, {}])",
                lit(&allowed),
                lit(&other)
            ),
            format!(
                "SELECT * FROM read_text({})",
                quote_literal(&format!("{}/*.ndjson", dir.path().display()))
            ),
            "SELECT * FROM read_csv('/etc/passwd')".to_owned(),
        ] {
            let e = refusal(&conn, &sql);
            assert!(
                e.contains("disabled by configuration") || e.contains("No files found"),
                "{sql}: {e}"
            );
        }
        let e = refusal(&conn, "SET enable_external_access = true");
        assert!(e.contains("locked"), "{e}");
    }

    #[test]
    fn table_names_are_plain_identifiers() {
        for ok in ["invoices", "_t", "T1", &"a".repeat(128)] {
            validate_table("d", ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "1t", "a-b", "a.b", "a\"b", "a b", &"a".repeat(129)] {
            assert!(validate_table("d", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cap_wraps_the_statement_whole() {
        assert_eq!(
            capped("SELECT 1; ;\n", 11),
            "SELECT * FROM (\nSELECT 1\n) AS ledgerlake_query LIMIT 11"
        );
        assert!(capped("SELECT 1 -- note", 2).contains("-- note\n)"));
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
