//! Where every file of the local adapter lives (see the module doc of `local`).

use std::path::{Path, PathBuf};

use super::fsio;
use cloud::error::CloudResult;
use cloud::ports::ResourceRef;

/// The paths of one data directory. Names passed in must already be validated
/// with [`fsio::validate_name`] (every public entry point does so).
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    project: String,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>, project: impl Into<String>) -> Self {
        Layout {
            root: root.into(),
            project: project.into(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    /// Creates every top-level directory of the layout.
    pub fn create(&self) -> CloudResult<()> {
        for dir in [
            self.tmp_dir(),
            self.locks_dir(),
            self.buckets_dir(),
            self.bucket_meta_dir(),
            self.dataset_meta_dir(),
            self.warehouse_dir(),
            self.service_accounts_dir(),
            self.keys_dir(),
            self.secrets_dir(),
            self.jobs_dir(),
            self.executions_root(),
        ] {
            fsio::create_dir_all("data directory", &dir)?;
        }
        for kind in ["bucket", "dataset", "secret", "project"] {
            fsio::create_dir_all("data directory", &self.policies_dir().join(kind))?;
        }
        Ok(())
    }

    /// Temporary files, on the same filesystem as everything else so renames are atomic.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Lock files for cross-process read-modify-write; never deleted.
    pub fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }

    pub fn lock_file(&self, name: &str) -> PathBuf {
        self.locks_dir().join(format!("{name}.lock"))
    }

    pub fn buckets_dir(&self) -> PathBuf {
        self.root.join("buckets")
    }

    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.buckets_dir().join(bucket)
    }

    pub fn bucket_meta_dir(&self) -> PathBuf {
        self.root.join("meta").join("buckets")
    }

    pub fn bucket_meta(&self, bucket: &str) -> PathBuf {
        fsio::json_path(&self.bucket_meta_dir(), bucket)
    }

    pub fn dataset_meta_dir(&self) -> PathBuf {
        self.root.join("meta").join("datasets")
    }

    pub fn dataset_meta(&self, dataset: &str) -> PathBuf {
        fsio::json_path(&self.dataset_meta_dir(), dataset)
    }

    pub fn warehouse_dir(&self) -> PathBuf {
        self.root.join("warehouse")
    }

    pub fn dataset_file(&self, dataset: &str) -> PathBuf {
        self.warehouse_dir().join(format!("{dataset}.duckdb"))
    }

    /// DuckDB's write-ahead log beside the database file.
    pub fn dataset_wal(&self, dataset: &str) -> PathBuf {
        self.warehouse_dir().join(format!("{dataset}.duckdb.wal"))
    }

    pub fn iam_dir(&self) -> PathBuf {
        self.root.join("iam")
    }

    pub fn service_accounts_dir(&self) -> PathBuf {
        self.iam_dir().join("service-accounts")
    }

    pub fn service_account(&self, email: &str) -> PathBuf {
        fsio::json_path(&self.service_accounts_dir(), email)
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.iam_dir().join("keys")
    }

    pub fn key_file(&self, email: &str) -> PathBuf {
        self.keys_dir().join(format!("{email}.key"))
    }

    pub fn policies_dir(&self) -> PathBuf {
        self.iam_dir().join("policies")
    }

    /// `iam/policies/<kind>/<name>.json`; the project's is named after the project.
    pub fn policy(&self, resource: &ResourceRef) -> PathBuf {
        let (kind, name) = match resource {
            ResourceRef::Bucket(n) => ("bucket", n.as_str()),
            ResourceRef::Dataset(n) => ("dataset", n.as_str()),
            ResourceRef::Secret(n) => ("secret", n.as_str()),
            ResourceRef::Project => ("project", self.project.as_str()),
        };
        fsio::json_path(&self.policies_dir().join(kind), name)
    }

    pub fn master_key(&self) -> PathBuf {
        self.root.join("master.key")
    }

    pub fn secrets_dir(&self) -> PathBuf {
        self.root.join("secrets")
    }

    pub fn keycheck(&self) -> PathBuf {
        self.secrets_dir().join(".keycheck")
    }

    pub fn secret_dir(&self, name: &str) -> PathBuf {
        self.secrets_dir().join(name)
    }

    pub fn secret_meta(&self, name: &str) -> PathBuf {
        self.secret_dir(name).join("meta.json")
    }

    pub fn secret_versions_dir(&self, name: &str) -> PathBuf {
        self.secret_dir(name).join("versions")
    }

    pub fn secret_version(&self, name: &str, version: u64) -> PathBuf {
        self.secret_versions_dir(name)
            .join(format!("{version}.enc"))
    }

    pub fn jobs_dir(&self) -> PathBuf {
        self.root.join("jobs")
    }

    pub fn job(&self, name: &str) -> PathBuf {
        fsio::json_path(&self.jobs_dir(), name)
    }

    pub fn executions_root(&self) -> PathBuf {
        self.jobs_dir().join("executions")
    }

    pub fn executions_dir(&self, job: &str) -> PathBuf {
        self.executions_root().join(job)
    }

    pub fn execution(&self, job: &str, id: &str) -> PathBuf {
        fsio::json_path(&self.executions_dir(job), id)
    }

    pub fn execution_log(&self, job: &str, id: &str) -> PathBuf {
        self.executions_dir(job).join(format!("{id}.log"))
    }
}
