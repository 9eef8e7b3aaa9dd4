//! Buckets as folders of objects, written atomically.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::auth::Authoriser;
use super::fsio;
use super::identity::{create_resource_record, remove_policy};
use super::layout::Layout;
use cloud::error::{CloudError, CloudResult};
use cloud::naming::Labels;
use cloud::ports::{
    Bucket, BucketSpec, Credential, ObjectInfo, ObjectStore, Permission, Precondition, ResourceRef,
};

/// Buckets under `buckets/`, their metadata under `meta/buckets/`.
#[derive(Debug, Clone)]
pub struct LocalObjectStore {
    layout: Arc<Layout>,
    auth: Authoriser,
}

fn bucket_resource(name: &str) -> String {
    format!("bucket {name}")
}

fn object_resource(bucket: &str, key: &str) -> String {
    format!("object {} in bucket {bucket}", fsio::shown(key))
}

fn read_bucket(layout: &Layout, name: &str) -> CloudResult<Bucket> {
    let resource = bucket_resource(name);
    fsio::read_json::<Bucket>(&resource, &layout.bucket_meta(name))?
        .ok_or_else(|| CloudError::not_found(resource))
}

fn info(key: String, meta: &fs::Metadata) -> ObjectInfo {
    ObjectInfo {
        key,
        size: meta.len(),
        generation: generation(meta),
        updated_at: meta
            .modified()
            .map(OffsetDateTime::from)
            .unwrap_or_else(|_| fsio::now()),
    }
}

/// An object's generation: every write replaces the file by rename, so the
/// inode changes with each write; the modification time tells apart a later
/// file that reuses an inode number.
fn generation(meta: &fs::Metadata) -> String {
    format!("{}.{}.{}", meta.ino(), meta.mtime(), meta.mtime_nsec())
}

/// Conditional writes and deletes hold this lock between checking the
/// generation and acting, so two processes cannot both pass one condition.
const PRECONDITION_LOCK: &str = "object-preconditions";

/// The current generation of an object file; `None` when there is none.
fn current_generation(resource: &str, path: &Path) -> CloudResult<Option<String>> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(Some(generation(&meta))),
        Ok(_) => Ok(None),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => Ok(None),
        Err(e) => Err(fsio::io_err(resource, path, &e)),
    }
}

fn check_condition(
    resource: &str,
    current: Option<&str>,
    condition: &Precondition,
) -> CloudResult<()> {
    let holds = match condition {
        Precondition::DoesNotExist => current.is_none(),
        Precondition::GenerationMatch(wanted) => current == Some(wanted.as_str()),
    };
    if holds {
        Ok(())
    } else {
        Err(CloudError::Conflict {
            resource: resource.to_owned(),
        })
    }
}

/// The file of an object whose key has been validated.
fn object_path(layout: &Layout, bucket: &str, key: &str) -> CloudResult<PathBuf> {
    let root = layout.bucket_dir(bucket);
    let path = root.join(key);
    // Validation already makes escaping impossible; this is the second lock on the door.
    if !path.starts_with(&root)
        || path.components().count() != root.components().count() + key.split('/').count()
    {
        return Err(CloudError::permanent(
            object_resource(bucket, key),
            "invalid object key",
        ));
    }
    Ok(path)
}

/// A key/directory clash: Cloud Storage allows `a` and `a/b` together, a filesystem does not.
fn clash(bucket: &str, key: &str) -> CloudError {
    CloudError::permanent(
        object_resource(bucket, key),
        "the key clashes with another object's key (one is a prefix folder of the other); \
         the local adapter cannot store both `a` and `a/b`",
    )
}

