//! Rewriting: a loaded manifest most of whose records are superseded keeps
//! only the ones a raw table still keeps.
//!
//! Removing whole superseded manifests (`compact.rs`) leaves a manifest with
//! one kept record whole, so under steady edits the bucket would grow with
//! the volume of changes. So a loaded manifest of a paged resource with a
//! change stamp, fewer than half of whose records are kept (rows naming its
//! run as `run_id`), and which is no row's removal evidence, is rewritten:
//! its kept records' lines, unchanged and in their order, go into new pages
//! beside it (`kept-<token>-<n>.ndjson`, at most as many records as its
//! largest page), and the manifest is replaced by one naming them, with the
//! same run and completion time. Loading from scratch then gives the same
//! rows: each kept row's version is still in its run's manifest, in the same
//! order relative to the other lines kept, and what went were versions a
//! later one replaced. After a rewrite at least half of every manifest is
//! kept, so the bucket holds at most about twice what the raw tables keep.
//!
//! Resources listed in full (a listing's absences are evidence) and those
//! without a change stamp (whose removal dates from an earlier version) are
//! never rewritten. A rewrite is announced in `state/compaction.json` before
//! its first page is written; [`super::compact::finish`] then deletes the
//! old pages once the manifest names the new ones, or, when a run stopped
//! before that, the new ones. A page that does not hold what its manifest
//! says, or a kept record the manifest lacks, leaves the manifest as it is.

use std::collections::{BTreeMap, HashSet};

use cloud::ports::PageDigest;
use job_contract::raw::{self, Compaction, Manifest, PageEntry, Rewrite};
use xero::resources::Resource;

use super::compact::{self, CompactionReport, KeptRuns, RunUse};
use super::raw_io::{
    list_prefix, manifest_run, query_raw, read_loaded, read_manifest, storage, write_json,
    write_loaded,
};
use super::{retrying, TransformContext, TransformError};

/// Whether `resource`'s manifests may be rewritten (see the module's
/// documentation).
pub(crate) fn rewritable(resource: Resource) -> bool {
    resource.updated_field().is_some() && !resource.listed_in_full()
}

/// Whether a manifest of `records` records, `usage` of them kept, is worth
/// rewriting: fewer than half kept, at least one (none: it is superseded
/// whole), and no removal evidence.
fn sparse(usage: RunUse, records: u64) -> bool {
    usage.evidence == 0 && usage.kept > 0 && usage.kept.saturating_mul(2) < records
}

