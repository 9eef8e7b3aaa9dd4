//! Loading: raw pages named by manifests → the raw dataset.
//!
//! Every manifest not yet in `state/loaded.json` is read, its pages checked
//! against their SHA-256 and record counts, each record wrapped in an
//! envelope line (`id`, `updated_at`, the record as JSON text, `run_id`,
//! `fetched_at`, `seq`), loaded into `_load_<resource>`, and merged into the
//! raw table `<resource>` keeping the latest version of each record. Only
//! then is the manifest recorded as loaded; a crash in between merges it
//! again, which changes nothing. Keeping the record whole as text keeps the
//! raw schema the same whatever fields Xero sends.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use xero::resources::Resource;

use cloud::ports::WriteMode;
use cloud::CloudError;

use super::render::Renderer;
use super::{retrying, TransformContext, TransformError};
use job_contract::raw::{self, Loaded, Manifest};

/// Envelope bytes per load: large manifests are merged in batches of about
/// this much, so memory stays bounded whatever a run fetched.
const BATCH_BYTES: usize = 32 * 1024 * 1024;

/// What loading did.
#[derive(Debug, Default)]
pub(crate) struct LoadOutcome {
    /// Records merged, per resource storage name (every resource listed).
    pub loaded: BTreeMap<String, u64>,
    /// The manifests loaded, in order.
    pub manifests: Vec<String>,
}

fn bad_raw(key: &str, reason: impl Into<String>) -> TransformError {
    TransformError::BadRaw {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

fn storage(what: String) -> impl FnOnce(CloudError) -> TransformError {
    move |source| TransformError::Storage { what, source }
}

fn rfc3339(t: OffsetDateTime) -> Result<String, String> {
    t.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|e| format!("cannot format {t}: {e}"))
}

/// `raw/<resource>/<run>/manifest.json`, directly under the resource's folder.
fn is_manifest_key(key: &str, resource_prefix: &str) -> bool {
    key.strip_prefix(resource_prefix)
        .and_then(|rest| rest.strip_suffix("/manifest.json"))
        .is_some_and(|run| !run.is_empty() && !run.contains('/'))
}

/// Reads a record's id and change stamp and skips every other field, so a
/// record is never built as a whole JSON tree just to find two values.
struct KeyFields<'f> {
    id: &'f str,
    updated: Option<&'f str>,
}

impl<'de> DeserializeSeed<'de> for KeyFields<'_> {
    type Value = (Option<Value>, Option<Value>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for KeyFields<'_> {
    type Value = (Option<Value>, Option<Value>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut id, mut updated) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            if key == self.id {
                id = Some(map.next_value::<Value>()?);
            } else if Some(key.as_str()) == self.updated {
                updated = Some(map.next_value::<Value>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok((id, updated))
    }
}

/// One record line as an envelope line.
pub(crate) fn envelope(
    resource: Resource,
    line: &str,
    run_id: &str,
    fetched_at: &str,
    seq: u64,
) -> Result<Vec<u8>, String> {
    let id_field = resource.id_field();
    let seed = KeyFields {
        id: id_field,
        updated: resource.updated_field(),
    };
    let mut de = serde_json::Deserializer::from_str(line);
    let (id, updated) = seed
        .deserialize(&mut de)
        .and_then(|found| de.end().map(|()| found))
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => format!("not a JSON object: {e}"),
            _ => format!("not JSON: {e}"),
        })?;
    let id = match id {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(format!("the record has no {id_field}")),
    };
    let updated_at = match (resource.updated_field(), updated) {
        (_, None | Some(Value::Null)) | (None, _) => None,
        (Some(field), Some(Value::String(s))) => {
            let t = xero::dates::parse(&s).map_err(|e| format!("{field}: {e}"))?;
            Some(rfc3339(t)?)
        }
        (Some(field), Some(other)) => return Err(format!("{field} is not a date: {other}")),
    };
    let mut out = Vec::with_capacity(line.len() + line.len() / 4 + 160);
    serde_json::to_writer(
        &mut out,
        &Envelope {
            id: &id,
            updated_at: updated_at.as_deref(),
            record: line,
            run_id,
            fetched_at,
            seq,
        },
    )
    .map_err(|e| format!("cannot encode the envelope: {e}"))?;
    Ok(out)
}

