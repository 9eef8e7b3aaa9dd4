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
//! first; then the objects are deleted (several at once, so a crash may
//! leave a manifest naming pages already gone), `state/loaded.json` is
//! rewritten, and the marker removed. A run finding the marker finishes that
//! compaction before it reads anything ([`finish_pending`]), so no run loads
//! a manifest that is half deleted. Only manifests
//! already loaded are candidates, and pages are only ever deleted as named
//! by such a manifest (or as written by a rewrite the marker announced):
//! pages of a run without a manifest (perhaps an ingest still under way) are
//! never touched.
//!
//! Then the manifests still named but mostly superseded are rewritten to
//! hold only their kept records (`rewrite.rs`), through the same marker.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio::task::JoinSet;

use cloud::CloudError;
use job_contract::raw::{self, Compaction, Loaded, Manifest, Rewrite};
use xero::resources::Resource;

use super::datatests::as_count;
use super::raw_io::{
    bad_raw, list_prefix, manifest_run, query_raw, read_loaded, read_manifest, write_json,
    write_loaded,
};
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
    /// Manifests rewritten to hold only their kept records (their old
    /// pages are counted in `pages` and `bytes`).
    pub rewritten: u64,
    /// The pages those rewrites wrote, and their bytes.
    pub rewritten_pages: u64,
    pub rewritten_bytes: u64,
    /// Why compaction stopped part-way, if it did: the tables were published
    /// and the next run finishes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CompactionReport {
    /// Adds what `other` deleted and wrote.
    pub fn add(&mut self, other: &CompactionReport) {
        self.manifests += other.manifests;
        self.pages += other.pages;
        self.bytes += other.bytes;
        self.rewritten += other.rewritten;
        self.rewritten_pages += other.rewritten_pages;
        self.rewritten_bytes += other.rewritten_bytes;
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

/// Writes `marker` to `state/compaction.json`: what follows may be
/// finished (or undone) by the next run.
pub(super) async fn announce(
    ctx: &TransformContext,
    marker: &Compaction,
) -> Result<(), TransformError> {
    write_json(ctx, raw::COMPACTION_KEY, marker).await
}

/// Deletes `keys`, [`DELETE_CONCURRENCY`] at once; one already gone is
/// deleted.
async fn delete_all(ctx: &TransformContext, keys: Vec<String>) -> Result<(), TransformError> {
    let mut pending = keys.into_iter();
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
            return Ok(());
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
}

/// What became of an announced rewrite: the records the manifest now holds
/// if it names the new pages, `None` if it does not (or is gone).
async fn rewrite_outcome(
    ctx: &TransformContext,
    rewrite: &Rewrite,
) -> Result<Option<u64>, TransformError> {
    let key = &rewrite.manifest;
    match retrying(|| ctx.cloud.objects.get_object(&ctx.cred, &ctx.bucket, key)).await {
        Ok(bytes) => {
            // One that cannot be read names no new page: undone.
            let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) else {
                return Ok(None);
            };
            let swapped = !manifest.pages.is_empty()
                && manifest
                    .pages
                    .iter()
                    .all(|p| p.key.starts_with(&rewrite.new_pages));
            Ok(swapped.then_some(manifest.records))
        }
        Err(CloudError::NotFound { .. }) => Ok(None),
        Err(source) => Err(TransformError::Storage {
            what: format!("reading {key} from bucket {}", ctx.bucket),
            source,
        }),
    }
}

