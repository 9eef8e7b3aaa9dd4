//! Ingestion: the tenant's Xero organisation, incrementally, into raw NDJSON
//! pages in the tenant's bucket.
//!
//! Per resource: page with `If-Modified-Since` (journals: from the last
//! journal number) starting at the resource's cursor, write each page as it
//! arrives, then the manifest naming every page, and only then move the
//! cursor. A run that stops anywhere leaves pages without a manifest, which
//! nothing reads, and an unmoved cursor, so the next run fetches the same
//! records again: nothing is lost and the merge at load time keeps one copy.
//!
//! A resource listed in full every run (every unpaged one, see
//! [`Resource::listed_in_full`]) is fetched without `If-Modified-Since`, and
//! its manifest is the complete listing, written even when it is empty (no
//! pages, records 0): the load marks whatever the listing lacks as removed.
//! Its cursor keeps no change stamp, only when it was last ingested.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use cloud::ports::{Credential, ObjectStore};
use cloud::{Cloud, CloudError};
use xero::client::{ClientError, XeroClient};
use xero::pager::{ListRequest, PageCursor};
use xero::resources::{Paging, Resource};

use job_contract::raw::{self, Cursor, Cursors, Manifest, PageEntry};
use job_contract::summary::{DayLimitStop, IngestReport, ResourceCounts};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("reading {resource} from Xero: {source}")]
    Xero {
        resource: Resource,
        #[source]
        source: ClientError,
    },
    #[error("the tenant needs to connect Xero again (its refresh token is no longer valid)")]
    NeedsConsent,
    #[error("{what}: {source}")]
    Storage {
        what: String,
        #[source]
        source: CloudError,
    },
    #[error("{0}")]
    Invalid(String),
}

/// What an ingest needs: the tenant's bucket, its credential, and a Xero
/// client whose token provider refreshes under the token lease.
pub struct IngestContext {
    pub cloud: Cloud,
    pub cred: Credential,
    pub bucket: String,
    pub run_id: String,
    pub client: XeroClient,
    /// The resources to ingest, in order (default: all).
    pub resources: Vec<Resource>,
    /// Told the number of manifests written so far, each time one is
    /// written: `sync` loads each as it lands while ingest goes on fetching.
    pub manifests_written: Option<tokio::sync::watch::Sender<u64>>,
}

/// The cursors in the bucket; none yet is the empty set.
pub async fn read_cursors(
    objects: &Arc<dyn ObjectStore>,
    cred: &Credential,
    bucket: &str,
) -> Result<Cursors, IngestError> {
    match objects.get_object(cred, bucket, raw::CURSORS_KEY).await {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            IngestError::Invalid(format!(
                "{} in bucket {bucket} is not valid: {e}",
                raw::CURSORS_KEY
            ))
        }),
        Err(CloudError::NotFound { .. }) => Ok(Cursors::new()),
        Err(source) => Err(IngestError::Storage {
            what: format!("reading {}", raw::CURSORS_KEY),
            source,
        }),
    }
}

async fn put_json<T: Serialize>(
    ctx: &IngestContext,
    key: &str,
    value: &T,
) -> Result<(), IngestError> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| IngestError::Invalid(format!("encoding {key}: {e}")))?;
    put(ctx, key, bytes).await
}

async fn put(ctx: &IngestContext, key: &str, bytes: Vec<u8>) -> Result<(), IngestError> {
    // The object store retries nothing itself; a transient failure here is
    // retried a few times before the run gives up (and the next run redoes it).
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match ctx
            .cloud
            .objects
            .put_object(&ctx.cred, &ctx.bucket, key, bytes.clone())
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.is_retryable() && attempt < 4 => {
                tokio::time::sleep(
                    e.retry_after()
                        .unwrap_or(Duration::from_millis(200 * u64::from(attempt))),
                )
                .await;
            }
            Err(source) => {
                return Err(IngestError::Storage {
                    what: format!("writing {key} to bucket {}", ctx.bucket),
                    source,
                })
            }
        }
    }
}

