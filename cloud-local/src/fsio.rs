//! File helpers shared by the local adapters: name and key validation, atomic
//! and create-new writes, JSON records, cross-process locks and owner checks.
//! Every directory they create is mode 0700 and every file 0600: the data
//! directory holds the books, the state and the keys.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use time::OffsetDateTime;

use cloud::error::{CloudError, CloudResult};
use cloud::naming::{Labels, MANAGED_BY_LABEL, TENANT_LABEL};

/// Longest name (bucket, dataset, secret, job, service-account email, execution id).
pub const NAME_MAX: usize = 255;
/// Longest object key, in bytes (Cloud Storage's limit).
pub const KEY_MAX: usize = 1024;

/// The rule every resource name follows, quoted in refusals.
pub const NAME_RULE: &str =
    "a name is 1 to 255 characters of ASCII letters, digits, '-', '_', '.' \
and '@', and does not start with '.'";

/// The rule every object key follows, quoted in refusals.
pub const KEY_RULE: &str =
    "an object key is 1 to 1024 bytes of '/'-separated segments, none of them \
empty, '.' or '..', without a leading '/', a backslash, a NUL or another control character";

/// A value as it may safely appear in an error or a log line: truncated, escaped.
pub fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

/// Checks that `name` is one safe path segment; `kind` names the resource type
/// in the refusal ("bucket", "dataset", …).
pub fn validate_name(kind: &str, name: &str) -> CloudResult<()> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > NAME_MAX {
        Some("it is too long")
    } else if name.starts_with('.') {
        Some("it starts with '.'")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
    {
        Some("it contains a character other than letters, digits, '-', '_', '.' and '@'")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(CloudError::permanent(
            format!("{kind} {}", shown(name)),
            format!("invalid name: {reason}; {NAME_RULE}"),
        )),
    }
}

/// Checks an object key so that it can only ever name a file inside its bucket.
pub fn validate_key(bucket: &str, key: &str) -> CloudResult<()> {
    let reason = if key.is_empty() {
        Some("it is empty")
    } else if key.len() > KEY_MAX {
        Some("it is longer than 1024 bytes")
    } else if key.starts_with('/') {
        Some("it starts with '/'")
    } else if key.contains('\\') {
        Some("it contains a backslash")
    } else if key.chars().any(char::is_control) {
        Some("it contains a NUL or another control character")
    } else if key.split('/').any(str::is_empty) {
        Some("it has an empty segment")
    } else if key.split('/').any(|s| s == "." || s == "..") {
        Some("it has a '.' or '..' segment")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(CloudError::permanent(
            format!("object {} in bucket {bucket}", shown(key)),
            format!("invalid object key: {reason}; {KEY_RULE}"),
        )),
    }
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Maps an I/O error on `path` to a typed error naming `resource`.
pub fn io_err(resource: &str, path: &Path, err: &std::io::Error) -> CloudError {
    match CloudError::from_io(resource, err) {
        CloudError::Transient {
            resource,
            message,
            source,
        } => CloudError::Transient {
            resource,
            message: format!("{}: {message}", path.display()),
            source,
        },
        CloudError::Permanent {
            resource,
            message,
            source,
        } => CloudError::Permanent {
            resource,
            message: format!("{}: {message}", path.display()),
            source,
        },
        other => other,
    }
}

/// Like [`io_err`], but a missing file is a failure of the store, not an
/// absent resource (for files that must exist when their resource does).
pub fn io_fail(resource: &str, path: &Path, err: &std::io::Error) -> CloudError {
    if err.kind() == ErrorKind::NotFound {
        CloudError::permanent(resource, format!("{}: {err}", path.display()))
    } else {
        io_err(resource, path, err)
    }
}

/// The mode of every directory the adapter creates.
pub const DIR_MODE: u32 = 0o700;
/// The mode of every file the adapter creates.
pub const FILE_MODE: u32 = 0o600;

/// Creates a directory and its parents, its owner's only (mode 0700).
pub fn create_dir_all(resource: &str, path: &Path) -> CloudResult<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .map_err(|e| io_fail(resource, path, &e))
}

/// Checks the data directory before anything is created in it: one that group
/// or others may write is refused, changing nothing (they could replace the
/// books, the state or the keys); one they may only read or enter is made the
/// owner's only. An absent directory passes (it is created 0700).
pub fn secure_data_dir(path: &Path) -> CloudResult<()> {
    let resource = "data directory";
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_fail(resource, path, &e)),
    };
    if !meta.is_dir() {
        return Err(CloudError::permanent(
            resource,
            format!("{} is not a directory", path.display()),
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(CloudError::permanent(
            resource,
            format!(
                "{} may be written by group or others (mode {mode:04o}); it holds the books, \
                 the state and the keys, so it must be its owner's only: chmod 700 {}",
                path.display(),
                path.display()
            ),
        ));
    }
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE))
            .map_err(|e| io_fail(resource, path, &e))?;
        tracing::warn!(
            path = %path.display(),
            was = %format!("{mode:04o}"),
            "the data directory was readable by group or others; it is now its owner's only (0700)"
        );
    }
    Ok(())
}

