//! Loading: raw pages named by manifests → the raw dataset.
//!
//! Every manifest not yet in `state/loaded.json` is read. Then the
//! warehouse loads every page of every such manifest in one bulk load
//! ([`cloud::ports::Warehouse::load_lines`]: each line kept whole as text,
//! with its page and line number, into the load table `_load_lines`, which
//! exists only for the merge), reading the pages from the bucket itself
//! where it can (DuckDB's own reader locally), so no page passes through the
//! job. It loads only if each page holds what its manifest lists (SHA-256,
//! records). One script, run by the same call, merges each resource's lines
//! into its raw table `<resource>`, keeping the latest version of each
//! record; the warehouse reads each record's id and change stamp from the
//! record. Locally the load and every merge are one transaction. Only then
//! are the manifests recorded as loaded; a crash in between loads and merges
//! them again, which changes nothing. Keeping the record whole as text keeps
//! the raw schema the same whatever fields Xero sends.
//!
//! Each row also says whether Xero removed the record (`xero_status`,
//! `removed_at`, `removed_run_id`): from the record's status, and for a
//! resource Xero lists in full, from a complete listing that lacks it (the
//! same script marks those rows after the resource's last merge). A complete
//! listing that came back empty is a manifest with no pages: it marks every
//! row of its resource fetched before it, by a statement of its own.
//!
//! A compaction left unfinished (see `compact.rs`) is finished before
//! anything is read; loading from scratch (`rebuild`) forgets what was
//! loaded first, then drops the raw tables, so a crash at any point leaves
//! either the old state or one that loads everything again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use xero::resources::Resource;

use cloud::ports::{ExpectedObject, LoadedObject, QueryRequest};
use cloud::CloudError;

use super::compact::{self, CompactionReport};
use super::raw_io::{
    bad_raw, execute_raw, list_prefix, manifest_run, read_loaded, read_manifest, storage,
    write_loaded,
};
use super::render::{Listing, PageRef, Renderer};
use super::{retrying, TransformContext, TransformError};
use job_contract::raw::{self, Loaded, Manifest};

/// The one load table: a batch's lines, there only for its merge.
pub(crate) const LOAD_TABLE: &str = "_load_lines";

/// Bytes of pages loaded and merged at once (a page larger than this is a
/// batch of its own).
static LOAD_BATCH_BYTES: AtomicU64 = AtomicU64::new(128 * 1024 * 1024);

/// Sets the bytes of pages loaded and merged at once, for the whole process
/// (tests load a small company in many batches this way).
#[doc(hidden)]
pub fn set_load_batch_bytes(bytes: u64) {
    LOAD_BATCH_BYTES.store(bytes.max(1), Ordering::Relaxed);
}

/// What loading did.
#[derive(Debug, Default)]
pub(crate) struct LoadOutcome {
    /// Records merged, per resource storage name (every resource listed).
    pub loaded: BTreeMap<String, u64>,
    /// The manifests loaded, in order.
    pub manifests: Vec<String>,
    /// An unfinished compaction this run finished first, if any.
    pub resumed: Option<CompactionReport>,
}

fn rfc3339(t: OffsetDateTime) -> Result<String, String> {
    t.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|e| format!("cannot format {t}: {e}"))
}

/// One resource's manifests waiting to be loaded.
#[derive(Default)]
struct Pending {
    /// (manifest key, records), oldest first.
    manifests: Vec<(String, u64)>,
    /// Their pages, as the merge names them and as the load checks them.
    pages: Vec<PageRef>,
    objects: Vec<ExpectedObject>,
    /// Each page's size in bytes, as listed.
    sizes: Vec<u64>,
    /// For a resource Xero lists in full: each manifest as a complete
    /// listing, oldest first.
    listings: Vec<Listing>,
}