/// Ingests every resource of `ctx`. A day limit ends the run early but
/// cleanly (the report says where); any other failure is an error, after
/// which the bucket holds nothing a later run would trip over.
pub async fn run(ctx: &IngestContext) -> Result<IngestReport, IngestError> {
    let mut cursors = read_cursors(&ctx.cloud.objects, &ctx.cred, &ctx.bucket).await?;
    let mut report = IngestReport::default();
    let calls_before = ctx.client.calls_made();
    let rate_limited_before = ctx.client.rate_limited_responses();
    // Never-finished resources first, then those finished longest ago (a
    // stable sort keeps the catalogue order among equals).
    let mut order = ctx.resources.clone();
    order.sort_by_key(|r| cursors.get(r.name()).and_then(|c| c.ingested_at));
    for resource in order {
        let cursor = cursors.get(resource.name()).cloned().unwrap_or_default();
        match ingest_resource(ctx, resource, &cursor).await {
            Ok((counts, next)) => {
                let mut next = next.unwrap_or(cursor);
                next.ingested_at = Some(OffsetDateTime::now_utc());
                cursors.insert(resource.name().to_owned(), next);
                put_json(ctx, raw::CURSORS_KEY, &cursors).await?;
                tracing::info!(resource = %resource, records = counts.records, pages = counts.pages, "ingested");
                report.resources.insert(resource.name().to_owned(), counts);
            }
            Err(IngestError::Xero { source, .. }) if source.day_limit_retry_after().is_some() => {
                let wait = source.day_limit_retry_after().unwrap_or_default();
                tracing::warn!(resource = %resource, retry_after_secs = wait.as_secs(), "Xero day limit reached; the next run resumes here");
                report.stopped_by_day_limit = Some(DayLimitStop {
                    resource: resource.name().to_owned(),
                    retry_after_secs: wait.as_secs(),
                });
                break;
            }
            Err(IngestError::Xero { source, .. }) if source.needs_reconsent() => {
                return Err(IngestError::NeedsConsent);
            }
            Err(e) => return Err(e),
        }
    }
    report.calls = ctx.client.calls_made().saturating_sub(calls_before);
    report.rate_limited = ctx
        .client
        .rate_limited_responses()
        .saturating_sub(rate_limited_before);
    report.day_remaining = Some(u64::from(ctx.client.limiter().day_remaining()));
    Ok(report)
}

/// One resource: pages, then manifest. Returns the counts and the cursor to
/// store (`None` when nothing new arrived, so the cursor stays).
async fn ingest_resource(
    ctx: &IngestContext,
    resource: Resource,
    cursor: &Cursor,
) -> Result<(ResourceCounts, Option<Cursor>), IngestError> {
    let mut request = ListRequest::new(resource);
    let in_full = resource.listed_in_full();
    if resource.supports_if_modified_since() && !in_full {
        if let Some(since) = cursor.modified_since {
            request = request.modified_since(since);
        }
    }
    if resource.paging() == Paging::Offset {
        if let Some(offset) = cursor.journal_offset {
            request = request.start_at(PageCursor::Offset(offset));
        }
    }
    let modified_since = request.if_modified_since;
    let mut pager = ctx.client.pages(request);
    let mut counts = ResourceCounts::default();
    let mut entries = Vec::new();
    let mut next = cursor.clone();
    if in_full {
        // Nothing narrows the next listing: a stamp here would only mislead.
        next.modified_since = None;
    }
    let xero_err = |source| IngestError::Xero { resource, source };
    while let Some(page) = pager.next_page().await.map_err(xero_err)? {
        if page.records.is_empty() {
            continue;
        }
        let mut body = Vec::with_capacity(page.records.len() * 512);
        for record in &page.records {
            serde_json::to_writer(&mut body, record.as_value())
                .map_err(|e| IngestError::Invalid(format!("encoding a {resource} record: {e}")))?;
            body.push(b'\n');
            if !in_full {
                advance(&mut next, record)?;
            }
        }
        counts.pages += 1;
        counts.records += page.records.len() as u64;
        let key = raw::page_key(resource, &ctx.run_id, counts.pages);
        let entry = PageEntry {
            key: key.clone(),
            records: page.records.len() as u64,
            sha256: hex::encode(Sha256::digest(&body)),
        };
        put(ctx, &key, body).await?;
        entries.push(entry);
    }
    // An empty incremental listing says nothing; an empty complete one
    // says the resource has no records left, which its manifest records.
    if entries.is_empty() && !in_full {
        return Ok((counts, None));
    }
    let manifest = Manifest {
        resource: resource.name().to_owned(),
        run_id: ctx.run_id.clone(),
        pages: entries,
        records: counts.records,
        modified_since,
        completed_at: OffsetDateTime::now_utc(),
    };
    put_json(ctx, &raw::manifest_key(resource, &ctx.run_id), &manifest).await?;
    if let Some(written) = &ctx.manifests_written {
        // No one listening (the loader stopped) is not the ingest's concern.
        written.send_modify(|n| *n += 1);
    }
    Ok((counts, Some(next)))
}

/// Moves the cursor past `record`: the newest change stamp, and for journals
/// the highest journal number.
fn advance(cursor: &mut Cursor, record: &xero::client::Record) -> Result<(), IngestError> {
    if let Some(updated) = record.updated_at().map_err(|e| {
        IngestError::Invalid(format!(
            "a {} record has an unreadable change stamp: {e}",
            record.resource()
        ))
    })? {
        if cursor.modified_since.is_none_or(|c| updated > c) {
            cursor.modified_since = Some(updated);
        }
    }
    if let Some(n) = record.journal_number() {
        if cursor.journal_offset.is_none_or(|c| n > c) {
            cursor.journal_offset = Some(n);
        }
    }
    Ok(())
}
