//! Compaction: raw pages no raw table needs any more leave the bucket.
//!
//! After a successful load, a loaded manifest (one resource, one run) whose
//! run no row of the resource's raw table names — as the version kept
//! (`run_id`) or as the data that said the record was removed
//! (`removed_run_id`) — is superseded: every record it holds has a later
//! version in another manifest. Its manifest and pages are deleted and its
//! key leaves `state/loaded.json`. What stays is exactly what loading from
//! scratch needs for the same raw tables: each row's version, and each
//! removal's evidence (an empty complete listing that marked rows removed
//! stays as long as they name it). A resource's raw table without rows
//! names no run: its manifests go only if none holds a record.
//!
//! Crash-safe: what is about to go is written to `state/compaction.json`
//! first; then the objects are deleted (the manifest before its pages, so no
//! manifest ever names a page already gone), `state/loaded.json` is
//! rewritten, and the marker removed. A run finding the marker finishes that
//! compaction before it reads anything ([`finish_pending`]). Only manifests
//! already loaded are candidates, and pages are only ever deleted as named
//! by such a manifest: pages of a run without a manifest (perhaps an ingest
//! still under way) are never touched.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;

use cloud::ports::QueryRequest;
use cloud::CloudError;
use job_contract::raw::{self, Compaction, Manifest};
use xero::resources::Resource;

use super::load::{list_prefix, read_loaded_state, storage, write_loaded};
use super::{retrying, TransformContext, TransformError};

/// Objects deleted at once.
const DELETE_CONCURRENCY: usize = 16;

/// What compaction deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompactionReport {
    /// Superseded manifests removed (and gone from `state/loaded.json`).
    pub manifests: u64,
    /// Their pages deleted.
    pub pages: u64,
    /// Bytes of manifests and pages deleted.
    pub bytes: u64,
    /// Why compaction stopped part-way, if it did: the tables were published
    /// and the next run finishes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CompactionReport {
    /// Adds what `other` deleted.
    pub fn add(&mut self, other: &CompactionReport) {
        self.manifests += other.manifests;
        self.pages += other.pages;
        self.bytes += other.bytes;
    }
}