/// Finishes what `marker` announced: deletes the superseded objects; for
/// each rewrite, the old pages if the manifest names the new ones, else the
/// new ones; then brings `state/loaded.json` up to date and removes the
/// marker. Every step may be redone.
pub(super) async fn finish(
    ctx: &TransformContext,
    marker: &Compaction,
) -> Result<CompactionReport, TransformError> {
    let mut doomed = marker.objects.clone();
    let mut swapped: Vec<(&str, u64)> = Vec::new();
    let (mut replaced_pages, mut replaced_bytes) = (0u64, 0u64);
    for rewrite in &marker.rewrites {
        match rewrite_outcome(ctx, rewrite).await? {
            Some(records) => {
                doomed.extend(rewrite.replaced.iter().cloned());
                replaced_pages += rewrite.replaced.len() as u64;
                replaced_bytes += rewrite.replaced_bytes;
                swapped.push((&rewrite.manifest, records));
            }
            None => {
                // Undone: whatever new pages were written go, the manifest
                // and its pages stay as they were.
                let written = list_prefix(ctx, &rewrite.new_pages).await?;
                doomed.extend(written.into_iter().map(|o| o.key));
            }
        }
    }
    delete_all(ctx, doomed).await?;

    let mut loaded = read_loaded(ctx).await?;
    let before = loaded.clone();
    for key in &marker.manifests {
        loaded.remove(key);
    }
    for (key, records) in &swapped {
        if loaded.manifests.contains(*key) {
            loaded.records.insert((*key).to_owned(), *records);
        }
    }
    if loaded != before {
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
        pages: (marker.objects.len() as u64).saturating_sub(manifests) + replaced_pages,
        bytes: marker.bytes + replaced_bytes,
        rewritten: swapped.len() as u64,
        ..CompactionReport::default()
    };
    tracing::info!(
        manifests = report.manifests,
        pages = report.pages,
        bytes = report.bytes,
        rewritten = report.rewritten,
        "compacted the raw pages"
    );
    Ok(report)
}

/// How a raw table's rows name one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct RunUse {
    /// Rows whose kept version the run fetched (`run_id`).
    pub kept: u64,
    /// Rows of other runs whose removal the run's data showed
    /// (`removed_run_id`): its listing is their evidence.
    pub evidence: u64,
}

/// Per raw table, the runs its rows name (`run_id`, `removed_run_id`), and
/// how many rows name each.
pub(super) type KeptRuns = BTreeMap<String, BTreeMap<String, RunUse>>;

pub(super) async fn kept_runs(ctx: &TransformContext) -> Result<KeptRuns, TransformError> {
    // One SELECT around the UNION, which is what a question may be (the
    // BigQuery emulator calls a bare UNION something else).
    let union = Resource::ALL
        .iter()
        .map(|r| {
            let t = r.storage_name();
            format!(
                "SELECT '{t}' AS raw_table, run_id, COUNT(*) AS kept, 0 AS evidence FROM {t} GROUP BY run_id\n\
                 UNION ALL SELECT '{t}' AS raw_table, removed_run_id, 0 AS kept, COUNT(*) AS evidence FROM {t} \
                 WHERE removed_run_id IS NOT NULL AND removed_run_id <> run_id GROUP BY removed_run_id"
            )
        })
        .collect::<Vec<_>>()
        .join("\nUNION ALL ");
    let sql = format!("SELECT raw_table, run_id, kept, evidence FROM (\n{union}\n) AS runs");
    let result = query_raw(ctx, sql, || {
        format!(
            "reading the runs the raw tables of dataset {} keep",
            ctx.raw_dataset
        )
    })
    .await?;
    if result.truncated {
        return Err(bad_raw(
            &ctx.raw_dataset,
            "too many runs to compact by (the answer was truncated)",
        ));
    }
    let mut out = KeptRuns::new();
    for row in result.rows {
        let [serde_json::Value::String(table), serde_json::Value::String(run), kept, evidence] =
            row.as_slice()
        else {
            continue;
        };
        let (Some(kept), Some(evidence)) = (as_count(Some(kept)), as_count(Some(evidence))) else {
            return Err(bad_raw(
                &ctx.raw_dataset,
                format!("the count of rows naming run {run} in {table} is not a number"),
            ));
        };
        let entry = out
            .entry(table.clone())
            .or_default()
            .entry(run.clone())
            .or_default();
        entry.kept += kept;
        entry.evidence += evidence;
    }
    Ok(out)
}

/// Deletes every loaded manifest whose run no row names, with its pages
/// (run after a successful load).
pub(super) async fn remove_superseded(
    ctx: &TransformContext,
    loaded: &Loaded,
    kept: &KeptRuns,
) -> Result<CompactionReport, TransformError> {
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
                manifest_run(key, &prefix)
                    .is_some_and(|run| runs.is_none_or(|r| !r.contains_key(run)))
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
            let manifest = read_manifest(ctx, key).await?;
            // The table names the run the manifest says, which is normally
            // its folder; when they differ, the manifest's word counts.
            if runs.is_some_and(|r| r.contains_key(&manifest.run_id)) {
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
    announce(ctx, &marker).await?;
    finish(ctx, &marker).await
}
