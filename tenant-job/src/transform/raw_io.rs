//! Reading and writing what the transform keeps of a tenant's raw data: the
//! manifests and state files in its bucket (`job_contract::raw`'s layout) and
//! statements on its raw dataset, each retried while the store says so.
//! Loading, compaction and rewriting all go through here.

use std::time::Duration;

use cloud::ports::{ObjectInfo, QueryRequest, QueryResult};
use cloud::CloudError;
use job_contract::raw::{self, Loaded, Manifest};

use super::{retrying, TransformContext, TransformError};

/// A raw object that is not what it should be.
pub(super) fn bad_raw(key: &str, reason: impl Into<String>) -> TransformError {
    TransformError::BadRaw {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// The bucket or the warehouse failed at `what`.
pub(super) fn storage(what: String) -> impl FnOnce(CloudError) -> TransformError {
    move |source| TransformError::Storage { what, source }
}

/// Every object under `prefix` in the tenant's bucket.
pub(super) async fn list_prefix(
    ctx: &TransformContext,
    prefix: &str,
) -> Result<Vec<ObjectInfo>, TransformError> {
    retrying(|| {
        ctx.cloud
            .objects
            .list_objects(&ctx.cred, &ctx.bucket, prefix)
    })
    .await
    .map_err(storage(format!(
        "listing {prefix} in bucket {}",
        ctx.bucket
    )))
}

/// The manifest `key` in the tenant's bucket.
pub(super) async fn read_manifest(
    ctx: &TransformContext,
    key: &str,
) -> Result<Manifest, TransformError> {
    let bytes = retrying(|| ctx.cloud.objects.get_object(&ctx.cred, &ctx.bucket, key))
        .await
        .map_err(storage(format!("reading {key}")))?;
    serde_json::from_slice(&bytes).map_err(|e| bad_raw(key, format!("not a manifest: {e}")))
}

/// Runs `sql` on the raw dataset, retried while the warehouse says so.
pub(super) async fn execute_raw(ctx: &TransformContext, sql: &str) -> Result<(), CloudError> {
    retrying(|| {
        ctx.cloud
            .warehouse
            .execute(&ctx.cred, &ctx.raw_dataset, sql)
    })
    .await
    .map(|_| ())
}

/// Answers `sql` on the raw dataset (up to ten million rows), retried while
/// the warehouse says so; `what` names it in the error.
pub(super) async fn query_raw(
    ctx: &TransformContext,
    sql: String,
    what: impl FnOnce() -> String,
) -> Result<QueryResult, TransformError> {
    let request = QueryRequest {
        dataset: ctx.raw_dataset.clone(),
        sql,
        max_rows: 10_000_000,
        timeout: Duration::from_secs(600),
        max_bytes: None,
    };
    retrying(|| ctx.cloud.warehouse.query(&ctx.cred, &request))
        .await
        .map_err(|source| TransformError::Storage {
            what: what(),
            source,
        })
}

/// `state/loaded.json`: the manifests loaded so far (none before the first
/// load).
pub(super) async fn read_loaded(ctx: &TransformContext) -> Result<Loaded, TransformError> {
    let read = retrying(|| {
        ctx.cloud
            .objects
            .get_object(&ctx.cred, &ctx.bucket, raw::LOADED_KEY)
    })
    .await;
    match read {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| bad_raw(raw::LOADED_KEY, format!("not valid: {e}"))),
        Err(CloudError::NotFound { .. }) => Ok(Loaded::default()),
        Err(source) => Err(TransformError::Storage {
            what: format!("reading {} from bucket {}", raw::LOADED_KEY, ctx.bucket),
            source,
        }),
    }
}

pub(super) async fn write_loaded(
    ctx: &TransformContext,
    loaded: &Loaded,
) -> Result<(), TransformError> {
    // A plain write: two transforms of one tenant at once could only lose a
    // key of the other's, whose manifest is then merged again, harmlessly.
    write_json(ctx, raw::LOADED_KEY, loaded).await
}

/// Writes `value` as JSON to `key` in the tenant's bucket, retried while the
/// store says so.
pub(super) async fn write_json<T: serde::Serialize>(
    ctx: &TransformContext,
    key: &str,
    value: &T,
) -> Result<(), TransformError> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| bad_raw(key, format!("cannot encode: {e}")))?;
    retrying(|| {
        ctx.cloud
            .objects
            .put_object(&ctx.cred, &ctx.bucket, key, bytes.clone())
    })
    .await
    .map(|_| ())
    .map_err(storage(format!("writing {key} to bucket {}", ctx.bucket)))
}

/// The run folder of a manifest key under `prefix`
/// (`raw/<resource>/<run>/manifest.json`).
pub(super) fn manifest_run<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    key.strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix("/manifest.json"))
        .filter(|run| !run.is_empty() && !run.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_found_only_where_the_layout_puts_them() {
        let p = "raw/invoices/";
        assert_eq!(manifest_run("raw/invoices/r1/manifest.json", p), Some("r1"));
        assert_eq!(manifest_run("raw/invoices/r1/00001.ndjson", p), None);
        assert_eq!(manifest_run("raw/invoices/manifest.json", p), None);
        assert_eq!(manifest_run("raw/invoicesx/r1/manifest.json", p), None);
        assert_eq!(manifest_run("raw/invoices/a/b/manifest.json", p), None);
    }
}