/// Creates (or upgrades) the raw tables, then loads every manifest not
/// loaded yet; with `rebuild`, every manifest into empty raw tables.
pub(crate) async fn load_all(
    ctx: &TransformContext,
    renderer: &Renderer,
    rebuild: bool,
) -> Result<LoadOutcome, TransformError> {
    // Before loaded.json is read: a rebuild must not load a manifest whose
    // pages an unfinished compaction already deleted.
    let resumed = compact::finish_pending(ctx).await?;
    if rebuild {
        forget_loaded(ctx).await?;
        let sql = renderer.drop_raw_tables(&Resource::ALL);
        execute_raw(ctx, &sql).await.map_err(storage(format!(
            "dropping the raw tables of dataset {} to load them from scratch",
            ctx.raw_dataset
        )))?;
        tracing::info!(dataset = %ctx.raw_dataset, "raw tables dropped: loading every manifest from scratch");
    }
    let tables: Vec<String> = Resource::ALL.iter().map(|r| r.storage_name()).collect();
    // Every raw table exists from the first run on, so models of resources
    // the organisation never had still build (empty). Only when one is
    // missing or older than its removal columns (the probe fails, whatever
    // the reason) are they created or upgraded.
    let probe = QueryRequest {
        dataset: ctx.raw_dataset.clone(),
        sql: renderer.raw_tables_probe(&Resource::ALL),
        max_rows: 1,
        timeout: Duration::from_secs(120),
        max_bytes: None,
    };
    if let Err(e) = ctx.cloud.warehouse.query(&ctx.cred, &probe).await {
        tracing::info!(reason = %e, dataset = %ctx.raw_dataset, "creating or upgrading the raw tables");
        let sql = renderer.raw_tables(&Resource::ALL)?;
        execute_raw(ctx, &sql).await.map_err(storage(format!(
            "creating the raw tables in dataset {}",
            ctx.raw_dataset
        )))?;
    }

    let mut state = read_loaded(ctx).await?;
    let mut out = LoadOutcome {
        loaded: tables.iter().map(|t| (t.clone(), 0)).collect(),
        manifests: Vec::new(),
        resumed,
    };
    let mut pending: Vec<(Resource, Pending)> = Vec::new();
    for resource in Resource::ALL {
        let mut sizes = BTreeMap::new();
        let found = pending_manifests(ctx, resource, &state, &mut sizes).await?;
        if found.is_empty() {
            continue;
        }
        let mut p = Pending::default();
        for (ord, (key, manifest)) in found.iter().enumerate() {
            check_manifest(resource, key, manifest, ord, &mut p, &sizes)?;
            p.manifests.push((key.clone(), manifest.records));
        }
        pending.push((resource, p));
    }
    if pending.is_empty() {
        return Ok(out);
    }

    // Batches of about LOAD_BATCH_BYTES of pages, each one load and one
    // script merging every resource it holds: one transaction each where
    // the warehouse has them, and the warehouse's memory bounded by a batch
    // rather than by what the run fetched. Merging batches one after the
    // other in load order keeps what merging them all at once would.
    let t = Instant::now();
    let (mut pages, mut records) = (0usize, 0u64);
    for batch in batches(&pending, LOAD_BATCH_BYTES.load(Ordering::Relaxed)) {
        let mut parts = Vec::new();
        for (i, range) in batch {
            let (resource, p) = &pending[i];
            // After the resource's last pages are merged, the listings
            // loaded now say which rows Xero no longer has.
            let listings: &[Listing] = if range.end == p.pages.len() {
                &p.listings
            } else {
                &[]
            };
            parts.push(Part {
                resource: *resource,
                pages: &p.pages[range.clone()],
                objects: &p.objects[range],
                manifests: names(p.manifests.iter().map(|(k, _)| k.as_str())),
                listings,
            });
        }
        let rendering = Instant::now();
        let mut script = String::new();
        for part in &parts {
            script.push_str(&part.script(renderer)?);
        }
        let rendered = rendering.elapsed();
        let objects: Vec<ExpectedObject> = parts
            .iter()
            .flat_map(|part| part.objects.iter().cloned())
            .collect();
        let loading = Instant::now();
        match load(ctx, &objects, &script).await {
            Ok(read) => check_read(&objects, &read)?,
            Err(source) => return Err(blame(ctx, renderer, &parts, source).await),
        }
        tracing::debug!(
            pages = objects.len(),
            resources = parts.len(),
            render_ms = rendered.as_millis(),
            load_ms = loading.elapsed().as_millis(),
            "batch loaded and merged"
        );
        pages += objects.len();
        records += objects.iter().map(|o| o.lines).sum::<u64>();
    }
    // A resource whose pending manifests hold no page (an empty complete
    // listing: everything it had is gone) is in no batch; its listings mark
    // the rows on their own, without a load of no objects (which BigQuery
    // would refuse). Marking again changes nothing.
    for (resource, p) in &pending {
        if !p.pages.is_empty() || p.listings.is_empty() {
            continue;
        }
        let sql = renderer.mark_unlisted(*resource, &p.listings)?;
        execute_raw(ctx, &sql)
            .await
            .map_err(|source| TransformError::Load {
                resource: resource.name().to_owned(),
                manifest: names(p.manifests.iter().map(|(k, _)| k.as_str())),
                source,
            })?;
    }
    tracing::debug!(
        pages,
        records,
        ms = t.elapsed().as_millis(),
        "loaded and merged"
    );

    for (_, p) in &pending {
        for (key, records) in &p.manifests {
            state.insert(key.clone(), *records);
        }
    }
    write_loaded(ctx, &state).await?;
    for (resource, p) in pending {
        for (key, records) in p.manifests {
            *out.loaded.entry(resource.storage_name()).or_default() += records;
            tracing::info!(resource = %resource, manifest = %key, records, "loaded into the raw dataset");
            out.manifests.push(key);
        }
    }
    Ok(out)
}