fn bad_raw(key: &str, reason: impl Into<String>) -> TransformError {
    TransformError::BadRaw {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// Finishes a compaction a previous run announced and did not finish.
pub(crate) async fn finish_pending(
    ctx: &TransformContext,
) -> Result<Option<CompactionReport>, TransformError> {
    let read = retrying(|| {
        ctx.cloud
            .objects
            .get_object(&ctx.cred, &ctx.bucket, raw::COMPACTION_KEY)
    })
    .await;
    let marker: Compaction = match read {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| bad_raw(raw::COMPACTION_KEY, format!("not valid: {e}")))?,
        Err(CloudError::NotFound { .. }) => return Ok(None),
        Err(source) => {
            return Err(TransformError::Storage {
                what: format!("reading {} from bucket {}", raw::COMPACTION_KEY, ctx.bucket),
                source,
            })
        }
    };
    tracing::info!(
        manifests = marker.manifests.len(),
        "finishing the compaction an earlier run left unfinished"
    );
    finish(ctx, &marker).await.map(Some)
}

/// Deletes what `marker` names, takes its manifests out of
/// `state/loaded.json`, then removes the marker. Every step may be redone.
async fn finish(
    ctx: &TransformContext,
    marker: &Compaction,
) -> Result<CompactionReport, TransformError> {
    let mut pending = marker.objects.iter().cloned();
    let mut running = JoinSet::new();
    loop {
        while running.len() < DELETE_CONCURRENCY {
            let Some(key) = pending.next() else { break };
            let (objects, cred, bucket) = (
                ctx.cloud.objects.clone(),
                ctx.cred.clone(),
                ctx.bucket.clone(),
            );
            running.spawn(async move {
                let deleted = retrying(|| objects.delete_object(&cred, &bucket, &key)).await;
                (key, deleted)
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (key, deleted) = joined.map_err(|e| {
            bad_raw(
                raw::COMPACTION_KEY,
                format!("a deletion did not finish: {e}"),
            )
        })?;
        match deleted {
            // Gone already: deleted by the run that announced it.
            Ok(()) | Err(CloudError::NotFound { .. }) => {}
            Err(source) => {
                return Err(TransformError::Storage {
                    what: format!("deleting {key} (compaction) from bucket {}", ctx.bucket),
                    source,
                })
            }
        }
    }

    let mut loaded = read_loaded_state(ctx).await?;
    let before = loaded.manifests.len();
    for key in &marker.manifests {
        loaded.manifests.remove(key);
    }
    if loaded.manifests.len() != before {
        write_loaded(ctx, &loaded).await?;
    }
    match retrying(|| {
        ctx.cloud
            .objects
            .delete_object(&ctx.cred, &ctx.bucket, raw::COMPACTION_KEY)
    })
    .await
    {
        Ok(()) | Err(CloudError::NotFound { .. }) => {}
        Err(source) => {
            return Err(TransformError::Storage {
                what: format!(
                    "deleting {} from bucket {}",
                    raw::COMPACTION_KEY,
                    ctx.bucket
                ),
                source,
            })
        }
    }
    let manifests = marker.manifests.len() as u64;
    let report = CompactionReport {
        manifests,
        pages: (marker.objects.len() as u64).saturating_sub(manifests),
        bytes: marker.bytes,
        error: None,
    };
    tracing::info!(
        manifests = report.manifests,
        pages = report.pages,
        bytes = report.bytes,
        "compacted the raw pages"
    );
    Ok(report)
}

/// Per raw table, the runs its rows name (`run_id`, `removed_run_id`).
async fn kept_runs(
    ctx: &TransformContext,
) -> Result<BTreeMap<String, BTreeSet<String>>, TransformError> {
    // GROUP BY rather than DISTINCT: the same text in both dialects; one
    // SELECT around the UNION, which is what a question may be (the
    // BigQuery emulator calls a bare UNION something else).
    let union = Resource::ALL
        .iter()
        .map(|r| {
            let t = r.storage_name();
            format!(
                "SELECT '{t}' AS raw_table, run_id FROM {t} GROUP BY run_id\n\
                 UNION ALL SELECT '{t}' AS raw_table, removed_run_id FROM {t} \
                 WHERE removed_run_id IS NOT NULL GROUP BY removed_run_id"
            )
        })
        .collect::<Vec<_>>()
        .join("\nUNION ALL ");
    let sql = format!("SELECT raw_table, run_id FROM (\n{union}\n) AS runs");
    let request = QueryRequest {
        dataset: ctx.raw_dataset.clone(),
        sql,
        max_rows: 10_000_000,
        timeout: Duration::from_secs(600),
        max_bytes: None,
    };
    let result = retrying(|| ctx.cloud.warehouse.query(&ctx.cred, &request))
        .await
        .map_err(storage(format!(
            "reading the runs the raw tables of dataset {} keep",
            ctx.raw_dataset
        )))?;
    if result.truncated {
        return Err(bad_raw(
            &ctx.raw_dataset,
            "too many runs to compact by (the answer was truncated)",
        ));
    }
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in result.rows {
        if let [serde_json::Value::String(table), serde_json::Value::String(run)] = row.as_slice() {
            out.entry(table.clone()).or_default().insert(run.clone());
        }
    }
    Ok(out)
}

/// The run folder of a manifest key under `prefix`
/// (`raw/<resource>/<run>/manifest.json`).
fn manifest_run<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    key.strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix("/manifest.json"))
        .filter(|run| !run.is_empty() && !run.contains('/'))
}

/// Removes every loaded manifest no raw table needs any more (see the
/// module's documentation). Run after a successful load.
pub(crate) async fn compact(ctx: &TransformContext) -> Result<CompactionReport, TransformError> {
    let loaded = read_loaded_state(ctx).await?;
    if loaded.manifests.is_empty() {
        return Ok(CompactionReport::default());
    }
    let kept = kept_runs(ctx).await?;
    let mut marker = Compaction::default();
    for resource in Resource::ALL {
        let prefix = raw::resource_prefix(resource);
        // A raw table without rows names no run: see below for when its
        // manifests may go.
        let runs = kept.get(&resource.storage_name());
        let candidates: Vec<&String> = loaded
            .manifests
            .iter()
            .filter(|key| {
                manifest_run(key, &prefix).is_some_and(|run| runs.is_none_or(|r| !r.contains(run)))
            })
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let listed = list_prefix(ctx, &prefix).await?;
        let sizes: BTreeMap<&str, u64> = listed.iter().map(|o| (o.key.as_str(), o.size)).collect();
        let mut superseded = Compaction::default();
        let mut holds_records = false;
        for key in candidates {
            let Some(&size) = sizes.get(key.as_str()) else {
                // Deleted behind our back: it only leaves loaded.json.
                superseded.manifests.push(key.clone());
                continue;
            };
            let bytes = retrying(|| ctx.cloud.objects.get_object(&ctx.cred, &ctx.bucket, key))
                .await
                .map_err(storage(format!("reading {key}")))?;
            let manifest: Manifest = serde_json::from_slice(&bytes)
                .map_err(|e| bad_raw(key, format!("not a manifest: {e}")))?;
            // The table names the run the manifest says, which is normally
            // its folder; when they differ, the manifest's word counts.
            if runs.is_some_and(|r| r.contains(&manifest.run_id)) {
                continue;
            }
            holds_records |= manifest.records > 0;
            superseded.manifests.push(key.clone());
            superseded.objects.push(key.clone());
            superseded.bytes += size;
            for page in &manifest.pages {
                if !page.key.starts_with(&prefix) {
                    return Err(bad_raw(
                        key,
                        format!("page {} is not under {prefix}", page.key),
                    ));
                }
                superseded.objects.push(page.key.clone());
                superseded.bytes += sizes.get(page.key.as_str()).copied().unwrap_or(0);
            }
        }
        if runs.is_none() && holds_records {
            // An empty raw table with records loaded into it is not
            // "nothing needed": the table was lost or emptied, and only a
            // rebuild may say what it needs. Empty listings alone (a
            // resource that has no records) load from scratch to the same
            // empty table, so they go.
            continue;
        }
        marker.manifests.extend(superseded.manifests);
        marker.objects.extend(superseded.objects);
        marker.bytes += superseded.bytes;
    }
    if marker.manifests.is_empty() {
        return Ok(CompactionReport::default());
    }
    let bytes = serde_json::to_vec_pretty(&marker)
        .map_err(|e| bad_raw(raw::COMPACTION_KEY, format!("cannot encode: {e}")))?;
    retrying(|| {
        ctx.cloud
            .objects
            .put_object(&ctx.cred, &ctx.bucket, raw::COMPACTION_KEY, bytes.clone())
    })
    .await
    .map_err(storage(format!(
        "writing {} to bucket {}",
        raw::COMPACTION_KEY,
        ctx.bucket
    )))?;
    finish(ctx, &marker).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_key_names_its_run() {
        let p = "raw/invoices/";
        assert_eq!(manifest_run("raw/invoices/r1/manifest.json", p), Some("r1"));
        assert_eq!(manifest_run("raw/invoices/r1/00001.ndjson", p), None);
        assert_eq!(manifest_run("raw/invoices/manifest.json", p), None);
        assert_eq!(manifest_run("raw/invoicesx/r1/manifest.json", p), None);
        assert_eq!(manifest_run("raw/invoices/a/b/manifest.json", p), None);
    }
}
