//! The local adapter: the embedded default, needing no cloud account.
//!
//! Everything lives under one data directory (`--data-dir`, env
//! `LEDGERLAKE_DATA_DIR`, default `./.ledgerlake`). Back it up whole, with
//! the control plane stopped; `tmp/` need not be kept. It is its owner's
//! only: directories 0700, files 0600; opening refuses a data directory that
//! group or others may write, and makes one they may read private. The layout:
//!
//! ```text
//! <data-dir>/
//!   master.key                        the secrets' master key (64 hex chars, mode 0600), created on
//!                                     first run unless LEDGERLAKE_MASTER_KEY is set. KEEP IT: without
//!                                     it no secret can be read.
//!   buckets/<bucket>/<key>            one file per object; the key's '/'-separated segments are folders
//!   meta/buckets/<bucket>.json        bucket metadata: name, labels, created_at
//!   warehouse/<dataset>.duckdb        one DuckDB database per dataset (tables in its `main` schema),
//!                                     plus `<dataset>.duckdb.wal` while it is open
//!   meta/datasets/<dataset>.json      dataset metadata: name, labels, created_at
//!   iam/service-accounts/<email>.json service account: email, unique_id, display_name, labels, the
//!                                     SHA-256 of its key (never the key)
//!   iam/keys/<email>.key              the service account's key (64 hex chars, mode 0600)
//!   iam/policies/<kind>/<name>.json   IAM policy (bindings, etag) of a bucket, dataset or secret;
//!                                     `project/<project>.json` is the project's
//!   secrets/.keycheck                 a constant encrypted with the master key, to detect a wrong key
//!   secrets/<name>/meta.json          secret metadata: name, labels, created_at
//!   secrets/<name>/versions/<n>.enc   version n: "LLS1" ‖ 12-byte nonce ‖ AES-256-GCM ciphertext+tag,
//!                                     authenticated together with the secret's name and n
//!   secrets/<name>/next_version       the next version number (numbers are never reused)
//!   jobs/<job>.json                   job definition: the JobSpec, created_at, updated_at
//!   jobs/executions/<job>/<id>.json   an execution: state, pid, exit code, times
//!   jobs/executions/<job>/<id>.log    its stdout and stderr
//!   locks/*.lock                      cross-process locks for read-modify-write (IAM, secrets, jobs)
//!   tmp/                              temporary files; renamed into place, so writes are atomic;
//!                                     `duckdb-<uuid>/` while a DuckDB connection spills past
//!                                     LEDGERLAKE_LOCAL_DUCKDB_MEMORY_MIB (default 192)
//! ```
//!
//! Every name (bucket, dataset, secret, job, email) is a single path segment
//! of letters, digits, `-`, `_`, `.` and `@` not starting with `.`; object
//! keys are checked so that no key can leave its bucket's folder.
//!
//! Administrative calls (ensure, get, list, delete, IAM) are the platform's
//! own. Every data-plane call runs as a [`Credential`](cloud::Credential) and
//! goes through one [`Authoriser`]: the platform may do anything; a service
//! account must present its key and hold a role on that very resource.

mod auth;
mod fsio;
mod identity;
mod jobs;
mod layout;
mod objects;
mod policies;
mod readers;
mod secrets;
mod sqlvalue;
mod warehouse;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use auth::Authoriser;
pub use fsio::{KEY_RULE, NAME_RULE};
pub use identity::{LocalIdentity, ACCOUNT_ID_RULE, EMPTY_POLICY_ETAG};
pub use jobs::{LocalJobRunner, CANCELLED, INHERITED_ENV, MAX_JOBS_ENV, PROCESS_DIED, RUNNER_ENV};
pub use layout::Layout;
pub use objects::LocalObjectStore;
pub use policies::PolicyCache;
pub use secrets::{
    parse_master_key, KeyRotation, LocalSecretStore, MASTER_KEY_ENV, NEW_MASTER_KEY_ENV,
};
pub use warehouse::{
    DuckDbLimits, LocalWarehouse, DEFAULT_MEMORY_MIB, MEMORY_ENV, TABLE_RULE, THREADS_ENV,
};

