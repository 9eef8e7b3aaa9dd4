//! Secrets encrypted at rest with AES-256-GCM, versioned like Secret Manager.
//!
//! A version file is `LLS1 ‖ nonce (12 bytes) ‖ ciphertext+tag`, with a fresh
//! random nonce per version and the secret's name and version number as
//! associated data: a file altered, truncated, or moved to another secret or
//! version fails to decrypt, and the caller gets an error, never garbage.

use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use async_trait::async_trait;
use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::auth::Authoriser;
use super::fsio;
use super::identity::{create_resource_record, remove_policy};
use super::layout::Layout;
use cloud::error::{CloudError, CloudResult};
use cloud::naming::Labels;
use cloud::ports::{
    Credential, Permission, ResourceRef, SecretInfo, SecretPayload, SecretSpec, SecretStore,
};

const VERSION_MAGIC: &[u8; 4] = b"LLS1";
const KEYCHECK_MAGIC: &[u8; 4] = b"LLK1";
const KEYCHECK_PLAINTEXT: &[u8] = b"ledgerlake master key check";
const KEYCHECK_AAD: &[u8] = b"ledgerlake keycheck v1";
const NONCE_LEN: usize = 12;
const SECRETS_LOCK: &str = "secrets";
/// Where the master key comes from when the environment does not give it.
pub const MASTER_KEY_ENV: &str = "LEDGERLAKE_MASTER_KEY";

const KEY_FORMAT: &str = "64 hexadecimal characters or the base64 of 32 bytes";

fn master_key_resource() -> &'static str {
    "master key"
}

/// Parses a master key: 64 hex characters or base64 of 32 bytes. The error
/// never repeats the value.
pub fn parse_master_key(value: &str, source: &str) -> CloudResult<[u8; 32]> {
    let value = value.trim();
    let bytes = if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(value).ok()
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(value))
            .ok()
    };
    bytes
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| {
            CloudError::permanent(
                master_key_resource(),
                format!(
                    "{source} is not a valid master key ({} characters given): it must be {KEY_FORMAT}",
                    value.chars().count()
                ),
            )
        })
}

fn wrong_key(layout: &Layout, checked: &Path) -> CloudError {
    CloudError::permanent(
        master_key_resource(),
        format!(
            "the master key does not match the one this data directory's secrets were encrypted \
             with (checked against {}); set {MASTER_KEY_ENV} to the original key or restore {}. \
             Nothing was changed.",
            checked.display(),
            layout.master_key().display()
        ),
    )
}

/// Whether any secret version exists (so that a new key would orphan it).
fn any_version(layout: &Layout) -> CloudResult<Option<(String, u64)>> {
    for name in secret_names(layout)? {
        if let Some(v) = versions(layout, &name)?.last() {
            return Ok(Some((name, *v)));
        }
    }
    Ok(None)
}

/// Reads the key file, refusing one that others may read.
fn read_key_file(path: &Path) -> CloudResult<[u8; 32]> {
    let meta = fs::metadata(path).map_err(|e| fsio::io_fail(master_key_resource(), path, &e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CloudError::permanent(
            master_key_resource(),
            format!(
                "the key file {} is accessible to group or others (mode {mode:04o}); it must be \
                 readable by its owner only: chmod 600 {}",
                path.display(),
                path.display()
            ),
        ));
    }
    let text =
        fs::read_to_string(path).map_err(|e| fsio::io_fail(master_key_resource(), path, &e))?;
    parse_master_key(&text, &format!("the key file {}", path.display()))
}

