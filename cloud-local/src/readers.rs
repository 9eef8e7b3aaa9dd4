//! Read-only opens of dataset files, kept between queries, and the writers'
//! notice that makes them let go.
//!
//! Opening a DuckDB file costs more than many queries on it (its catalog is
//! read each time: ~14 ms for a 100,000-invoice tenant), so a query reuses an
//! open read-only database of its dataset (each query on its own connection
//! to it, so they run side by side) while the file is unchanged (same device,
//! inode, size and modification time). But a read-only open holds a shared
//! lock on the file, and a writer in another process (a `tenant-job`
//! transforming the tenant) needs it exclusive. So a writer first leaves a
//! notice beside the file (`<file>.writing`, holding its process id); from
//! then readers wait (within their queries' time) instead of opening it, and
//! a sweeper drops kept opens that have a notice or were idle for [`IDLE`], so
//! the writer gets the file within about [`SWEEP`]. The writer waits for that
//! with its notice up (a query already running finishes first; see the
//! warehouse's `WRITER_WAIT`), so readers cannot take the file back between
//! its tries. A notice left by a process that no longer runs is ignored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use duckdb::Connection;

use cloud::error::{CloudError, CloudResult};

/// A kept open unused for this long is closed.
pub const IDLE: Duration = Duration::from_secs(1);

/// How often kept opens are checked.
pub const SWEEP: Duration = Duration::from_millis(100);

/// What identifies one version of a file: replaced or rewritten, it differs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileIdentity {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

fn identity(path: &Path) -> Option<FileIdentity> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(FileIdentity {
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.len(),
        modified: meta.modified().ok(),
    })
}

fn notice_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".writing");
    PathBuf::from(name)
}

/// Whether a writer that still runs has left a notice on `path`.
fn writer_waiting(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(notice_path(path)) else {
        return false;
    };
    match text
        .trim()
        .parse::<i32>()
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        // Our own notice: this process's writer holds the dataset's lock, so
        // no query of ours runs meanwhile; kept opens were already dropped.
        Some(pid) if pid == rustix::process::getpid() => true,
        // Signal 0 tests for the process; "not permitted" means it exists.
        Some(pid) => match rustix::process::test_kill_process(pid) {
            Ok(()) => true,
            Err(e) => e == rustix::io::Errno::PERM,
        },
        None => false,
    }
}

struct Kept {
    conn: Connection,
    identity: FileIdentity,
    last_used: Instant,
}

type KeptMap = Mutex<HashMap<PathBuf, Kept>>;

/// The kept read-only opens of one data directory's datasets.
#[derive(Clone)]
pub struct Readers {
    kept: Arc<KeptMap>,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.kept.lock().map(|k| k.len()).unwrap_or(0);
        f.debug_struct("Readers").field("kept", &count).finish()
    }
}

impl Default for Readers {
    fn default() -> Self {
        Self::new()
    }
}

impl Readers {
    /// Starts the sweeper, which ends when the last handle is dropped.
    pub fn new() -> Readers {
        let kept: Arc<KeptMap> = Arc::new(Mutex::new(HashMap::new()));
        let weak: Weak<KeptMap> = Arc::downgrade(&kept);
        let spawned = std::thread::Builder::new()
            .name("ledgerlake-readers".to_owned())
            .spawn(move || sweep_until_dropped(&weak));
        if let Err(e) = spawned {
            // Without a sweeper nothing is kept (see `connection`).
            tracing::warn!(error = %e, "no reader sweeper; datasets are opened per query");
        }
        Readers { kept }
    }

    /// A read-only connection to `path`: a new connection to a kept open of
    /// the file when it is unchanged, else a fresh open kept for the next
    /// query. `Transient` while a writer's notice is on the file (the caller
    /// waits, within its own time, and asks again).
    pub fn connection(
        &self,
        resource: &str,
        path: &Path,
        open: impl Fn() -> CloudResult<Connection>,
    ) -> CloudResult<Connection> {
        if writer_waiting(path) {
            // The writer goes first: opening now, even briefly, would keep
            // taking the lock it is trying to get while queries keep coming.
            self.evict(path);
            return Err(CloudError::transient(
                resource,
                "a writer is updating the dataset; try again when it is done",
            ));
        }
        let Some(now) = identity(path) else {
            return open();
        };
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = kept.get_mut(path) {
            if entry.identity == now {
                entry.last_used = Instant::now();
                return entry
                    .conn
                    .try_clone()
                    .map_err(|e| CloudError::permanent(resource, e.to_string()));
            }
            kept.remove(path);
        }
        drop(kept);
        let conn = open()?;
        let clone = conn
            .try_clone()
            .map_err(|e| CloudError::permanent(resource, e.to_string()))?;
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.insert(
            path.to_owned(),
            Kept {
                conn,
                identity: now,
                last_used: Instant::now(),
            },
        );
        Ok(clone)
    }