use cloud::error::{CloudError, CloudResult};
use cloud::Cloud;

/// The project local service-account emails live in when none is configured.
pub const DEFAULT_PROJECT: &str = "local";

/// How to open the local adapter.
#[derive(Clone)]
pub struct LocalConfig {
    pub data_dir: PathBuf,
    /// The project in service-account emails: `<account_id>@<project>.iam.local`.
    pub project: String,
    /// The value of `LEDGERLAKE_MASTER_KEY` (64 hex characters or base64 of 32
    /// bytes); `None` to use (or create) `<data-dir>/master.key`.
    pub master_key: Option<String>,
}

impl LocalConfig {
    /// The data directory with the default project and the key file.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        LocalConfig {
            data_dir: data_dir.into(),
            project: DEFAULT_PROJECT.to_owned(),
            master_key: None,
        }
    }
}

// The master key is a secret: never print it.
impl fmt::Debug for LocalConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalConfig")
            .field("data_dir", &self.data_dir)
            .field("project", &self.project)
            .field(
                "master_key",
                &self.master_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The local adapters as their concrete types.
#[derive(Debug, Clone)]
pub struct LocalAdapters {
    pub layout: Arc<Layout>,
    pub objects: Arc<LocalObjectStore>,
    pub warehouse: Arc<LocalWarehouse>,
    pub identity: Arc<LocalIdentity>,
    pub secrets: Arc<LocalSecretStore>,
    pub jobs: Arc<LocalJobRunner>,
}

fn validate_project(project: &str) -> CloudResult<()> {
    let ok = (1..=63).contains(&project.len())
        && project.starts_with(|c: char| c.is_ascii_lowercase())
        && !project.ends_with('-')
        && project
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(CloudError::permanent(
            format!("project {}", fsio::shown(project)),
            "invalid project: 1 to 63 characters of lowercase letters, digits and hyphens, \
             starting with a letter and not ending with a hyphen",
        ))
    }
}

/// Temporary files older than this are left over from a crash and removed on open.
const STALE_TMP: Duration = Duration::from_secs(24 * 60 * 60);

/// Removes what crashed writers and deletes left in `tmp/` (best effort; a
/// day's grace so that no live writer of another process loses its file).
fn clean_tmp(layout: &Layout) {
    let Ok(entries) = std::fs::read_dir(layout.tmp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > STALE_TMP);
        if stale {
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if let Err(e) = removed {
                tracing::debug!(path = %path.display(), error = %e, "could not remove a stale temporary file");
            }
        }
    }
}

impl LocalAdapters {
    /// Creates the directory tree if needed, loads the master key and checks it
    /// against the secrets already stored. Blocking (file I/O only). A wrong
    /// master key, or a data directory others may write, fails here, clearly,
    /// and changes nothing.
    pub fn open(config: &LocalConfig) -> CloudResult<Self> {
        validate_project(&config.project)?;
        let max_jobs = LocalJobRunner::max_running_from_env()?;
        let resource = "data directory";
        fsio::secure_data_dir(&config.data_dir)?;
        fsio::create_dir_all(resource, &config.data_dir)?;
        // Absolute paths from here on: DuckDB's allowed paths and the jobs'
        // LEDGERLAKE_DATA_DIR must not depend on the working directory.
        let root = std::fs::canonicalize(&config.data_dir)
            .map_err(|e| fsio::io_fail(resource, &config.data_dir, &e))?;
        let layout = Arc::new(Layout::new(root, config.project.clone()));
        layout.create()?;
        clean_tmp(&layout);
        let policies = Arc::new(PolicyCache::new());
        let auth = Authoriser::new(layout.clone(), policies.clone());
        let secrets = Arc::new(LocalSecretStore::open(
            layout.clone(),
            auth.clone(),
            config.master_key.as_deref(),
        )?);
        let identity = Arc::new(LocalIdentity::new(layout.clone(), policies));
        let limits = DuckDbLimits::from_env()?;
        tracing::debug!(data_dir = %config.data_dir.display(), project = %config.project, "opened the local cloud");
        Ok(LocalAdapters {
            objects: Arc::new(LocalObjectStore::new(layout.clone(), auth.clone())),
            warehouse: Arc::new(
                LocalWarehouse::new(layout.clone(), auth.clone()).with_limits(limits),
            ),
            jobs: Arc::new(
                LocalJobRunner::with_max_running(layout.clone(), max_jobs)
                    .with_master_key(config.master_key.as_deref())
                    .with_secrets(identity.clone(), secrets.clone()),
            ),
            identity,
            secrets,
            layout,
        })
    }