/// The master key from `configured` (the value of `LEDGERLAKE_MASTER_KEY`), or
/// from `<data-dir>/master.key`, created on first run with mode 0600.
fn load_master_key(layout: &Layout, configured: Option<&str>) -> CloudResult<[u8; 32]> {
    if let Some(value) = configured {
        return parse_master_key(value, MASTER_KEY_ENV);
    }
    let path = layout.master_key();
    if path.exists() {
        return read_key_file(&path);
    }
    if layout.keycheck().exists() || any_version(layout)?.is_some() {
        return Err(CloudError::permanent(
            master_key_resource(),
            format!(
                "{MASTER_KEY_ENV} is not set and the key file {} is missing, but this data \
                 directory already holds secrets encrypted with a master key; set \
                 {MASTER_KEY_ENV} or restore the key file (a new key would make them unreadable)",
                path.display()
            ),
        ));
    }
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    // Temporary files are created 0600; create-new so that two first runs agree on one key.
    if fsio::create_new_atomic(
        master_key_resource(),
        &layout.tmp_dir(),
        &path,
        hex::encode(key).as_bytes(),
    )? {
        tracing::info!(path = %path.display(), "created a new master key file");
        Ok(key)
    } else {
        read_key_file(&path)
    }
}

fn aad(name: &str, version: u64) -> Vec<u8> {
    format!("ledgerlake secret {name} version {version}").into_bytes()
}

fn seal(cipher: &Aes256Gcm, magic: &[u8; 4], plaintext: &[u8], aad: &[u8]) -> CloudResult<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut nonce);
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CloudError::permanent(master_key_resource(), "encryption failed"))?;
    let mut out = Vec::with_capacity(4 + NONCE_LEN + ciphertext.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// None when the bytes are not a sealed blob of this kind or do not authenticate.
fn open_sealed(cipher: &Aes256Gcm, magic: &[u8; 4], sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    let rest = sealed.strip_prefix(magic.as_slice())?;
    if rest.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
}

/// The key check of the key a rotation moves to, present while it runs.
fn next_keycheck(layout: &Layout) -> std::path::PathBuf {
    layout.secrets_dir().join(".keycheck.next")
}

/// The key file a rotation moves to (when the key lives in a file).
fn next_key_file(layout: &Layout) -> std::path::PathBuf {
    layout.master_key().with_file_name("master.key.next")
}

/// Fails clearly when `cipher` is not the key the existing secrets were
/// encrypted with; records a key check on first use.
fn verify_master_key(layout: &Layout, cipher: &Aes256Gcm) -> CloudResult<()> {
    let next = next_keycheck(layout);
    if next.exists() {
        return Err(CloudError::permanent(
            master_key_resource(),
            format!(
                "a master-key rotation of this data directory was interrupted ({} exists): \
                 some secrets are under the new key, some under the old; run `control-plane \
                 secrets rotate-master-key` again to finish it (with the same \
                 {NEW_MASTER_KEY_ENV} when the key is set in the environment). Nothing was \
                 changed.",
                next.display()
            ),
        ));
    }
    let check = layout.keycheck();
    match fs::read(&check) {
        Ok(bytes) => {
            return match open_sealed(cipher, KEYCHECK_MAGIC, &bytes, KEYCHECK_AAD) {
                Some(p) if p == KEYCHECK_PLAINTEXT => Ok(()),
                _ => Err(wrong_key(layout, &check)),
            };
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(fsio::io_fail(master_key_resource(), &check, &e)),
    }
    // No key check yet: if secrets exist, one of them must open with this key.
    if let Some((name, version)) = any_version(layout)? {
        let path = layout.secret_version(&name, version);
        let bytes = fs::read(&path).map_err(|e| fsio::io_fail(master_key_resource(), &path, &e))?;
        if open_sealed(cipher, VERSION_MAGIC, &bytes, &aad(&name, version)).is_none() {
            return Err(wrong_key(layout, &path));
        }
    }
    let sealed = seal(cipher, KEYCHECK_MAGIC, KEYCHECK_PLAINTEXT, KEYCHECK_AAD)?;
    if !fsio::create_new_atomic(master_key_resource(), &layout.tmp_dir(), &check, &sealed)? {
        // Another process wrote it first: check against theirs.
        return verify_master_key(layout, cipher);
    }
    Ok(())
}

/// Where a rotation takes the new master key from when the current one is
/// set in the environment.
pub const NEW_MASTER_KEY_ENV: &str = "LEDGERLAKE_NEW_MASTER_KEY";

/// What [`rotate_master_key`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRotation {
    /// Secret versions re-encrypted with the new key by this call.
    pub reencrypted: usize,
    /// Versions already under the new key (an interrupted rotation resumed).
    pub already_new: usize,
    /// The key file now holding the new key; `None` when the key is set in
    /// the environment (the operator sets the new one there).
    pub key_file: Option<std::path::PathBuf>,
}

/// Whether `cipher` opens the key check at `path`; `None` without one.
fn opens_keycheck(cipher: &Aes256Gcm, path: &Path) -> CloudResult<Option<bool>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(
            open_sealed(cipher, KEYCHECK_MAGIC, &bytes, KEYCHECK_AAD).as_deref()
                == Some(KEYCHECK_PLAINTEXT),
        )),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(fsio::io_fail(master_key_resource(), path, &e)),
    }
}

