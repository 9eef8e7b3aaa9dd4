//! Reads IAM policy files through a cache that is checked against the file on
//! every read.
//!
//! Why: the project's policy holds a binding for every tenant, and every
//! access check and every reconcile pass reads it; parsing it each time made a
//! pass over n tenants cost O(n²). A cached entry is used only while the file's
//! inode, size and modification time are unchanged. Policy writes replace the
//! file by rename (a new inode), so another process's write is always seen.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::fsio;
use cloud::error::CloudResult;
use cloud::ports::Policy;

/// Entries kept before the cache starts over (a policy is small; this bounds
/// memory at a few MiB even for very large data directories).
const MAX_ENTRIES: usize = 16_384;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

#[derive(Debug, Default)]
pub struct PolicyCache {
    entries: Mutex<HashMap<PathBuf, (FileStamp, Arc<Policy>)>>,
}

impl PolicyCache {
    pub fn new() -> Self {
        PolicyCache::default()
    }

    /// The policy stored at `path`; `None` when there is no file.
    pub fn read(&self, resource: &str, path: &Path) -> CloudResult<Option<Arc<Policy>>> {
        // Stat before reading: if the file is replaced in between, the entry
        // holds newer content under an older stamp and is simply read again.
        let stamp = match std::fs::metadata(path) {
            Ok(meta) => FileStamp::of(&meta),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.forget(path);
                return Ok(None);
            }
            Err(e) => return Err(fsio::io_err(resource, path, &e)),
        };
        if let Some(policy) = self.cached(path, stamp) {
            return Ok(Some(policy));
        }
        let Some(policy) = fsio::read_json::<Policy>(resource, path)? else {
            self.forget(path);
            return Ok(None);
        };
        let policy = Arc::new(policy);
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(path.to_path_buf(), (stamp, policy.clone()));
        }
        Ok(Some(policy))
    }

    fn cached(&self, path: &Path, stamp: FileStamp) -> Option<Arc<Policy>> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(path)
            .filter(|(s, _)| *s == stamp)
            .map(|(_, p)| p.clone())
    }

    fn forget(&self, path: &Path) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloud::ports::Binding;

    fn write(dir: &Path, path: &Path, policy: &Policy) {
        let bytes = fsio::to_json("p", policy).expect("encode");
        fsio::write_atomic("p", dir, path, &bytes).expect("write");
    }

    fn policy(members: &[&str], etag: &str) -> Policy {
        Policy {
            bindings: vec![Binding {
                role: "roles/x".into(),
                members: members.iter().map(|m| m.to_string()).collect(),
            }],
            etag: etag.into(),
        }
    }

    #[test]
    fn a_replaced_file_is_read_again_and_a_removed_one_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.json");
        let cache = PolicyCache::new();
        assert!(cache.read("p", &path).expect("read").is_none());

        write(dir.path(), &path, &policy(&["user:a"], "e1"));
        let first = cache.read("p", &path).expect("read").expect("some");
        assert_eq!(first.etag, "e1");
        let again = cache.read("p", &path).expect("read").expect("some");
        assert!(
            Arc::ptr_eq(&first, &again),
            "an unchanged file is served from the cache"
        );

        // Same size, written at once: the rename gives a new inode.
        write(dir.path(), &path, &policy(&["user:b"], "e2"));
        let second = cache.read("p", &path).expect("read").expect("some");
        assert_eq!(second.etag, "e2");
        assert!(second.bindings[0].members.contains("user:b"));

        std::fs::remove_file(&path).expect("remove");
        assert!(cache.read("p", &path).expect("read").is_none());
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_stale_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.json");
        let cache = PolicyCache::new();
        write(dir.path(), &path, &policy(&["user:a"], "e1"));
        cache.read("p", &path).expect("read");
        std::fs::write(&path, b"{not json").expect("corrupt");
        assert!(cache.read("p", &path).is_err());
    }
}