/// fsyncs a directory so that a rename or create in it is durable.
/// Best effort: not every filesystem supports it.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `data` to a fresh, fsynced temporary file in `tmp_dir` (mode 0600).
fn temp_with(resource: &str, tmp_dir: &Path, data: &[u8]) -> CloudResult<tempfile::NamedTempFile> {
    let mut tmp =
        tempfile::NamedTempFile::new_in(tmp_dir).map_err(|e| io_fail(resource, tmp_dir, &e))?;
    tmp.write_all(data)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| io_fail(resource, tmp.path(), &e))?;
    Ok(tmp)
}

/// Replaces `dest` with `data` atomically: a reader sees the old bytes or the
/// new, never a mix, and a crash leaves one of the two. `tmp_dir` must be on
/// the same filesystem as `dest`.
pub fn write_atomic(resource: &str, tmp_dir: &Path, dest: &Path, data: &[u8]) -> CloudResult<()> {
    let tmp = temp_with(resource, tmp_dir, data)?;
    tmp.persist(dest)
        .map_err(|e| io_err(resource, dest, &e.error))?;
    if let Some(parent) = dest.parent() {
        sync_dir(parent);
    }
    Ok(())
}

/// Creates `dest` holding `data` only if it does not exist yet, atomically (the
/// file appears complete or not at all). Returns false when it already existed.
pub fn create_new_atomic(
    resource: &str,
    tmp_dir: &Path,
    dest: &Path,
    data: &[u8],
) -> CloudResult<bool> {
    let tmp = temp_with(resource, tmp_dir, data)?;
    match tmp.persist_noclobber(dest) {
        Ok(_) => {
            if let Some(parent) = dest.parent() {
                sync_dir(parent);
            }
            Ok(true)
        }
        Err(e) if e.error.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_err(resource, dest, &e.error)),
    }
}

/// Reads a JSON record; `None` when the file does not exist. A file that does
/// not parse is a clear error naming it, never silently replaced.
pub fn read_json<T: DeserializeOwned>(resource: &str, path: &Path) -> CloudResult<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(resource, path, &e)),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        CloudError::permanent(resource, format!("corrupt record {}: {e}", path.display()))
    })
}

pub fn to_json<T: Serialize>(resource: &str, value: &T) -> CloudResult<Vec<u8>> {
    serde_json::to_vec_pretty(value)
        .map_err(|e| CloudError::permanent(resource, format!("cannot encode record: {e}")))
}

/// Removes a file; false when it was already absent.
pub fn remove_file(resource: &str, path: &Path) -> CloudResult<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_fail(resource, path, &e)),
    }
}

/// Removes a directory tree quickly and crash-safely: it is first renamed into
/// `tmp_dir` (atomic on one filesystem), so it vanishes from its place at once
/// and a crash leaves only garbage under `tmp/`. False when it was absent.
pub fn remove_tree(resource: &str, tmp_dir: &Path, path: &Path) -> CloudResult<bool> {
    let trash = tmp_dir.join(format!("trash-{}", uuid::Uuid::new_v4().simple()));
    match fs::rename(path, &trash) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_fail(resource, path, &e)),
    }
    if let Err(e) = fs::remove_dir_all(&trash) {
        // The tree is already gone from its place; what is left is garbage in tmp/.
        tracing::warn!(path = %trash.display(), error = %e, "could not remove a deleted tree");
    }
    Ok(true)
}

/// An exclusive, cross-process lock held until dropped (flock on the file).
pub struct FileLock {
    _file: File,
}

/// Takes the exclusive lock on `path` (created if needed), blocking until free.
// `File::lock` is stable since Rust 1.89; the workspace's declared
// rust-version predates it. Remove this allow once rust-version >= 1.89.
#[allow(clippy::incompatible_msrv)]
pub fn lock(resource: &str, path: &Path) -> CloudResult<FileLock> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| io_fail(resource, path, &e))?;
    file.lock().map_err(|e| io_fail(resource, path, &e))?;
    Ok(FileLock { _file: file })
}

/// Whether a resource labelled `existing` may be adopted by a caller asking for
/// `wanted`: the owner labels (managed-by, tenant) must be the same.
pub fn check_owner(resource: &str, existing: &Labels, wanted: &Labels) -> CloudResult<()> {
    let same = [MANAGED_BY_LABEL, TENANT_LABEL]
        .iter()
        .all(|k| existing.get(*k) == wanted.get(*k));
    if same {
        Ok(())
    } else {
        Err(CloudError::AlreadyExists {
            resource: resource.to_owned(),
            owner: describe_owner(existing),
        })
    }
}