fn rename(from: &Path, to: &Path) -> CloudResult<()> {
    fs::rename(from, to).map_err(|e| fsio::io_fail(master_key_resource(), from, &e))?;
    if let Some(dir) = to.parent() {
        // The rename must survive a crash before the next step relies on it.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Re-encrypts every secret version of the data directory under a new master
/// key. `current`: the value of `LEDGERLAKE_MASTER_KEY` (`None`: the key
/// file); `new`: the value of [`NEW_MASTER_KEY_ENV`] (`None`: generated, and
/// only when the key lives in the key file); `running`: the executions
/// (`job/id`) that were handed the current key and may still write, asked
/// for under the lock (the caller's: executions are the job runner's
/// records, not the secrets'). Holds the secrets' lock throughout, and
/// refuses while any such execution remains. Each version is replaced
/// atomically, and the key check and key file last, so a crash anywhere
/// leaves a state that opening refuses clearly and that running the rotation
/// again (with the same new key) finishes. Blocking (file I/O).
pub(crate) fn rotate_master_key(
    layout: &Layout,
    current: Option<&str>,
    new: Option<&str>,
    running: impl FnOnce() -> CloudResult<Vec<String>>,
) -> CloudResult<KeyRotation> {
    let resource = master_key_resource();
    let _lock = fsio::lock(resource, &layout.lock_file(SECRETS_LOCK))?;
    let running = running()?;
    if !running.is_empty() {
        return Err(CloudError::permanent(
            resource,
            format!(
                "{} execution(s) were handed the current key and may still write a secret ({}): \
                 stop the service and wait until they end (`control-plane runs list`), then \
                 rotate. Nothing was changed.",
                running.len(),
                running.join(", ")
            ),
        ));
    }
    let in_file = current.is_none();
    let key_file = layout.master_key();
    let next_file = next_key_file(layout);
    let old_key = match current {
        Some(value) => parse_master_key(value, MASTER_KEY_ENV)?,
        None if key_file.exists() => read_key_file(&key_file)?,
        None => {
            return Err(CloudError::permanent(
                resource,
                format!(
                    "there is no master key to rotate: {MASTER_KEY_ENV} is not set and {} does \
                     not exist",
                    key_file.display()
                ),
            ))
        }
    };
    let new_key = match new {
        Some(value) => parse_master_key(value, NEW_MASTER_KEY_ENV)?,
        None if in_file && next_file.exists() => read_key_file(&next_file)?,
        None if in_file => {
            let mut key = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut key);
            key
        }
        None => {
            return Err(CloudError::permanent(
                resource,
                format!(
                    "the master key is set by {MASTER_KEY_ENV}, so the new one must be given in \
                     {NEW_MASTER_KEY_ENV} ({KEY_FORMAT}): generate it, keep it where the current \
                     one is kept, then rotate"
                ),
            ))
        }
    };
    if new_key == old_key {
        return Err(CloudError::permanent(
            resource,
            "the new master key is the current one; nothing was changed",
        ));
    }
    let old = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&old_key));
    let new = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&new_key));
    let check = layout.keycheck();
    let next_check = next_keycheck(layout);
    match (opens_keycheck(&old, &check)?, opens_keycheck(&new, &check)?) {
        // Interrupted after the key check moved: only the key file is left.
        (_, Some(true)) => {
            if in_file && next_file.exists() {
                rename(&next_file, &key_file)?;
            }
            return Ok(KeyRotation {
                reencrypted: 0,
                already_new: versions_count(layout)?,
                key_file: in_file.then(|| key_file.clone()),
            });
        }
        (Some(false), _) => return Err(wrong_key(layout, &check)),
        _ => {}
    }
    if opens_keycheck(&new, &next_check)? == Some(false) {
        return Err(CloudError::permanent(
            resource,
            format!(
                "an interrupted rotation to another key is under way ({} does not open with the \
                 new key given): give the same new key. Nothing was changed.",
                next_check.display()
            ),
        ));
    }
    // Where the new key will be, before any secret depends on it.
    if in_file {
        fsio::create_new_atomic(
            resource,
            &layout.tmp_dir(),
            &next_file,
            hex::encode(new_key).as_bytes(),
        )?;
    }
    let sealed = seal(&new, KEYCHECK_MAGIC, KEYCHECK_PLAINTEXT, KEYCHECK_AAD)?;
    fsio::create_new_atomic(resource, &layout.tmp_dir(), &next_check, &sealed)?;
    let mut done = KeyRotation {
        reencrypted: 0,
        already_new: 0,
        key_file: in_file.then(|| key_file.clone()),
    };
    for name in secret_names(layout)? {
        for version in versions(layout, &name)? {
            let path = layout.secret_version(&name, version);
            let bytes = fs::read(&path).map_err(|e| fsio::io_fail(resource, &path, &e))?;
            let aad = aad(&name, version);
            if open_sealed(&new, VERSION_MAGIC, &bytes, &aad).is_some() {
                done.already_new += 1;
                continue;
            }
            let Some(plain) = open_sealed(&old, VERSION_MAGIC, &bytes, &aad) else {
                return Err(CloudError::permanent(
                    secret_resource(&name),
                    format!(
                        "version {version} ({}) opens with neither the current nor the new key \
                         (altered or moved): the rotation stopped there; restore or remove the \
                         file, then run it again to finish",
                        path.display()
                    ),
                ));
            };
            let sealed = seal(&new, VERSION_MAGIC, &plain, &aad)?;
            fsio::write_atomic(&secret_resource(&name), &layout.tmp_dir(), &path, &sealed)?;
            done.reencrypted += 1;
        }
    }
    // The key check moves first: from here the new key is the one.
    rename(&next_check, &check)?;
    if in_file {
        rename(&next_file, &key_file)?;
    }
    tracing::info!(
        reencrypted = done.reencrypted,
        already_new = done.already_new,
        "rotated the master key"
    );
    Ok(done)
}

