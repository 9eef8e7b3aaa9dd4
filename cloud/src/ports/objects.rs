//! Object storage: buckets (administered by the platform) and objects (read and
//! written as a credential).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Credential;
use crate::error::CloudResult;
use crate::naming::Labels;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSpec {
    pub name: String,
    pub labels: Labels,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub name: String,
    pub labels: Labels,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// Changes with every write of the object (Cloud Storage's generation,
    /// opaque here); what [`Precondition::GenerationMatch`] compares.
    pub generation: String,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A condition checked atomically with a write or delete, as Cloud Storage's
/// `ifGenerationMatch` does. A failed condition is `CloudError::Conflict`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// The object must not exist (`ifGenerationMatch=0`).
    DoesNotExist,
    /// The object must exist at exactly this generation.
    GenerationMatch(String),
}

#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Creates the bucket, or returns it when it already exists with the same labels.
    async fn ensure_bucket(&self, spec: &BucketSpec) -> CloudResult<Bucket>;
    async fn get_bucket(&self, name: &str) -> CloudResult<Bucket>;
    /// Buckets carrying every one of `labels`.
    async fn list_buckets(&self, labels: &Labels) -> CloudResult<Vec<Bucket>>;
    /// Deletes the bucket with every object in it. `NotFound` when it is absent.
    async fn delete_bucket(&self, name: &str) -> CloudResult<()>;

    /// Writes an object atomically: a reader sees the old bytes or the new, never a mix.
    async fn put_object(
        &self,
        cred: &Credential,
        bucket: &str,
        key: &str,
        data: Vec<u8>,
    ) -> CloudResult<ObjectInfo>;
    /// Writes an object only if `condition` holds; `Conflict` when it does not.
    async fn put_object_if(
        &self,
        cred: &Credential,
        bucket: &str,
        key: &str,
        data: Vec<u8>,
        condition: &Precondition,
    ) -> CloudResult<ObjectInfo>;
    async fn get_object(&self, cred: &Credential, bucket: &str, key: &str) -> CloudResult<Vec<u8>>;
    /// An object's bytes with the generation those bytes belong to.
    async fn read_object(
        &self,
        cred: &Credential,
        bucket: &str,
        key: &str,
    ) -> CloudResult<(ObjectInfo, Vec<u8>)>;
    /// Objects whose key starts with `prefix`, in key order.
    async fn list_objects(
        &self,
        cred: &Credential,
        bucket: &str,
        prefix: &str,
    ) -> CloudResult<Vec<ObjectInfo>>;
    async fn delete_object(&self, cred: &Credential, bucket: &str, key: &str) -> CloudResult<()>;
    /// Deletes the object only if it is still at `generation`; `Conflict`
    /// when it changed, `NotFound` when it is gone.
    async fn delete_object_if(
        &self,
        cred: &Credential,
        bucket: &str,
        key: &str,
        generation: &str,
    ) -> CloudResult<()>;
}