/// A run id as it can stand in a SQL literal unquoted of anything: the ones
/// jobs make. Any other run is left alone.
fn plain_run(run: &str) -> bool {
    !run.is_empty()
        && run
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The id of a record line as the merge reads it (`id_field`, a non-empty
/// string or a number), if it has one.
fn record_id(line: &[u8], id_field: &str) -> Option<String> {
    let record: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line).ok()?;
    match record.get(id_field)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Rewrites every loaded manifest that is [`sparse`] by `kept`.
pub(crate) async fn rewrite_sparse(
    ctx: &TransformContext,
    kept: &KeptRuns,
) -> Result<CompactionReport, TransformError> {
    let loaded = read_loaded(ctx).await?;
    let mut report = CompactionReport::default();
    // Counts of manifests loaded before loaded.json kept them, read here
    // once and kept from now on.
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    for resource in Resource::ALL.iter().copied().filter(|r| rewritable(*r)) {
        let Some(runs) = kept.get(&resource.storage_name()) else {
            continue;
        };
        let prefix = raw::resource_prefix(resource);
        for key in &loaded.manifests {
            let Some(run) = manifest_run(key, &prefix) else {
                continue;
            };
            let Some(&usage) = runs.get(run) else {
                continue;
            };
            let (records, read) = match loaded.records.get(key) {
                Some(&n) => (n, None),
                None => {
                    let manifest = read_manifest(ctx, key).await?;
                    counted.insert(key.clone(), manifest.records);
                    (manifest.records, Some(manifest))
                }
            };
            if sparse(usage, records) {
                let manifest = match read {
                    Some(manifest) => manifest,
                    None => read_manifest(ctx, key).await?,
                };
                report.add(&rewrite_one(ctx, resource, key, run, manifest).await?);
            }
        }
    }
    if !counted.is_empty() {
        // Read again: each rewrite brought it up to date already.
        let mut state = read_loaded(ctx).await?;
        let before = state.clone();
        for (key, n) in counted {
            if state.manifests.contains(&key) {
                state.records.entry(key).or_insert(n);
            }
        }
        if state != before {
            write_loaded(ctx, &state).await?;
        }
    }
    Ok(report)
}

/// New pages being written: lines gathered up to `cap` records a page.
struct PageWriter<'a> {
    ctx: &'a TransformContext,
    prefix: String,
    cap: u64,
    body: Vec<u8>,
    records: u64,
    written: Vec<PageEntry>,
    bytes: u64,
}

impl PageWriter<'_> {
    async fn push(&mut self, line: &[u8]) -> Result<(), TransformError> {
        self.body.extend_from_slice(line);
        self.body.push(b'\n');
        self.records += 1;
        if self.records >= self.cap {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), TransformError> {
        if self.records == 0 {
            return Ok(());
        }
        let key = format!("{}{:05}.ndjson", self.prefix, self.written.len() + 1);
        let mut digest = PageDigest::new();
        digest.update(&self.body);
        let read = digest.finish(key.clone());
        let body = std::mem::take(&mut self.body);
        let size = body.len() as u64;
        let ctx = self.ctx;
        retrying(|| {
            ctx.cloud
                .objects
                .put_object(&ctx.cred, &ctx.bucket, &key, body.clone())
        })
        .await
        .map_err(storage(format!("writing {key} (compaction)")))?;
        self.written.push(PageEntry {
            key,
            records: self.records,
            sha256: read.sha256,
        });
        self.bytes += size;
        self.records = 0;
        Ok(())
    }
}

/// Rewrites `manifest`, at `key` of `resource` (in the folder of run
/// `folder`), to hold only its kept records; a report of nothing when it is
/// left as it is.
async fn rewrite_one(
    ctx: &TransformContext,
    resource: Resource,
    key: &str,
    folder: &str,
    manifest: Manifest,
) -> Result<CompactionReport, TransformError> {
    // The table names the run the manifest says (normally its folder).
    let run = manifest.run_id.clone();
    if !plain_run(&run) {
        return Ok(CompactionReport::default());
    }
    let table = resource.storage_name();
    let result = query_raw(
        ctx,
        format!("SELECT id FROM {table} WHERE run_id = '{run}'"),
        || format!("reading the records {table} keeps of run {run}"),
    )
    .await?;
    let ids: HashSet<String> = result
        .rows
        .into_iter()
        .filter_map(|row| match row.into_iter().next() {
            Some(serde_json::Value::String(id)) => Some(id),
            _ => None,
        })
        .collect();
    if result.truncated || ids.is_empty() || ids.len() as u64 * 2 >= manifest.records {
        return Ok(CompactionReport::default());
    }

    let run_prefix = raw::run_prefix(resource, folder);
    let sizes: BTreeMap<String, u64> = list_prefix(ctx, &run_prefix)
        .await?
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    let token = uuid::Uuid::new_v4().simple().to_string();
    let rewrite = Rewrite {
        manifest: key.to_owned(),
        replaced: manifest.pages.iter().map(|p| p.key.clone()).collect(),
        replaced_bytes: manifest
            .pages
            .iter()
            .map(|p| sizes.get(&p.key).copied().unwrap_or(0))
            .sum(),
        new_pages: raw::rewritten_pages_prefix(resource, folder, &token[..12]),
    };
    let marker = Compaction {
        rewrites: vec![rewrite.clone()],
        ..Compaction::default()
    };
    compact::announce(ctx, &marker).await?;

    let mut out = PageWriter {
        ctx,
        prefix: rewrite.new_pages.clone(),
        cap: manifest
            .pages
            .iter()
            .map(|p| p.records)
            .max()
            .unwrap_or(1)
            .max(1),
        body: Vec::new(),
        records: 0,
        written: Vec::new(),
        bytes: 0,
    };
    let id_field = resource.id_field();
    let mut found: HashSet<String> = HashSet::with_capacity(ids.len());
    let mut whole = true;
    for page in &manifest.pages {
        let body = retrying(|| {
            ctx.cloud
                .objects
                .get_object(&ctx.cred, &ctx.bucket, &page.key)
        })
        .await
        .map_err(storage(format!("reading {} (compaction)", page.key)))?;
        let mut digest = PageDigest::new();
        digest.update(&body);
        let read = digest.finish(page.key.clone());
        if !read.sha256.eq_ignore_ascii_case(&page.sha256) || read.lines != page.records {
            tracing::warn!(page = %page.key, manifest = %key, "the page does not hold what its manifest says: not rewritten");
            whole = false;
            break;
        }
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            // A line without a readable id is kept: only what is surely
            // superseded goes.
            let keep = match record_id(line, id_field) {
                Some(id) if ids.contains(&id) => {
                    found.insert(id);
                    true
                }
                Some(_) => false,
                None => true,
            };
            if keep {
                out.push(line).await?;
            }
        }
    }
    if whole && found.len() != ids.len() {
        tracing::warn!(manifest = %key, kept = ids.len(), found = found.len(), "records the raw table keeps of this run are not all in its manifest: not rewritten");
        whole = false;
    }
    if whole {
        out.flush().await?;
        let records = out.written.iter().map(|p| p.records).sum();
        let rewritten = Manifest {
            pages: std::mem::take(&mut out.written),
            records,
            ..manifest
        };
        write_json(ctx, key, &rewritten).await?;
        tracing::info!(manifest = %key, records, pages = rewritten.pages.len(), "rewrote a manifest to its kept records");
        let mut report = compact::finish(ctx, &marker).await?;
        report.rewritten_pages = rewritten.pages.len() as u64;
        report.rewritten_bytes = out.bytes;
        Ok(report)
    } else {
        // Undone by finishing: the manifest does not name the new pages.
        compact::finish(ctx, &marker).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paged_resources_with_a_change_stamp_are_rewritten() {
        assert!(rewritable(Resource::Invoices));
        assert!(rewritable(Resource::Contacts));
        assert!(!rewritable(Resource::TaxRates), "no change stamp");
        assert!(!rewritable(Resource::Currencies), "listed in full");
        assert!(!rewritable(Resource::Accounts), "listed in full");
    }

    #[test]
    fn a_manifest_is_sparse_when_fewer_than_half_its_records_are_kept() {
        let kept = |kept, evidence| RunUse { kept, evidence };
        assert!(sparse(kept(4, 0), 10));
        assert!(!sparse(kept(5, 0), 10), "half kept");
        assert!(!sparse(kept(0, 0), 10), "superseded whole: removed instead");
        assert!(!sparse(kept(1, 1), 10), "removal evidence");
    }

    #[test]
    fn a_records_id_is_read_as_the_merge_reads_it() {
        assert_eq!(
            record_id(br#"{"InvoiceID":"a-1","Total":2}"#, "InvoiceID").as_deref(),
            Some("a-1")
        );
        assert_eq!(
            record_id(br#"{"JournalNumber":42}"#, "JournalNumber").as_deref(),
            Some("42")
        );
        assert_eq!(record_id(br#"{"InvoiceID":""}"#, "InvoiceID"), None);
        assert_eq!(record_id(b"not json", "InvoiceID"), None);
        assert!(plain_run("run-2026-12-03T09:00:00Z_1"));
        assert!(!plain_run("run'1"));
        assert!(!plain_run(""));
    }
}