    pub fn into_cloud(self) -> Cloud {
        Cloud {
            objects: self.objects,
            warehouse: self.warehouse,
            identity: self.identity,
            secrets: self.secrets,
            jobs: self.jobs,
        }
    }
}

/// Re-encrypts the secrets of `config.data_dir` under a new master key
/// (`new_key`: the value of `LEDGERLAKE_NEW_MASTER_KEY`; generated when the
/// key lives in the data directory's key file). Safe to run again after a
/// crash. Blocking. See `secrets::rotate_master_key`.
pub fn rotate_master_key(config: &LocalConfig, new_key: Option<&str>) -> CloudResult<KeyRotation> {
    validate_project(&config.project)?;
    let root = std::fs::canonicalize(&config.data_dir)
        .map_err(|e| fsio::io_fail("data directory", &config.data_dir, &e))?;
    let layout = Layout::new(root, config.project.clone());
    secrets::rotate_master_key(&layout, config.master_key.as_deref(), new_key, || {
        jobs::running_executions(&layout)
    })
}

/// Opens the local adapter on `config.data_dir` (see [`LocalAdapters::open`]).
pub fn open(config: &LocalConfig) -> CloudResult<Cloud> {
    LocalAdapters::open(config).map(LocalAdapters::into_cloud)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn a_data_directory_others_may_write_is_refused_and_left_alone() {
        let root = tempfile::TempDir::new().expect("tempdir");
        for loose in [0o777, 0o770, 0o1777, 0o702] {
            let dir = root.path().join(format!("d{loose:o}"));
            std::fs::create_dir(&dir).expect("mkdir");
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(loose)).expect("chmod");
            let err = LocalAdapters::open(&LocalConfig::new(&dir)).expect_err("refused");
            let message = err.to_string();
            assert!(
                message.contains(&format!("{loose:04o}"))
                    && message.contains(&dir.display().to_string()),
                "{message}"
            );
            assert!(matches!(err, CloudError::Permanent { .. }), "{err:?}");
            assert_eq!(
                std::fs::read_dir(&dir).expect("ls").count(),
                0,
                "nothing created"
            );
            assert_eq!(mode(&dir), loose, "nothing changed");
        }
    }

    #[test]
    fn what_the_adapter_creates_is_its_owners_only() {
        let root = tempfile::TempDir::new().expect("tempdir");
        // Readable by others: made private.
        let dir = root.path().join("data");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let adapters = LocalAdapters::open(&LocalConfig::new(&dir)).expect("open");
        assert_eq!(mode(&dir), 0o700);
        let layout = &adapters.layout;
        for created in [
            layout.tmp_dir(),
            layout.locks_dir(),
            layout.buckets_dir(),
            layout.warehouse_dir(),
            layout.keys_dir(),
            layout.secrets_dir(),
            layout.executions_root(),
            layout.policies_dir().join("bucket"),
        ] {
            assert_eq!(mode(&created), 0o700, "{}", created.display());
        }
        assert_eq!(mode(&layout.master_key()), 0o600);
        let _lock = fsio::lock("test", &layout.lock_file("test")).expect("lock");
        assert_eq!(mode(&layout.lock_file("test")), 0o600);
    }
}