/// One line of a load table.
#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    /// RFC 3339, UTC; null when the resource or record has no stamp.
    updated_at: Option<&'a str>,
    /// The record as Xero sent it, as JSON text.
    record: &'a str,
    run_id: &'a str,
    fetched_at: &'a str,
    /// Position in the manifest: of two versions with the same stamp in one
    /// manifest, the later wins.
    seq: u64,
}

async fn read_loaded(ctx: &TransformContext) -> Result<Loaded, TransformError> {
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

async fn write_loaded(ctx: &TransformContext, loaded: &Loaded) -> Result<(), TransformError> {
    let bytes = serde_json::to_vec_pretty(loaded)
        .map_err(|e| bad_raw(raw::LOADED_KEY, format!("cannot encode: {e}")))?;
    // A plain write: two transforms of one tenant at once could only lose a
    // key of the other's, whose manifest is then merged again, harmlessly.
    retrying(|| {
        ctx.cloud
            .objects
            .put_object(&ctx.cred, &ctx.bucket, raw::LOADED_KEY, bytes.clone())
    })
    .await
    .map(|_| ())
    .map_err(storage(format!(
        "writing {} to bucket {}",
        raw::LOADED_KEY,
        ctx.bucket
    )))
}

/// Creates the raw tables, then loads every manifest not loaded yet.
pub(crate) async fn load_all(
    ctx: &TransformContext,
    renderer: &Renderer,
) -> Result<LoadOutcome, TransformError> {
    let tables: Vec<String> = Resource::ALL.iter().map(|r| r.storage_name()).collect();
    // Every raw table exists from the first run on, so models of resources
    // the organisation never had still build (empty).
    let sql = renderer.raw_tables(&tables)?;
    retrying(|| {
        ctx.cloud
            .warehouse
            .execute(&ctx.cred, &ctx.raw_dataset, &sql)
    })
    .await
    .map_err(storage(format!(
        "creating the raw tables in dataset {}",
        ctx.raw_dataset
    )))?;

    let mut loader = Loader {
        ctx,
        renderer,
        state: read_loaded(ctx).await?,
        staged: Vec::new(),
        finished: Vec::new(),
        out: LoadOutcome {
            loaded: tables.iter().map(|t| (t.clone(), 0)).collect(),
            manifests: Vec::new(),
        },
    };
    for resource in Resource::ALL {
        let prefix = raw::resource_prefix(resource);
        let objects = retrying(|| {
            ctx.cloud
                .objects
                .list_objects(&ctx.cred, &ctx.bucket, &prefix)
        })
        .await
        .map_err(storage(format!(
            "listing {prefix} in bucket {}",
            ctx.bucket
        )))?;
        let mut pending = Vec::new();
        for object in objects {
            if !is_manifest_key(&object.key, &prefix)
                || loader.state.manifests.contains(&object.key)
            {
                continue;
            }
            let bytes = retrying(|| {
                ctx.cloud
                    .objects
                    .get_object(&ctx.cred, &ctx.bucket, &object.key)
            })
            .await
            .map_err(storage(format!("reading {}", object.key)))?;
            let manifest: Manifest = serde_json::from_slice(&bytes)
                .map_err(|e| bad_raw(&object.key, format!("not a manifest: {e}")))?;
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
        // Oldest first, so that of two versions with the same change stamp
        // the later fetch is merged last.
        pending.sort_by(|(ka, a), (kb, b)| (a.completed_at, ka).cmp(&(b.completed_at, kb)));
        for (key, manifest) in pending {
            loader.manifest(resource, &key, &manifest).await?;
        }
    }
    loader.flush().await?;
    Ok(loader.out)
}

/// A batch loaded into its load table, waiting for the merge.
struct Staged {
    resource: Resource,
    manifest: String,
    load: String,
    merge: String,
}

/// Loads batches into the load tables and merges them all at once (one
/// warehouse session for every resource of a run, rather than one each),
/// recording a manifest as loaded only once all its batches are merged.
struct Loader<'a> {
    ctx: &'a TransformContext,
    renderer: &'a Renderer,
    state: Loaded,
    staged: Vec<Staged>,
    /// Manifests whose batches are all staged: (resource, key, records).
    finished: Vec<(Resource, String, u64)>,
    out: LoadOutcome,
}

impl Loader<'_> {
    /// Reads, checks and stages one manifest's pages.
    async fn manifest(
        &mut self,
        resource: Resource,
        key: &str,
        manifest: &Manifest,
    ) -> Result<(), TransformError> {
        let ctx = self.ctx;
        let listed: u64 = manifest.pages.iter().map(|p| p.records).sum();
        if listed != manifest.records {
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
        let mut batch: Vec<u8> = Vec::new();
        let mut seq = 0u64;
        for page in &manifest.pages {
            if !page.key.starts_with(&resource_prefix) {
                return Err(bad_raw(
                    key,
                    format!("page {} is not under {resource_prefix}", page.key),
                ));
            }
            let bytes = retrying(|| {
                ctx.cloud
                    .objects
                    .get_object(&ctx.cred, &ctx.bucket, &page.key)
            })
            .await
            .map_err(storage(format!("reading {}", page.key)))?;
            let digest = hex::encode(Sha256::digest(&bytes));
            if !digest.eq_ignore_ascii_case(&page.sha256) {
                return Err(bad_raw(
                    &page.key,
                    format!(
                        "its SHA-256 is {digest}, the manifest says {}: the page changed or is damaged",
                        page.sha256
                    ),
                ));
            }
            let text = std::str::from_utf8(&bytes)
                .map_err(|e| bad_raw(&page.key, format!("not UTF-8: {e}")))?;
            let mut records = 0u64;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                seq += 1;
                records += 1;
                let env = envelope(resource, line, &manifest.run_id, &fetched_at, seq)
                    .map_err(|e| bad_raw(&format!("{} line {}", page.key, i + 1), e))?;
                batch.extend_from_slice(&env);
                batch.push(b'\n');
            }
            if records != page.records {
                return Err(bad_raw(
                    &page.key,
                    format!(
                        "it holds {records} records, the manifest says {}",
                        page.records
                    ),
                ));
            }
            if batch.len() >= BATCH_BYTES {
                self.stage(
                    resource,
                    key,
                    manifest,
                    &fetched_at,
                    std::mem::take(&mut batch),
                )
                .await?;
            }
        }
        if !batch.is_empty() {
            self.stage(resource, key, manifest, &fetched_at, batch)
                .await?;
        }
        self.finished.push((resource, key.to_owned(), seq));
        Ok(())
    }

    /// Loads one batch into `_load_<resource>`, merging what is staged first
    /// if that table already holds a batch.
    async fn stage(
        &mut self,
        resource: Resource,
        key: &str,
        manifest: &Manifest,
        fetched_at: &str,
        batch: Vec<u8>,
    ) -> Result<(), TransformError> {
        let ctx = self.ctx;
        let table = resource.storage_name();
        let load = format!("_load_{table}");
        if self.staged.iter().any(|s| s.load == load) {
            self.flush().await?;
        }
        let (bytes, started) = (batch.len(), Instant::now());
        let rows = retrying(|| {
            ctx.cloud.warehouse.load_ndjson(
                &ctx.cred,
                &ctx.raw_dataset,
                &load,
                batch.clone(),
                WriteMode::Truncate,
            )
        })
        .await
        .map_err(|source| TransformError::Load {
            resource: resource.name().to_owned(),
            manifest: key.to_owned(),
            source,
        })?;
        tracing::debug!(resource = %resource, rows, bytes, ms = started.elapsed().as_millis(), "staged a batch");
        let merge = self
            .renderer
            .merge(&table, &load, &manifest.run_id, fetched_at)?;
        self.staged.push(Staged {
            resource,
            manifest: key.to_owned(),
            load,
            merge,
        });
        Ok(())
    }

    /// Merges every staged batch into its raw table, drops the load tables,
    /// and records the manifests that are now wholly merged.
    async fn flush(&mut self) -> Result<(), TransformError> {
        let ctx = self.ctx;
        if !self.staged.is_empty() {
            let started = Instant::now();
            let mut script: String = self
                .staged
                .iter()
                .map(|s| format!("{}\n", s.merge))
                .collect();
            let loads: Vec<String> = self.staged.iter().map(|s| s.load.clone()).collect();
            script.push_str(&self.renderer.drop_load_tables(&loads));
            let merged = retrying(|| {
                ctx.cloud
                    .warehouse
                    .execute(&ctx.cred, &ctx.raw_dataset, &script)
            })
            .await;
            if let Err(source) = merged {
                return Err(self.blame(source).await);
            }
            tracing::debug!(
                batches = self.staged.len(),
                ms = started.elapsed().as_millis(),
                "merged"
            );
            self.staged.clear();
        }
        if self.finished.is_empty() {
            return Ok(());
        }
        for (_, key, _) in &self.finished {
            self.state.manifests.insert(key.clone());
        }
        write_loaded(ctx, &self.state).await?;
        for (resource, key, records) in self.finished.drain(..) {
            *self.out.loaded.entry(resource.storage_name()).or_default() += records;
            tracing::info!(resource = %resource, manifest = %key, records, "loaded into the raw dataset");
            self.out.manifests.push(key);
        }
        Ok(())
    }

    /// After a failed merge of several batches: merges them one by one (a
    /// merge is idempotent, so redoing those that went through is harmless)
    /// to name the one that fails.
    async fn blame(&self, error: CloudError) -> TransformError {
        let ctx = self.ctx;
        let as_load_error = |s: &Staged, source| TransformError::Load {
            resource: s.resource.name().to_owned(),
            manifest: s.manifest.clone(),
            source,
        };
        if self.staged.len() > 1 && !error.is_retryable() {
            for s in &self.staged {
                let one = retrying(|| {
                    ctx.cloud
                        .warehouse
                        .execute(&ctx.cred, &ctx.raw_dataset, &s.merge)
                })
                .await;
                if let Err(source) = one {
                    return as_load_error(s, source);
                }
            }
        }
        match self.staged.first() {
            Some(s) if self.staged.len() == 1 => as_load_error(s, error),
            _ => TransformError::Load {
                resource: self
                    .staged
                    .iter()
                    .map(|s| s.resource.name())
                    .collect::<Vec<_>>()
                    .join(", "),
                manifest: self
                    .staged
                    .iter()
                    .map(|s| s.manifest.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                source: error,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_found_only_where_the_layout_puts_them() {
        let p = "raw/invoices/";
        assert!(is_manifest_key("raw/invoices/r1/manifest.json", p));
        assert!(!is_manifest_key("raw/invoices/r1/00001.ndjson", p));
        assert!(!is_manifest_key("raw/invoices/manifest.json", p));
        assert!(!is_manifest_key("raw/invoices/a/b/manifest.json", p));
        assert!(!is_manifest_key("raw/invoicesx/r1/manifest.json", p));
    }

    #[test]
    fn envelopes_carry_the_id_the_stamp_and_the_record_whole() {
        let line =
            r#"{"InvoiceID":"abc","UpdatedDateUTC":"/Date(1577836800000+0000)/","Total":1.5}"#;
        let env =
            envelope(Resource::Invoices, line, "r1", "2024-01-01T00:00:00Z", 7).expect("envelope");
        let v: Value = serde_json::from_slice(&env).expect("json");
        assert_eq!(v["id"], "abc");
        assert_eq!(v["updated_at"], "2020-01-01T00:00:00Z");
        assert_eq!(v["record"], line);
        assert_eq!(v["run_id"], "r1");
        assert_eq!(v["seq"], 7);
        // Journals are stamped by their creation; organisations not at all.
        let j = r#"{"JournalID":"j","CreatedDateUTC":"/Date(1577836800123+1300)/"}"#;
        let v: Value =
            serde_json::from_slice(&envelope(Resource::Journals, j, "r", "t", 1).expect("journal"))
                .expect("json");
        assert_eq!(v["updated_at"], "2020-01-01T00:00:00.123Z");
        let o = r#"{"OrganisationID":"o","Name":"Demo"}"#;
        let v: Value =
            serde_json::from_slice(&envelope(Resource::Organisation, o, "r", "t", 1).expect("org"))
                .expect("json");
        assert_eq!(v["updated_at"], Value::Null);
        for (bad, why) in [
            ("[1]", "not a JSON object"),
            ("{", "not JSON"),
            (r#"{"Total":1}"#, "no InvoiceID"),
            (
                r#"{"InvoiceID":"a","UpdatedDateUTC":"yesterday"}"#,
                "UpdatedDateUTC",
            ),
        ] {
            let e = envelope(Resource::Invoices, bad, "r", "t", 1).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