/// Deletes `state/loaded.json`, so that every manifest is loaded again.
async fn forget_loaded(ctx: &TransformContext) -> Result<(), TransformError> {
    match retrying(|| {
        ctx.cloud
            .objects
            .delete_object(&ctx.cred, &ctx.bucket, raw::LOADED_KEY)
    })
    .await
    {
        Ok(()) | Err(CloudError::NotFound { .. }) => Ok(()),
        Err(source) => Err(TransformError::Storage {
            what: format!("deleting {} from bucket {}", raw::LOADED_KEY, ctx.bucket),
            source,
        }),
    }
}

fn names<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// The resource's manifests not loaded yet, oldest first (so that of two
/// versions with the same change stamp the later fetch wins).
async fn pending_manifests(
    ctx: &TransformContext,
    resource: Resource,
    state: &Loaded,
    sizes: &mut BTreeMap<String, u64>,
) -> Result<Vec<(String, Manifest)>, TransformError> {
    let prefix = raw::resource_prefix(resource);
    let objects = list_prefix(ctx, &prefix).await?;
    let mut pending = Vec::new();
    for object in objects {
        sizes.insert(object.key.clone(), object.size);
        if manifest_run(&object.key, &prefix).is_none() || state.manifests.contains(&object.key) {
            continue;
        }
        let manifest = read_manifest(ctx, &object.key).await?;
        if !manifest.resource.eq_ignore_ascii_case(resource.name()) {
            return Err(bad_raw(
                &object.key,
                format!(
                    "the manifest is for {}, but lies under {prefix}",
                    manifest.resource
                ),
            ));
        }
        pending.push((object.key, manifest));
    }
    pending.sort_by(|(ka, a), (kb, b)| (a.completed_at, ka).cmp(&(b.completed_at, kb)));
    Ok(pending)
}