fn put_blocking(layout: &Layout, bucket: &str, key: &str, data: &[u8]) -> CloudResult<ObjectInfo> {
    let resource = object_resource(bucket, key);
    read_bucket(layout, bucket)?;
    let path = object_path(layout, bucket, key)?;
    let parent = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| layout.bucket_dir(bucket));
    // A concurrent delete may prune the (then empty) parent between its creation
    // and the rename; try again a few times.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match fs::create_dir_all(&parent) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::NotADirectory | ErrorKind::AlreadyExists
                ) =>
            {
                return Err(clash(bucket, key));
            }
            Err(e) => return Err(fsio::io_fail(&resource, &parent, &e)),
        }
        match fsio::write_atomic(&resource, &layout.tmp_dir(), &path, data) {
            Ok(()) => break,
            Err(CloudError::NotFound { .. }) if attempt < 3 => continue,
            Err(e) if path.is_dir() => {
                tracing::debug!(error = %e, "object put onto a folder");
                return Err(clash(bucket, key));
            }
            Err(e) => return Err(e),
        }
    }
    let meta = fs::metadata(&path).map_err(|e| fsio::io_fail(&resource, &path, &e))?;
    Ok(info(key.to_owned(), &meta))
}

/// Every object under `dir` (keys relative to `root`) starting with `prefix`.
fn walk(
    root: &Path,
    dir: &Path,
    prefix: &str,
    out: &mut Vec<ObjectInfo>,
    resource: &str,
) -> CloudResult<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fsio::io_err(resource, dir, &e)),
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => return Err(fsio::io_err(resource, dir, &e)),
        };
        let path = entry.path();
        // The entry may vanish under a concurrent delete: skip it.
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        let Some(key) = path
            .strip_prefix(root)
            .ok()
            .and_then(Path::to_str)
            .map(str::to_owned)
        else {
            continue;
        };
        if file_type.is_dir() {
            // Descend only where keys with the prefix can be.
            let folder = format!("{key}/");
            if folder.starts_with(prefix) || prefix.starts_with(&folder) {
                walk(root, &path, prefix, out, resource)?;
            }
        } else if file_type.is_file() && key.starts_with(prefix) {
            if let Ok(meta) = entry.metadata() {
                out.push(info(key, &meta));
            }
        }
        // Symbolic links and other special files are never objects.
    }
    Ok(())
}

