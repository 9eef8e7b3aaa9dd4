//! What ingestion leaves in the tenant's bucket, and what transformation
//! reads: the one contract between the two halves of a run.
//!
//! ```text
//! raw/<resource>/<run-id>/<page>.ndjson   one Xero record per line, exactly as the API returned it
//! raw/<resource>/<run-id>/manifest.json   written after every page of the resource in that run is durable
//! state/cursors.json                      per resource: where the next ingest starts (written after the manifest)
//! state/loaded.json                       manifests the transformation has merged into the raw dataset
//!                                         and that still hold a kept row (see compaction below)
//! state/compaction.json                   a compaction under way: what it deletes (gone once done)
//! runs/<run-id>.json                      the run's summary (status, per-resource counts, error)
//! leases/xero-token.json                  the token lease (see the tokens module)
//! ```
//!
//! Pages without a manifest belong to an interrupted ingest: transformation
//! ignores them and, because the cursor only moves after the manifest, the
//! next ingest fetches the same records again. Loading is a merge keeping the
//! latest version of each record, so loading a manifest twice changes nothing.
//!
//! Compaction: once loaded, a manifest none of whose records is kept in the
//! raw table any more (no row carries its run as `run_id` or
//! `removed_run_id`) is superseded: its manifest and pages are deleted and
//! its key leaves `state/loaded.json`. What remains is what loading from
//! scratch needs to give the same raw tables. The deletion is announced in
//! `state/compaction.json` first, so a run finding that file finishes it
//! before anything else. Pages without a manifest are never compacted (their
//! ingest may still be under way).
//!
//! A loaded manifest of a paged resource fewer than half of whose records
//! are still kept is rewritten: its kept records (lines unchanged, in their
//! order) go into new pages `raw/<resource>/<run-id>/kept-<token>-<n>.ndjson`,
//! the manifest is replaced by one naming them (same run, same completion
//! time, so loading from scratch orders them as before), and the old pages
//! are deleted. The rewrite is announced in `state/compaction.json` first:
//! a run finding it keeps the new pages if the manifest names them and
//! deletes the old ones, or else deletes the new ones. So the bucket holds
//! at most about twice what the raw tables keep, whatever the edits.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use xero::resources::Resource;

/// The folder of one resource's pages in one run.
pub fn run_prefix(resource: Resource, run_id: &str) -> String {
    format!("raw/{}/{run_id}/", resource.storage_name())
}

/// The key of page `page` (1-based) of a resource in a run.
pub fn page_key(resource: Resource, run_id: &str, page: u32) -> String {
    format!("{}{page:05}.ndjson", run_prefix(resource, run_id))
}

/// The key of a resource's manifest in a run.
pub fn manifest_key(resource: Resource, run_id: &str) -> String {
    format!("{}manifest.json", run_prefix(resource, run_id))
}

/// Where every resource's manifests are (to list them).
pub fn resource_prefix(resource: Resource) -> String {
    format!("raw/{}/", resource.storage_name())
}

pub const CURSORS_KEY: &str = "state/cursors.json";
pub const LOADED_KEY: &str = "state/loaded.json";
pub const COMPACTION_KEY: &str = "state/compaction.json";

/// The key of a run's summary.
pub fn run_summary_key(run_id: &str) -> String {
    format!("runs/{run_id}.json")
}

/// One page as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageEntry {
    pub key: String,
    pub records: u64,
    /// SHA-256 of the page's bytes, hex; the transformation checks it.
    pub sha256: String,
}

/// Every page of one resource in one run, written once they are all durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`Resource::name`], e.g. `Invoices`.
    pub resource: String,
    pub run_id: String,
    pub pages: Vec<PageEntry>,
    pub records: u64,
    /// The `If-Modified-Since` the pages were fetched with, if any.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub modified_since: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub completed_at: OffsetDateTime,
}

/// Where the next ingest of a resource starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The largest change stamp seen (`UpdatedDateUTC`; `CreatedDateUTC` for
    /// journals), sent as `If-Modified-Since`.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub modified_since: Option<OffsetDateTime>,
    /// Journals page by number: the last `JournalNumber` seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal_offset: Option<i64>,
    /// When an ingest last finished this resource. Runs take the resources
    /// finished longest ago first, so a run cut short by Xero's day limit is
    /// resumed where it stopped rather than starting over.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub ingested_at: Option<OffsetDateTime>,
}

/// `state/cursors.json`: resource name → cursor.
pub type Cursors = BTreeMap<String, Cursor>;

/// `state/loaded.json`: the manifest keys already merged into the raw dataset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loaded {
    pub manifests: std::collections::BTreeSet<String>,
    /// Records each loaded manifest holds, so that compaction can tell how
    /// much of it is still kept without reading it (absent for manifests
    /// loaded before this was kept: compaction reads those).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub records: BTreeMap<String, u64>,
}

impl Loaded {
    /// Records `key` as loaded, holding `records`.
    pub fn insert(&mut self, key: String, records: u64) {
        self.records.insert(key.clone(), records);
        self.manifests.insert(key);
    }

    /// Forgets `key`; whether it was loaded.
    pub fn remove(&mut self, key: &str) -> bool {
        self.records.remove(key);
        self.manifests.remove(key)
    }
}

/// `state/compaction.json`: a compaction announced and not finished.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compaction {
    /// The superseded manifests' keys: they leave `state/loaded.json`.
    pub manifests: Vec<String>,
    /// Every object deleted: each manifest, then its pages.
    pub objects: Vec<String>,
    /// Their bytes, as listed when announced.
    #[serde(default)]
    pub bytes: u64,
    /// Manifests being rewritten to hold only their kept records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewrites: Vec<Rewrite>,
}

/// One manifest being rewritten (see the module's documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rewrite {
    /// The manifest's key (it stays the same).
    pub manifest: String,
    /// The pages it named before: deleted once it names the new ones.
    pub replaced: Vec<String>,
    /// Their bytes, as listed when announced.
    pub replaced_bytes: u64,
    /// Every new page's key starts with this; if the manifest does not name
    /// them, they are deleted instead.
    pub new_pages: String,
}

/// The prefix of the pages a rewrite of `resource`'s manifest of `run_id`
/// writes; `token` makes it unique to that rewrite.
pub fn rewritten_pages_prefix(resource: Resource, run_id: &str, token: &str) -> String {
    format!("{}kept-{token}-", run_prefix(resource, run_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        assert_eq!(
            page_key(Resource::Invoices, "r1", 7),
            "raw/invoices/r1/00007.ndjson"
        );
        assert_eq!(
            manifest_key(Resource::CreditNotes, "r1"),
            "raw/creditnotes/r1/manifest.json"
        );
        assert_eq!(resource_prefix(Resource::Journals), "raw/journals/");
        assert_eq!(
            rewritten_pages_prefix(Resource::Invoices, "r1", "ab12"),
            "raw/invoices/r1/kept-ab12-"
        );
        assert_eq!(run_summary_key("r9"), "runs/r9.json");
    }
}