/// Checks one manifest and adds its pages to `p` (what each holds is
/// checked by the warehouse as it loads them).
fn check_manifest(
    resource: Resource,
    key: &str,
    manifest: &Manifest,
    ord: usize,
    p: &mut Pending,
    sizes: &BTreeMap<String, u64>,
) -> Result<(), TransformError> {
    // Checked: the counts are the bucket's word, not ours.
    let listed = manifest
        .pages
        .iter()
        .try_fold(0u64, |sum, p| sum.checked_add(p.records));
    if listed != Some(manifest.records) {
        let listed = listed.map_or_else(|| "more than 2^64".to_owned(), |n| n.to_string());
        return Err(bad_raw(
            key,
            format!(
                "the pages hold {listed} records, the manifest says {}",
                manifest.records
            ),
        ));
    }
    let fetched_at = rfc3339(manifest.completed_at).map_err(|e| bad_raw(key, e))?;
    let resource_prefix = raw::resource_prefix(resource);
    for (i, page) in manifest.pages.iter().enumerate() {
        if !page.key.starts_with(&resource_prefix) {
            return Err(bad_raw(
                key,
                format!("page {} is not under {resource_prefix}", page.key),
            ));
        }
        if p.objects.iter().any(|o| o.key == page.key) {
            return Err(bad_raw(key, format!("page {} is listed twice", page.key)));
        }
        p.sizes.push(sizes.get(&page.key).copied().unwrap_or(0));
        p.objects.push(ExpectedObject {
            key: page.key.clone(),
            sha256: page.sha256.clone(),
            lines: page.records,
        });
        p.pages.push(PageRef {
            key: page.key.clone(),
            run_id: manifest.run_id.clone(),
            fetched_at: fetched_at.clone(),
            manifest: u32::try_from(ord + 1).unwrap_or(u32::MAX),
            page: u32::try_from(i + 1).unwrap_or(u32::MAX),
        });
    }
    // A manifest is written once every page of the resource in its run is
    // durable: for a resource listed in full, it is the whole listing.
    if resource.listed_in_full() {
        p.listings.push(Listing {
            run_id: manifest.run_id.clone(),
            fetched_at,
        });
    }
    Ok(())
}

/// Loads `objects` into the load table and runs `merge` on it.
async fn load(
    ctx: &TransformContext,
    objects: &[ExpectedObject],
    merge: &str,
) -> Result<Vec<LoadedObject>, CloudError> {
    retrying(|| {
        ctx.cloud.warehouse.load_lines(
            &ctx.cred,
            &ctx.raw_dataset,
            LOAD_TABLE,
            &ctx.bucket,
            objects,
            merge,
        )
    })
    .await
}

/// Each page as the warehouse read it must be the page its manifest lists;
/// when one is not, the warehouse loaded and merged nothing.
fn check_read(expected: &[ExpectedObject], read: &[LoadedObject]) -> Result<(), TransformError> {
    for (page, object) in expected.iter().zip(read) {
        if !object.sha256.eq_ignore_ascii_case(&page.sha256) {
            return Err(bad_raw(
                &object.key,
                format!(
                    "its SHA-256 is {}, the manifest says {}: the page changed or is damaged",
                    object.sha256, page.sha256
                ),
            ));
        }
        if object.lines != page.lines || object.key != page.key {
            return Err(bad_raw(
                &object.key,
                format!(
                    "it holds {} records, the manifest says {}",
                    object.lines, page.lines
                ),
            ));
        }
    }
    if read.len() != expected.len() {
        return Err(bad_raw(
            LOAD_TABLE,
            format!(
                "the warehouse read {} pages of the {} listed",
                read.len(),
                expected.len()
            ),
        ));
    }
    Ok(())
}

/// One resource's share of a batch.
struct Part<'a> {
    resource: Resource,
    pages: &'a [PageRef],
    objects: &'a [ExpectedObject],
    /// The resource's pending manifests, for messages.
    manifests: String,
    /// The complete listings to mark removals by after this part's merge
    /// (only in the part holding the resource's last pages).
    listings: &'a [Listing],
}

impl Part<'_> {
    /// The merge of this part's pages, then the marking by listings.
    fn script(&self, renderer: &Renderer) -> Result<String, TransformError> {
        let mut script = renderer.merge(self.resource, LOAD_TABLE, self.pages)?;
        script.push('\n');
        if !self.listings.is_empty() {
            script.push_str(&renderer.mark_unlisted(self.resource, self.listings)?);
            script.push('\n');
        }
        Ok(script)
    }
}