/// Removes the now-empty folders between an object and its bucket's root.
fn prune_empty_parents(root: &Path, path: &Path) {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

impl LocalObjectStore {
    pub fn new(layout: Arc<Layout>, auth: Authoriser) -> Self {
        LocalObjectStore { layout, auth }
    }

    async fn authorise(
        &self,
        cred: &Credential,
        bucket: &str,
        permission: Permission,
    ) -> CloudResult<()> {
        fsio::validate_name("bucket", bucket)?;
        self.auth
            .authorise(cred, &ResourceRef::Bucket(bucket.to_owned()), permission)
            .await
    }
}

#[async_trait]
impl ObjectStore for LocalObjectStore {
    async fn ensure_bucket(&self, spec: &BucketSpec) -> CloudResult<Bucket> {
        fsio::validate_name("bucket", &spec.name)?;
        let layout = self.layout.clone();
        let spec = spec.clone();
        fsio::blocking("bucket", move || {
            let resource = bucket_resource(&spec.name);
            let meta = layout.bucket_meta(&spec.name);
            let bucket = match fsio::read_json::<Bucket>(&resource, &meta)? {
                Some(existing) => existing,
                None => {
                    let fresh = Bucket {
                        name: spec.name.clone(),
                        labels: spec.labels.clone(),
                        created_at: fsio::now(),
                    };
                    let bytes = fsio::to_json(&resource, &fresh)?;
                    let target = ResourceRef::Bucket(spec.name.clone());
                    if create_resource_record(&layout, &target, &meta, &bytes)? {
                        tracing::debug!(bucket = %spec.name, "created bucket");
                        fresh
                    } else {
                        read_bucket(&layout, &spec.name)?
                    }
                }
            };
            fsio::check_owner(&resource, &bucket.labels, &spec.labels)?;
            // The folder follows the record: a crash in between is adopted here.
            fsio::create_dir_all(&resource, &layout.bucket_dir(&spec.name))?;
            Ok(bucket)
        })
        .await
    }

    async fn get_bucket(&self, name: &str) -> CloudResult<Bucket> {
        fsio::validate_name("bucket", name)?;
        let layout = self.layout.clone();
        let name = name.to_owned();
        fsio::blocking("bucket", move || read_bucket(&layout, &name)).await
    }

    async fn list_buckets(&self, labels: &Labels) -> CloudResult<Vec<Bucket>> {
        let layout = self.layout.clone();
        let labels = labels.clone();
        fsio::blocking("buckets", move || {
            let mut out = Vec::new();
            for name in fsio::json_names("buckets", &layout.bucket_meta_dir())? {
                match read_bucket(&layout, &name) {
                    Ok(b) if fsio::has_labels(&b.labels, &labels) => out.push(b),
                    Ok(_) | Err(CloudError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete_bucket(&self, name: &str) -> CloudResult<()> {
        fsio::validate_name("bucket", name)?;
        let layout = self.layout.clone();
        let name = name.to_owned();
        fsio::blocking("bucket", move || {
            let resource = bucket_resource(&name);
            let meta = layout.bucket_meta(&name);
            if !meta.exists() {
                return Err(CloudError::not_found(resource));
            }
            remove_policy(&layout, &ResourceRef::Bucket(name.clone()))?;
            fsio::remove_tree(&resource, &layout.tmp_dir(), &layout.bucket_dir(&name))?;
            // The record last: until it goes, a crash leaves a bucket that a
            // second delete finishes.
            fsio::remove_file(&resource, &meta)?;
            tracing::debug!(bucket = %name, "deleted bucket");
            Ok(())
        })
        .await
    }

    async fn put_object(
        &self,
        cred: &Credential,
        bucket: &str,
        key: &str,
        data: Vec<u8>,
    ) -> CloudResult<ObjectInfo> {
        fsio::validate_key(bucket, key)?;
        self.authorise(cred, bucket, Permission::Write).await?;
        let layout = self.layout.clone();
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        fsio::blocking("object", move || {
            put_blocking(&layout, &bucket, &key, &data)
        })
        .await
    }

    async fn put_object_if(
        &self,
        cred: &Credential,
        bucket: &str,
        key: &str,
        data: Vec<u8>,
        condition: &Precondition,
    ) -> CloudResult<ObjectInfo> {
        fsio::validate_key(bucket, key)?;
        self.authorise(cred, bucket, Permission::Write).await?;
        let layout = self.layout.clone();
        let (bucket, key, condition) = (bucket.to_owned(), key.to_owned(), condition.clone());
        fsio::blocking("object", move || {
            let resource = object_resource(&bucket, &key);
            read_bucket(&layout, &bucket)?;
            let path = object_path(&layout, &bucket, &key)?;
            let _lock = fsio::lock(&resource, &layout.lock_file(PRECONDITION_LOCK))?;
            let current = current_generation(&resource, &path)?;
            check_condition(&resource, current.as_deref(), &condition)?;
            put_blocking(&layout, &bucket, &key, &data)
        })
        .await
    }

    async fn read_object(
        &self,
        cred: &Credential,
        bucket: &str,
        key: &str,
    ) -> CloudResult<(ObjectInfo, Vec<u8>)> {
        fsio::validate_key(bucket, key)?;
        self.authorise(cred, bucket, Permission::Read).await?;
        let layout = self.layout.clone();
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        fsio::blocking("object", move || {
            read_bucket(&layout, &bucket)?;
            let path = object_path(&layout, &bucket, &key)?;
            let resource = object_resource(&bucket, &key);
            let missing = |e: std::io::Error| match e.kind() {
                ErrorKind::NotFound | ErrorKind::NotADirectory => {
                    CloudError::not_found(resource.clone())
                }
                _ => fsio::io_err(&resource, &path, &e),
            };
            // Bytes and metadata from one open file, so they belong together
            // even if the object is replaced meanwhile.
            let mut file = fs::File::open(&path).map_err(missing)?;
            let meta = file.metadata().map_err(missing)?;
            if !meta.is_file() {
                return Err(CloudError::not_found(resource.clone()));
            }
            let mut data = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
            std::io::Read::read_to_end(&mut file, &mut data).map_err(missing)?;
            Ok((info(key.clone(), &meta), data))
        })
        .await
    }

    async fn get_object(&self, cred: &Credential, bucket: &str, key: &str) -> CloudResult<Vec<u8>> {
        fsio::validate_key(bucket, key)?;
        self.authorise(cred, bucket, Permission::Read).await?;
        let layout = self.layout.clone();
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        fsio::blocking("object", move || {
            read_bucket(&layout, &bucket)?;
            let path = object_path(&layout, &bucket, &key)?;
            let resource = object_resource(&bucket, &key);
            if path.is_dir() {
                return Err(CloudError::not_found(resource));
            }
            fs::read(&path).map_err(|e| match e.kind() {
                ErrorKind::NotADirectory => CloudError::not_found(resource.clone()),
                _ => fsio::io_err(&resource, &path, &e),
            })
        })
        .await
    }

    async fn list_objects(
        &self,
        cred: &Credential,
        bucket: &str,
        prefix: &str,
    ) -> CloudResult<Vec<ObjectInfo>> {
        self.authorise(cred, bucket, Permission::Read).await?;
        let layout = self.layout.clone();
        let (bucket, prefix) = (bucket.to_owned(), prefix.to_owned());
        fsio::blocking("objects", move || {
            read_bucket(&layout, &bucket)?;
            let root = layout.bucket_dir(&bucket);
            let mut out = Vec::new();
            walk(&root, &root, &prefix, &mut out, &bucket_resource(&bucket))?;
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }

    async fn delete_object(&self, cred: &Credential, bucket: &str, key: &str) -> CloudResult<()> {
        fsio::validate_key(bucket, key)?;
        self.authorise(cred, bucket, Permission::Write).await?;
        let layout = self.layout.clone();
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        fsio::blocking("object", move || {
            read_bucket(&layout, &bucket)?;
            let path = object_path(&layout, &bucket, &key)?;
            let resource = object_resource(&bucket, &key);
            if path.is_dir() {
                return Err(CloudError::not_found(resource));
            }
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                    return Err(CloudError::not_found(resource));
                }
                Err(e) => return Err(fsio::io_err(&resource, &path, &e)),
            }
            prune_empty_parents(&layout.bucket_dir(&bucket), &path);
            Ok(())
        })
        .await
    }

    async fn delete_object_if(
        &self,
        cred: &Credential,
        bucket: &str,
        key: &str,
        generation: &str,
    ) -> CloudResult<()> {
        fsio::validate_key(bucket, key)?;
        self.authorise(cred, bucket, Permission::Write).await?;
        let layout = self.layout.clone();
        let (bucket, key, generation) = (bucket.to_owned(), key.to_owned(), generation.to_owned());
        fsio::blocking("object", move || {
            let resource = object_resource(&bucket, &key);
            read_bucket(&layout, &bucket)?;
            let path = object_path(&layout, &bucket, &key)?;
            let _lock = fsio::lock(&resource, &layout.lock_file(PRECONDITION_LOCK))?;
            let Some(current) = current_generation(&resource, &path)? else {
                return Err(CloudError::not_found(resource));
            };
            check_condition(
                &resource,
                Some(&current),
                &Precondition::GenerationMatch(generation),
            )?;
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(CloudError::not_found(resource));
                }
                Err(e) => return Err(fsio::io_err(&resource, &path, &e)),
            }
            prune_empty_parents(&layout.bucket_dir(&bucket), &path);
            Ok(())
        })
        .await
    }
}