fn versions_count(layout: &Layout) -> CloudResult<usize> {
    let mut n = 0;
    for name in secret_names(layout)? {
        n += versions(layout, &name)?.len();
    }
    Ok(n)
}

/// `secrets/<name>/meta.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SecretMeta {
    name: String,
    labels: Labels,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

fn secret_resource(name: &str) -> String {
    format!("secret {name}")
}

fn secret_names(layout: &Layout) -> CloudResult<Vec<String>> {
    let dir = layout.secrets_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(fsio::io_err("secrets", &dir, &e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| fsio::io_err("secrets", &dir, &e))?;
        if let Some(name) = entry.file_name().to_str() {
            if fsio::validate_name("secret", name).is_ok() && entry.path().is_dir() {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// The version numbers present, ascending.
fn versions(layout: &Layout, name: &str) -> CloudResult<Vec<u64>> {
    let dir = layout.secret_versions_dir(name);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(fsio::io_err(&secret_resource(name), &dir, &e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| fsio::io_err(&secret_resource(name), &dir, &e))?;
        if let Some(n) = entry
            .file_name()
            .to_str()
            .and_then(|f| f.strip_suffix(".enc"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            if n > 0 {
                out.push(n);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn read_meta(layout: &Layout, name: &str) -> CloudResult<SecretMeta> {
    let resource = secret_resource(name);
    fsio::read_json::<SecretMeta>(&resource, &layout.secret_meta(name))?
        .ok_or_else(|| CloudError::not_found(resource))
}

fn read_info(layout: &Layout, name: &str) -> CloudResult<SecretInfo> {
    let meta = read_meta(layout, name)?;
    Ok(SecretInfo {
        latest_version: versions(layout, name)?.last().copied(),
        name: meta.name,
        labels: meta.labels,
        created_at: meta.created_at,
    })
}

/// Secrets under `secrets/<name>/`, encrypted with the data directory's master key.
#[derive(Clone)]
pub struct LocalSecretStore {
    layout: Arc<Layout>,
    auth: Authoriser,
    cipher: Arc<Aes256Gcm>,
}

// The cipher holds the master key: never print it.
impl fmt::Debug for LocalSecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSecretStore")
            .field("layout", &self.layout)
            .field("cipher", &"<redacted>")
            .finish()
    }
}

impl LocalSecretStore {
    /// Loads the master key (`master_key`: the value of `LEDGERLAKE_MASTER_KEY`,
    /// else the key file) and checks it against the data directory's secrets.
    /// Blocking; fails clearly on a wrong key and changes nothing then.
    pub fn open(
        layout: Arc<Layout>,
        auth: Authoriser,
        master_key: Option<&str>,
    ) -> CloudResult<Self> {
        let key = load_master_key(&layout, master_key)?;
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key));
        verify_master_key(&layout, &cipher)?;
        Ok(LocalSecretStore {
            layout,
            auth,
            cipher: Arc::new(cipher),
        })
    }

    async fn authorise(
        &self,
        cred: &Credential,
        name: &str,
        permission: Permission,
    ) -> CloudResult<()> {
        fsio::validate_name("secret", name)?;
        self.auth
            .authorise(cred, &ResourceRef::Secret(name.to_owned()), permission)
            .await
    }

    fn destroy_old_versions_blocking(
        &self,
        name: &str,
        keep: usize,
        before: OffsetDateTime,
    ) -> CloudResult<usize> {
        let layout = &self.layout;
        let resource = secret_resource(name);
        let _lock = fsio::lock(&resource, &layout.lock_file(SECRETS_LOCK))?;
        read_meta(layout, name)?;
        let all = versions(layout, name)?;
        let older = all.len().saturating_sub(keep);
        let mut destroyed = 0;
        for version in all.into_iter().take(older) {
            let path = layout.secret_version(name, version);
            let created = match fs::metadata(&path).and_then(|m| m.modified()) {
                Ok(t) => OffsetDateTime::from(t),
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(fsio::io_err(&resource, &path, &e)),
            };
            if created >= before {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => destroyed += 1,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(fsio::io_err(&resource, &path, &e)),
            }
        }
        Ok(destroyed)
    }

    fn add_version_blocking(&self, name: &str, payload: &[u8]) -> CloudResult<u64> {
        let layout = &self.layout;
        let resource = secret_resource(name);
        let _lock = fsio::lock(&resource, &layout.lock_file(SECRETS_LOCK))?;
        read_meta(layout, name)?;
        // Never reuse a number, even one whose file is gone: the counter
        // remembers the highest ever allocated.
        let counter_path = layout.secret_dir(name).join("next_version");
        let counter = fs::read_to_string(&counter_path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(1);
        let after_files = versions(layout, name)?
            .last()
            .map_or(1, |v| v.saturating_add(1));
        let version = counter.max(after_files).max(1);
        let sealed = seal(&self.cipher, VERSION_MAGIC, payload, &aad(name, version))?;
        fsio::create_dir_all(&resource, &layout.secret_versions_dir(name))?;
        let path = layout.secret_version(name, version);
        if !fsio::create_new_atomic(&resource, &layout.tmp_dir(), &path, &sealed)? {
            return Err(CloudError::transient(
                resource,
                format!("version {version} appeared while it was being added; try again"),
            ));
        }
        fsio::write_atomic(
            &resource,
            &layout.tmp_dir(),
            &counter_path,
            (version + 1).to_string().as_bytes(),
        )?;
        tracing::debug!(secret = %name, version, "added secret version");
        Ok(version)
    }

    fn access_latest_blocking(&self, name: &str) -> CloudResult<(u64, SecretPayload)> {
        let layout = &self.layout;
        let resource = secret_resource(name);
        read_meta(layout, name)?;
        let Some(version) = versions(layout, name)?.last().copied() else {
            return Err(CloudError::not_found(format!(
                "{resource} (it has no version yet)"
            )));
        };
        let path = layout.secret_version(name, version);
        let sealed = fs::read(&path).map_err(|e| fsio::io_err(&resource, &path, &e))?;
        match open_sealed(&self.cipher, VERSION_MAGIC, &sealed, &aad(name, version)) {
            Some(plain) => Ok((version, SecretPayload::new(plain))),
            None => Err(CloudError::permanent(
                resource,
                format!(
                    "version {version} ({}) could not be decrypted: the file was altered, \
                     truncated, or moved from another secret or version",
                    path.display()
                ),
            )),
        }
    }
}

#[async_trait]
impl SecretStore for LocalSecretStore {
    async fn ensure_secret(&self, spec: &SecretSpec) -> CloudResult<SecretInfo> {
        fsio::validate_name("secret", &spec.name)?;
        let layout = self.layout.clone();
        let spec = spec.clone();
        fsio::blocking("secret", move || {
            let resource = secret_resource(&spec.name);
            let meta_path = layout.secret_meta(&spec.name);
            if fsio::read_json::<SecretMeta>(&resource, &meta_path)?.is_none() {
                fsio::create_dir_all(&resource, &layout.secret_versions_dir(&spec.name))?;
                let fresh = SecretMeta {
                    name: spec.name.clone(),
                    labels: spec.labels.clone(),
                    created_at: fsio::now(),
                };
                let bytes = fsio::to_json(&resource, &fresh)?;
                let target = ResourceRef::Secret(spec.name.clone());
                if create_resource_record(&layout, &target, &meta_path, &bytes)? {
                    tracing::debug!(secret = %spec.name, "created secret");
                }
            }
            let info = read_info(&layout, &spec.name)?;
            fsio::check_owner(&resource, &info.labels, &spec.labels)?;
            Ok(info)
        })
        .await
    }

    async fn get_secret(&self, name: &str) -> CloudResult<SecretInfo> {
        fsio::validate_name("secret", name)?;
        let layout = self.layout.clone();
        let name = name.to_owned();
        fsio::blocking("secret", move || read_info(&layout, &name)).await
    }

    async fn list_secrets(&self, labels: &Labels) -> CloudResult<Vec<SecretInfo>> {
        let layout = self.layout.clone();
        let labels = labels.clone();
        fsio::blocking("secrets", move || {
            let mut out = Vec::new();
            for name in secret_names(&layout)? {
                match read_info(&layout, &name) {
                    Ok(info) if fsio::has_labels(&info.labels, &labels) => out.push(info),
                    Ok(_) | Err(CloudError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete_secret(&self, name: &str) -> CloudResult<()> {
        fsio::validate_name("secret", name)?;
        let layout = self.layout.clone();
        let name = name.to_owned();
        fsio::blocking("secret", move || {
            let resource = secret_resource(&name);
            let _lock = fsio::lock(&resource, &layout.lock_file(SECRETS_LOCK))?;
            if !layout.secret_meta(&name).exists() {
                return Err(CloudError::not_found(resource));
            }
            remove_policy(&layout, &ResourceRef::Secret(name.clone()))?;
            // One rename removes the record and every version together.
            fsio::remove_tree(&resource, &layout.tmp_dir(), &layout.secret_dir(&name))?;
            tracing::debug!(secret = %name, "deleted secret");
            Ok(())
        })
        .await
    }

    async fn add_version(
        &self,
        cred: &Credential,
        name: &str,
        payload: &SecretPayload,
    ) -> CloudResult<u64> {
        self.authorise(cred, name, Permission::Write).await?;
        let this = self.clone();
        let name = name.to_owned();
        let payload = payload.clone();
        fsio::blocking("secret", move || {
            this.add_version_blocking(&name, payload.expose())
        })
        .await
    }

    async fn destroy_old_versions(
        &self,
        name: &str,
        keep: usize,
        before: OffsetDateTime,
    ) -> CloudResult<usize> {
        let this = self.clone();
        let name = name.to_owned();
        fsio::blocking("secret", move || {
            this.destroy_old_versions_blocking(&name, keep, before)
        })
        .await
    }

    async fn access_latest(
        &self,
        cred: &Credential,
        name: &str,
    ) -> CloudResult<(u64, SecretPayload)> {
        self.authorise(cred, name, Permission::Read).await?;
        let this = self.clone();
        let name = name.to_owned();
        fsio::blocking("secret", move || this.access_latest_blocking(&name)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_keys_parse_from_hex_or_base64_and_errors_do_not_echo() {
        let hex_key = "ab".repeat(32);
        assert_eq!(parse_master_key(&hex_key, "k").expect("hex"), [0xab; 32]);
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(
            parse_master_key(&format!(" {b64}\n"), "k").expect("b64"),
            [7; 32]
        );
        for bad in ["", "short-secret-value", &"ab".repeat(31), &"zz".repeat(32)] {
            let err = parse_master_key(bad, MASTER_KEY_ENV).expect_err(bad);
            let msg = err.to_string();
            assert!(
                msg.contains(MASTER_KEY_ENV) && msg.contains("64 hexadecimal"),
                "{msg}"
            );
            if !bad.is_empty() {
                assert!(!msg.contains(bad), "the error echoes the value: {msg}");
            }
        }
    }

    #[test]
    fn sealed_blobs_bind_their_associated_data() {
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&[1u8; 32]));
        let sealed = seal(&cipher, VERSION_MAGIC, b"payload", &aad("s", 1)).expect("seal");
        assert_eq!(
            open_sealed(&cipher, VERSION_MAGIC, &sealed, &aad("s", 1)).as_deref(),
            Some(b"payload".as_slice())
        );
        assert!(open_sealed(&cipher, VERSION_MAGIC, &sealed, &aad("s", 2)).is_none());
        assert!(open_sealed(&cipher, VERSION_MAGIC, &sealed, &aad("t", 1)).is_none());
        assert!(open_sealed(&cipher, KEYCHECK_MAGIC, &sealed, &aad("s", 1)).is_none());
        let other = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&[2u8; 32]));
        assert!(open_sealed(&other, VERSION_MAGIC, &sealed, &aad("s", 1)).is_none());
        // Two seals of the same payload differ (fresh nonce).
        let again = seal(&cipher, VERSION_MAGIC, b"payload", &aad("s", 1)).expect("seal");
        assert_ne!(sealed, again);
        assert!(open_sealed(&cipher, VERSION_MAGIC, &sealed[..10], &aad("s", 1)).is_none());
    }
}