/// The pages of `pending` in load order, cut into batches of about
/// `max_bytes` (a page larger than that is a batch of its own): each batch
/// is, per resource, a range of its pages.
fn batches(
    pending: &[(Resource, Pending)],
    max_bytes: u64,
) -> Vec<Vec<(usize, std::ops::Range<usize>)>> {
    let mut out = Vec::new();
    let mut batch: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
    let mut bytes = 0u64;
    for (i, (_, p)) in pending.iter().enumerate() {
        for (j, size) in p.sizes.iter().enumerate() {
            if bytes > 0 && bytes + size > max_bytes {
                out.push(std::mem::take(&mut batch));
                bytes = 0;
            }
            bytes += size;
            match batch.last_mut() {
                Some((last, range)) if *last == i => range.end = j + 1,
                _ => batch.push((i, j..j + 1)),
            }
        }
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

/// After a failed load of several resources: loads them one by one (a merge
/// is idempotent, so redoing those that go through is harmless) to name the
/// one that fails.
async fn blame(
    ctx: &TransformContext,
    renderer: &Renderer,
    parts: &[Part<'_>],
    error: CloudError,
) -> TransformError {
    let as_load_error = |part: &Part<'_>, source| TransformError::Load {
        resource: part.resource.name().to_owned(),
        manifest: part.manifests.clone(),
        source,
    };
    if parts.len() > 1 && !error.is_retryable() {
        for part in parts {
            let merge = match part.script(renderer) {
                Ok(m) => m,
                Err(e) => return e,
            };
            if let Err(source) = load(ctx, part.objects, &merge).await {
                return as_load_error(part, source);
            }
        }
    }
    match parts {
        [part] => as_load_error(part, error),
        _ => TransformError::Load {
            resource: names(parts.iter().map(|p| p.resource.name())),
            manifest: names(parts.iter().map(|p| p.manifests.as_str())),
            source: error,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cut_the_pages_in_load_order_by_size() {
        let pending = |sizes: &[u64]| Pending {
            sizes: sizes.to_vec(),
            ..Pending::default()
        };
        let p = vec![
            (Resource::Accounts, pending(&[3, 3, 3])),
            (Resource::Invoices, pending(&[])),
            (Resource::Journals, pending(&[20, 1])),
        ];
        assert_eq!(
            batches(&p, 7),
            vec![
                vec![(0, 0..2)],
                vec![(0, 2..3)],
                vec![(2, 0..1)],
                vec![(2, 1..2)],
            ]
        );
        assert_eq!(batches(&p, 100), vec![vec![(0, 0..3), (2, 0..2)]]);
        assert!(batches(&[], 10).is_empty());
    }

    #[test]
    fn a_manifest_whose_page_counts_overflow_is_refused_not_wrapped() {
        let page = |n: u64, records: u64| raw::PageEntry {
            key: format!("raw/invoices/r1/{n:05}.ndjson"),
            records,
            sha256: "0".repeat(64),
        };
        let manifest = |pages: Vec<raw::PageEntry>, records: u64| Manifest {
            resource: "Invoices".to_owned(),
            run_id: "r1".to_owned(),
            pages,
            records,
            modified_since: None,
            completed_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        let key = "raw/invoices/r1/manifest.json";
        let check = |m: &Manifest| {
            check_manifest(
                Resource::Invoices,
                key,
                m,
                0,
                &mut Pending::default(),
                &BTreeMap::new(),
            )
        };
        // Two pages whose counts wrap around to the manifest's total.
        let wrapped = manifest(vec![page(1, u64::MAX), page(2, 3)], 2);
        let err = check(&wrapped)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("more than 2^64"), "{err}");
        let fine = manifest(vec![page(1, 4), page(2, 3)], 7);
        assert!(check(&fine).is_ok());
        let short = manifest(vec![page(1, 4)], 7);
        let err = check(&short)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("the pages hold 4 records"), "{err}");
    }
}