    /// Closes the kept open of `path`, if any.
    pub fn evict(&self, path: &Path) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.remove(path);
    }

    /// How many opens are kept.
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.kept.lock().map(|k| k.len()).unwrap_or(0)
    }
}

fn sweep_until_dropped(weak: &Weak<KeptMap>) {
    loop {
        std::thread::sleep(SWEEP);
        let Some(kept) = weak.upgrade() else {
            return;
        };
        let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|path, entry| entry.last_used.elapsed() < IDLE && !writer_waiting(path));
    }
}

/// A writer's notice on a dataset file, removed when dropped.
pub struct WriterNotice {
    path: PathBuf,
}

impl WriterNotice {
    /// Leaves the notice (readers elsewhere let go of the file within about
    /// [`SWEEP`]) and drops this process's own kept open of it.
    pub fn announce(readers: &Readers, path: &Path) -> WriterNotice {
        let notice = notice_path(path);
        let pid = rustix::process::getpid().as_raw_nonzero().get();
        // Best effort: without the notice, a reader elsewhere keeps the file
        // until it is idle, and the writer's retries wait that out.
        if let Err(e) = std::fs::write(&notice, pid.to_string()) {
            tracing::debug!(error = %e, "could not leave a writer's notice");
        }
        readers.evict(path);
        WriterNotice { path: notice }
    }
}

impl Drop for WriterNotice {
    fn drop(&mut self) {
        // Only ours: another writer may have replaced it meanwhile.
        let ours = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            == Some(rustix::process::getpid().as_raw_nonzero().get());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_open_is_reused_until_the_file_changes_or_a_writer_waits() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let path = dir.path().join("d.duckdb");
        Connection::open(&path)
            .and_then(|c| c.execute_batch("CREATE TABLE t AS SELECT 1 AS x"))
            .expect("create");
        let readers = Readers::new();
        let opens = std::cell::Cell::new(0);
        let open = || {
            opens.set(opens.get() + 1);
            Connection::open(&path).map_err(|e| CloudError::permanent("d", e.to_string()))
        };
        for _ in 0..3 {
            let conn = readers.connection("d", &path, open).expect("conn");
            let x: i64 = conn
                .query_row("SELECT x FROM t", [], |r| r.get(0))
                .expect("read");
            assert_eq!(x, 1);
        }
        assert_eq!(opens.get(), 1, "one open for three queries");
        assert_eq!(readers.kept(), 1);

        let notice = WriterNotice::announce(&readers, &path);
        assert_eq!(
            readers.kept(),
            0,
            "the writer's own process lets go at once"
        );
        let waiting = readers.connection("d", &path, open);
        assert!(
            matches!(waiting, Err(CloudError::Transient { .. })),
            "no read opens the file while a writer waits"
        );
        assert_eq!(readers.kept(), 0, "nothing is kept while a writer waits");
        drop(notice);
        assert!(!notice_path(&path).exists(), "the notice is removed");
        readers.connection("d", &path, open).expect("conn");
        assert_eq!(readers.kept(), 1);
        std::thread::sleep(IDLE + SWEEP * 3);
        assert_eq!(readers.kept(), 0, "an idle open is closed");
    }

    #[test]
    fn a_notice_of_a_process_that_is_gone_is_ignored() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let path = dir.path().join("d.duckdb");
        std::fs::write(&path, b"x").expect("file");
        // Process ids are below 2^22 on Linux.
        std::fs::write(notice_path(&path), "4194303").expect("notice");
        assert!(!writer_waiting(&path));
        std::fs::write(notice_path(&path), std::process::id().to_string()).expect("notice");
        assert!(writer_waiting(&path));
    }
}
