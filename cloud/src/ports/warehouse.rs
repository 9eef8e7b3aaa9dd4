//! The warehouse: datasets (administered by the platform), tables, loading and
//! SQL (run as a credential).

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::Credential;
use crate::error::CloudResult;
use crate::naming::Labels;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetSpec {
    pub name: String,
    pub labels: Labels,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    pub name: String,
    pub labels: Labels,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableInfo {
    pub name: String,
    pub rows: Option<u64>,
}

/// An object [`Warehouse::load_lines`] reads, with what it must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedObject {
    pub key: String,
    /// The SHA-256 of its bytes, in hex.
    pub sha256: String,
    /// Its lines that are not empty.
    pub lines: u64,
}

impl ExpectedObject {
    /// Whether `read` is this object as expected.
    pub fn matches(&self, read: &LoadedObject) -> bool {
        read.key == self.key
            && read.sha256.eq_ignore_ascii_case(&self.sha256)
            && read.lines == self.lines
    }
}

/// What [`Warehouse::load_lines`] read of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedObject {
    pub key: String,
    /// The SHA-256 of the object's bytes, in lower-case hex.
    pub sha256: String,
    /// The rows loaded from it: its lines that are not empty.
    pub lines: u64,
}

/// What an object holds as [`Warehouse::load_lines`] checks it: the SHA-256
/// of its bytes and its lines that are not empty, fed in chunks of any size
/// (every adapter reads an object its own way, and all count alike).
#[derive(Debug, Clone, Default)]
pub struct PageDigest {
    hasher: Sha256,
    lines: u64,
    /// Whether bytes of a line not yet counted were fed already.
    in_line: bool,
}

impl PageDigest {
    pub fn new() -> Self {
        Self::default()
    }

    /// The object's next bytes.
    pub fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', chunk) {
            if end > start || self.in_line {
                self.lines += 1;
            }
            self.in_line = false;
            start = end + 1;
        }
        if start < chunk.len() {
            self.in_line = true;
        }
    }

    /// What the object `key`, fed whole, holds.
    pub fn finish(self, key: String) -> LoadedObject {
        LoadedObject {
            key,
            sha256: hex::encode(self.hasher.finalize()),
            lines: self.lines + u64::from(self.in_line),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    Append,
    /// Replace the table's contents in one step.
    Truncate,
}

/// A read-only query against one dataset, with the limits it runs under.
#[derive(Debug, Clone)]
pub struct QueryRequest {
    pub dataset: String,
    pub sql: String,
    /// Rows returned at most; the result says when more existed.
    pub max_rows: usize,
    pub timeout: Duration,
    /// Bytes the query may scan (BigQuery's `maximumBytesBilled`); `None` for no cap.
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub data_type: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryResult {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<serde_json::Value>>,
    /// True when the query produced more than `max_rows` rows.
    pub truncated: bool,
}

#[async_trait]
pub trait Warehouse: Send + Sync {
    /// Creates the dataset, or returns it when it already exists with the same labels.
    async fn ensure_dataset(&self, spec: &DatasetSpec) -> CloudResult<Dataset>;
    async fn get_dataset(&self, name: &str) -> CloudResult<Dataset>;
    async fn list_datasets(&self, labels: &Labels) -> CloudResult<Vec<Dataset>>;
    /// Deletes the dataset with its tables. `NotFound` when it is absent.
    async fn delete_dataset(&self, name: &str) -> CloudResult<()>;

    async fn list_tables(&self, cred: &Credential, dataset: &str) -> CloudResult<Vec<TableInfo>>;
    /// Loads newline-delimited JSON into `table`, creating it with the inferred
    /// schema when absent. Returns the rows loaded.
    async fn load_ndjson(
        &self,
        cred: &Credential,
        dataset: &str,
        table: &str,
        ndjson: Vec<u8>,
        mode: WriteMode,
    ) -> CloudResult<u64>;
    /// Loads the lines of newline-delimited objects of `bucket` into
    /// `table`, a table that exists only for the statements `then`, and runs
    /// `then` on `dataset` (in the same transaction, where the warehouse has
    /// one). Each line is kept whole as text: one row per line that is not
    /// empty, with the columns `object` (text: the object's key), `line`
    /// (integer: the line's number in its object, from 1, empty lines
    /// counted) and `text` (text: the line, without its `\n`). The objects
    /// are read first, and the load and `then` happen only if each holds
    /// what `objects` says (its SHA-256 and lines); otherwise nothing
    /// changes. The warehouse reads the objects itself where it can, so the
    /// bytes need not pass through the caller. Needs write on `dataset` and
    /// read on `bucket`; a missing object is `NotFound`. Returns what was
    /// read of each object, in the order of `objects` (up to the first that
    /// differs, when one does).
    async fn load_lines(
        &self,
        cred: &Credential,
        dataset: &str,
        table: &str,
        bucket: &str,
        objects: &[ExpectedObject],
        then: &str,
    ) -> CloudResult<Vec<LoadedObject>>;
    /// Runs statements that change the dataset (the transformation's DDL and DML).
    async fn execute(&self, cred: &Credential, dataset: &str, sql: &str) -> CloudResult<()>;
    /// Like [`Warehouse::execute`], but the statements may also read the
    /// tables of the `sources` datasets, named `<source>.<table>` (the
    /// transformation builds the transformed dataset from the raw one this
    /// way). Needs write on `dataset` and read on every source; the sources
    /// are never written.
    async fn execute_reading(
        &self,
        cred: &Credential,
        dataset: &str,
        sql: &str,
        sources: &[String],
    ) -> CloudResult<()>;
    /// Runs one read-only query confined to `req.dataset`.
    async fn query(&self, cred: &Credential, req: &QueryRequest) -> CloudResult<QueryResult>;
}