/// "managed-by=ledgerlake, tenant=acme", or a phrase when unlabelled.
pub fn describe_owner(labels: &Labels) -> String {
    let parts: Vec<String> = [MANAGED_BY_LABEL, TENANT_LABEL]
        .iter()
        .filter_map(|k| labels.get(*k).map(|v| format!("{k}={}", shown(v))))
        .collect();
    if parts.is_empty() {
        "an owner without managed-by or tenant labels".to_owned()
    } else {
        parts.join(", ")
    }
}

/// Whether `have` carries every one of `wanted`.
pub fn has_labels(have: &Labels, wanted: &Labels) -> bool {
    wanted.iter().all(|(k, v)| have.get(k) == Some(v))
}

/// The names `<name>.json` in `dir`, for listing records; an absent dir is empty.
pub fn json_names(resource: &str, dir: &Path) -> CloudResult<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(resource, dir, &e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err(resource, dir, &e))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if let Some(name) = file_name.strip_suffix(".json") {
            if validate_name("resource", name).is_ok() {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Runs blocking file or database work off the async runtime.
pub async fn blocking<T, F>(resource: &str, f: F) -> CloudResult<T>
where
    F: FnOnce() -> CloudResult<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(CloudError::permanent(
            resource,
            format!("internal task failed: {e}"),
        )),
    }
}

/// `dir/<name>.json`.
pub fn json_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_safe_segments() {
        for ok in [
            "a",
            "client-acme-bucket",
            "raw_acme",
            "x@local.iam.local",
            "A.b_c-9",
        ] {
            validate_name("bucket", ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let long = "a".repeat(256);
        for bad in [
            "", ".", "..", ".hidden", "a/b", "a\\b", "a\0b", "a b", "é", &long,
        ] {
            let err = validate_name("bucket", bad).expect_err(bad);
            assert!(
                matches!(err, CloudError::Permanent { .. }),
                "{bad}: {err:?}"
            );
            assert!(err.to_string().contains(NAME_RULE), "{err}");
        }
        validate_name("bucket", &"a".repeat(255)).expect("255 is the limit");
    }

    #[test]
    fn keys_cannot_escape_their_bucket() {
        for ok in [
            "a",
            "raw/invoices/2024-01-01.ndjson",
            "a.b/c..d/...",
            "with space/é",
        ] {
            validate_key("b", ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let long = "a".repeat(1025);
        for bad in [
            "",
            "/etc/passwd",
            "a//b",
            "a/",
            "./a",
            "a/./b",
            "../a",
            "a/../../b",
            "..",
            ".",
            "a\\..\\b",
            "a\0b",
            "a\nb",
            &long,
        ] {
            let err = validate_key("b", bad).expect_err(bad);
            assert!(
                matches!(err, CloudError::Permanent { .. }),
                "{bad:?}: {err:?}"
            );
        }
        validate_key("b", &"a".repeat(1024)).expect("1024 bytes is the limit");
    }

    #[test]
    fn shown_truncates_and_escapes() {
        assert_eq!(shown("a\nb"), "a\\nb");
        assert!(shown(&"x".repeat(1000)).chars().count() <= 81);
    }

    #[test]
    fn create_new_never_replaces_and_atomic_write_does() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let dest = dir.path().join("f");
        assert!(create_new_atomic("r", dir.path(), &dest, b"one").expect("create"));
        assert!(!create_new_atomic("r", dir.path(), &dest, b"two").expect("create again"));
        assert_eq!(fs::read(&dest).expect("read"), b"one");
        write_atomic("r", dir.path(), &dest, b"three").expect("write");
        assert_eq!(fs::read(&dest).expect("read"), b"three");
        // Only the destination is left: no temporary file behind.
        let count = fs::read_dir(dir.path()).expect("ls").count();
        assert_eq!(count, 1);
    }

    #[test]
    fn owner_check_compares_only_owner_labels() {
        let mine = Labels::from([
            ("managed-by".to_owned(), "ledgerlake".to_owned()),
            ("tenant".to_owned(), "a".to_owned()),
        ]);
        let mut other_extra = mine.clone();
        other_extra.insert("x".into(), "y".into());
        check_owner("bucket b", &mine, &other_extra).expect("same owner");
        let mut theirs = mine.clone();
        theirs.insert("tenant".into(), "b".into());
        match check_owner("bucket b", &theirs, &mine) {
            Err(CloudError::AlreadyExists { resource, owner }) => {
                assert_eq!(resource, "bucket b");
                assert_eq!(owner, "managed-by=ledgerlake, tenant=b");
            }
            other => panic!("{other:?}"),
        }
        assert!(check_owner("bucket b", &Labels::new(), &mine).is_err());
    }
}
