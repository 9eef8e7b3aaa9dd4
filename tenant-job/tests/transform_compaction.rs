//! Raw data that no longer grows without bound: records Xero deleted, voided
//! or archived are marked in the raw tables (by their status, or for a
//! resource listed in full by a complete listing that lacks them),
//! superseded raw pages leave the bucket and `state/loaded.json` after each
//! load, a compaction stopped part-way is finished by the next run, and
//! loading everything left from scratch (`rebuild`) gives exactly the same
//! raw and transformed tables. A raw table made before the removal columns
//! is upgraded in place.

mod transform_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use cloud::naming::Labels;
use cloud::ports::{Bucket, BucketSpec, Credential, ObjectInfo, ObjectStore, Precondition};
use cloud::{CloudError, CloudResult};
use cloud_local::LocalAdapters;
use job_contract::raw::{self, Compaction, Loaded, Manifest, COMPACTION_KEY, LOADED_KEY};
use tenant_job::transform::{self, TransformReport};
use transform_support::{int, open_cloud, provision, with_field, write_run, Books, Tenant};
use xero::resources::Resource;
use xero_sandbox::ChangeRequest;

/// Objects and bytes under `prefix` of the tenant's bucket.
async fn usage(t: &Tenant, prefix: &str) -> (usize, u64) {
    let objects = t
        .cloud
        .objects
        .list_objects(&t.cred, &t.bucket, prefix)
        .await
        .expect("list");
    (objects.len(), objects.iter().map(|o| o.size).sum())
}

async fn loaded(t: &Tenant) -> Loaded {
    serde_json::from_slice(&t.get(LOADED_KEY).await).expect("loaded.json")
}

async fn exists(t: &Tenant, key: &str) -> bool {
    match t.cloud.objects.get_object(&t.cred, &t.bucket, key).await {
        Ok(_) => true,
        Err(CloudError::NotFound { .. }) => false,
        Err(e) => panic!("{key}: {e}"),
    }
}

/// What the bucket must hold after compaction: every manifest is loaded,
/// and each still holds a version a raw table keeps (or a removal's
/// evidence); every page a manifest names is there.
async fn assert_compacted(t: &Tenant, when: &str) {
    let in_bucket = t.manifests().await;
    let state = loaded(t).await;
    assert_eq!(state.manifests, in_bucket, "{when}: loaded.json");
    assert!(!exists(t, COMPACTION_KEY).await, "{when}: marker left");
    for resource in Resource::ALL {
        let table = resource.storage_name();
        let runs: BTreeSet<String> = t
            .rows(
                &t.raw,
                &format!(
                    "SELECT run_id FROM {table} UNION SELECT removed_run_id FROM {table} \
                     WHERE removed_run_id IS NOT NULL"
                ),
            )
            .await
            .into_iter()
            .map(|r| r[0].as_str().expect("run").to_owned())
            .collect();
        for key in in_bucket
            .iter()
            .filter(|k| k.starts_with(&raw::resource_prefix(resource)))
        {
            let manifest: raw::Manifest =
                serde_json::from_slice(&t.get(key).await).expect("manifest");
            assert!(
                runs.contains(&manifest.run_id),
                "{when}: {key} is superseded but was kept"
            );
            for page in &manifest.pages {
                assert!(exists(t, &page.key).await, "{when}: {} is gone", page.key);
            }
        }
    }
}

/// The rows of `table` whose status is a removal, or that are marked
/// removed, with their marks: id, status in the record, xero_status,
/// removed_at and updated_at (epoch ms), removed_run_id, run_id.
async fn removals(t: &Tenant, table: &str, status_field: &str) -> Vec<Vec<Value>> {
    t.rows(
        &t.raw,
        &format!(
            "SELECT id, json_extract_string(record, '$.{status_field}') AS status, xero_status, \
                    epoch_ms(removed_at), epoch_ms(COALESCE(updated_at, fetched_at)), removed_run_id, run_id \
               FROM {table} \
              WHERE removed_at IS NOT NULL OR json_extract_string(record, '$.{status_field}') IN ('DELETED', 'VOIDED', 'ARCHIVED', 'GDPRREQUEST') \
              ORDER BY id"
        ),
    )
    .await
}

/// Every row marked by its status: removed at its own change stamp, by its
/// own run; and no live row marked.
async fn assert_marked_by_status(t: &Tenant, resource: Resource, when: &str) -> usize {
    let table = resource.storage_name();
    let status = resource.status_field().expect("status field");
    let rows = removals(t, &table, status).await;
    for r in &rows {
        assert_eq!(r[1], r[2], "{when}: {table} xero_status {r:?}");
        assert_eq!(r[3], r[4], "{when}: {table} removed_at {r:?}");
        assert_eq!(r[5], r[6], "{when}: {table} removed_run_id {r:?}");
    }
    let mismatched = t
        .rows(
            &t.raw,
            &format!(
                "SELECT count(*) FROM {table} WHERE xero_status IS DISTINCT FROM \
                 json_extract_string(record, '$.{status}')"
            ),
        )
        .await;
    assert_eq!(mismatched[0][0], 0, "{when}: {table} xero_status");
    rows.len()
}

async fn snapshots(
    t: &Tenant,
) -> (
    BTreeMap<String, Vec<Vec<Value>>>,
    BTreeMap<String, Vec<Vec<Value>>>,
) {
    (t.snapshot(&t.raw).await, t.snapshot(&t.transformed).await)
}

fn ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).expect("ms")
}

/// A raw table's records, as loaded.
async fn records(t: &Tenant, table: &str) -> Vec<String> {
    t.rows(&t.raw, &format!("SELECT record FROM {table} ORDER BY id"))
        .await
        .into_iter()
        .map(|r| r[0].as_str().expect("record").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn compaction_keeps_what_a_rebuild_needs_and_the_rebuild_gives_the_same_tables() {
    transform::set_load_batch_bytes(400_000);
    let invoices: usize = std::env::var("COMPACTION_INVOICES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let (_dir, adapters) = open_cloud();
    let tenant = provision(&adapters, "acme").await;
    let mut books = Books::start(invoices, 51).await;
    let mut written = 0u64;
    let raw_bytes = |before: u64, after: u64| after.saturating_sub(before);

    books.ingest(&tenant, "run-1", 100).await;
    written += usage(&tenant, "raw/").await.1;
    let first = transform::run(&tenant.context("run-1"))
        .await
        .expect("first");
    assert_eq!(first.compaction.manifests, 0, "nothing superseded yet");
    assert_compacted(&tenant, "after the first sync").await;

    // Re-syncs with edits, voids, payments, contacts archived and restored:
    // every re-listed resource's older manifests lose their last kept row.
    let mut compacted = transform::CompactionReport::default();
    let syncs: usize = std::env::var("COMPACTION_SYNCS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    for run in 2..=syncs.max(2) {
        books
            .sandbox
            .apply_changes(&ChangeRequest {
                create: invoices / 30,
                edit: invoices / 30,
                void: invoices / 40,
                pay: invoices / 30,
                contacts: 12,
                new_contacts: 2,
                ..Default::default()
            })
            .await
            .expect("changes");
        let before = usage(&tenant, "raw/").await.1;
        let id = format!("run-{run}");
        books.ingest(&tenant, &id, 100).await;
        written += raw_bytes(before, usage(&tenant, "raw/").await.1);
        let report = transform::run(&tenant.context(&id)).await.expect("re-sync");
        assert!(report.compaction.error.is_none(), "{:?}", report.compaction);
        compacted.add(&report.compaction);
        assert_compacted(&tenant, &id).await;
    }
    assert!(
        compacted.manifests > 0 && compacted.pages > 0 && compacted.bytes > 0,
        "{compacted:?}"
    );
    // Reference data listed in full every run keeps one manifest each (tax
    // rates also the listing that first said one was deleted).
    for resource in [
        Resource::Currencies,
        Resource::Organisation,
        Resource::Items,
        Resource::Accounts,
    ] {
        let left = tenant
            .manifests()
            .await
            .into_iter()
            .filter(|k| k.starts_with(&raw::resource_prefix(resource)))
            .count();
        assert_eq!(left, 1, "{resource}");
    }
    let (objects, kept) = usage(&tenant, "raw/").await;
    // One copy of what the raw tables keep: each row's record as a line.
    let one_copy: u64 = {
        let sum = Resource::ALL
            .iter()
            .map(|r| format!("SELECT length(record) + 1 AS n FROM {}", r.storage_name()))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let rows = tenant
            .rows(
                &tenant.raw,
                &format!("SELECT CAST(sum(n) AS BIGINT) FROM ({sum})"),
            )
            .await;
        u64::try_from(int(&rows[0][0])).expect("bytes")
    };
    eprintln!(
        "{invoices} invoices, {syncs} syncs: {written} bytes of raw pages written, {kept} bytes in {objects} objects kept \
         (the raw tables' records are {one_copy} bytes); compaction deleted {} manifests, {} pages, {} bytes, \
         and rewrote {} manifests into {} pages of {} bytes; loaded.json lists {} manifests",
        compacted.manifests,
        compacted.pages,
        compacted.bytes,
        compacted.rewritten,
        compacted.rewritten_pages,
        compacted.rewritten_bytes,
        loaded(&tenant).await.manifests.len()
    );
    assert!(kept < written);

    // Voided invoices and archived contacts are marked by their status.
    assert!(assert_marked_by_status(&tenant, Resource::Invoices, "voids").await > 0);
    assert_marked_by_status(&tenant, Resource::Contacts, "archives").await;

    // Deletions Xero reports (an invoice's Status DELETED, a newer stamp).
    let now = OffsetDateTime::now_utc();
    let invoice = records(&tenant, "invoices").await.remove(0);
    let v: Value = serde_json::from_str(&invoice).expect("record");
    let stamp = xero::dates::parse(v["UpdatedDateUTC"].as_str().expect("stamp")).expect("stamp");
    let deleted_at = stamp + Duration::days(1);
    let deleted = with_field(
        &with_field(&invoice, "Status", Value::from("DELETED")),
        "UpdatedDateUTC",
        Value::from(xero::dates::to_ms_date(deleted_at)),
    );
    write_run(
        &tenant,
        Resource::Invoices,
        "del-1",
        &[deleted],
        10,
        None,
        now,
    )
    .await;

    // A currency gone from a complete listing of currencies.
    let currencies = records(&tenant, "currencies").await;
    assert!(currencies.len() > 1, "{currencies:?}");
    write_run(
        &tenant,
        Resource::Currencies,
        "cur-1",
        &currencies[1..],
        10,
        None,
        now,
    )
    .await;

    // A tax rate deleted (no change stamp: removed from the first listing
    // saying so), listed so twice.
    let tax = records(&tenant, "taxrates").await;
    let live_tax = tax
        .iter()
        .position(|r| r.contains("\"Status\":\"ACTIVE\""))
        .expect("an active tax rate");
    let mut listing = tax.clone();
    listing[live_tax] = with_field(&listing[live_tax], "Status", Value::from("DELETED"));
    write_run(
        &tenant,
        Resource::TaxRates,
        "tax-1",
        &listing,
        10,
        None,
        now,
    )
    .await;
    transform::run(&tenant.context("run-6"))
        .await
        .expect("deletions");
    write_run(
        &tenant,
        Resource::TaxRates,
        "tax-2",
        &listing,
        10,
        None,
        now + Duration::minutes(1),
    )
    .await;
    let report = transform::run(&tenant.context("run-7"))
        .await
        .expect("again");
    assert!(report.compaction.error.is_none());
    assert_compacted(&tenant, "after the deletions").await;

    let invoice_id = v["InvoiceID"].as_str().expect("id").to_owned();
    let row = tenant
        .rows(
            &tenant.raw,
            &format!(
                "SELECT xero_status, epoch_ms(removed_at), removed_run_id FROM invoices WHERE id = '{invoice_id}'"
            ),
        )
        .await;
    assert_eq!(
        row,
        vec![vec![
            Value::from("DELETED"),
            Value::from(ms(deleted_at)),
            Value::from("del-1")
        ]]
    );
    let currency: Value = serde_json::from_str(&currencies[0]).expect("currency");
    let fetched = |run: &str| {
        let run = run.to_owned();
        let tenant = tenant.clone();
        async move {
            tenant
                .rows(
                    &tenant.raw,
                    &format!(
                        "SELECT max(epoch_ms(fetched_at)) FROM currencies WHERE run_id = '{run}'"
                    ),
                )
                .await[0][0]
                .clone()
        }
    };
    let cur_fetched = fetched("cur-1").await;
    let row = tenant
        .rows(
            &tenant.raw,
            &format!(
                "SELECT xero_status, epoch_ms(removed_at), removed_run_id FROM currencies WHERE id = '{}'",
                currency["Code"].as_str().expect("code")
            ),
        )
        .await;
    assert_eq!(
        row,
        vec![vec![Value::Null, cur_fetched, Value::from("cur-1")]],
        "the currency missing from the listing"
    );
    let live = tenant
        .rows(
            &tenant.raw,
            "SELECT count(*) FROM currencies WHERE removed_at IS NULL",
        )
        .await;
    assert_eq!(live[0][0], currencies.len() - 1);
    let tax_id: Value = serde_json::from_str(&tax[live_tax]).expect("tax rate");
    let row = tenant
        .rows(
            &tenant.raw,
            &format!(
                "SELECT xero_status, removed_run_id, run_id FROM taxrates WHERE id = '{}'",
                tax_id["TaxType"].as_str().expect("tax type")
            ),
        )
        .await;
    assert_eq!(
        row,
        vec![vec![
            Value::from("DELETED"),
            Value::from("tax-1"),
            Value::from("tax-2")
        ]],
        "a removal without a stamp dates from the first listing saying so"
    );
    // The first listing saying so stays, as the removal's evidence.
    assert!(exists(&tenant, &raw::manifest_key(Resource::TaxRates, "tax-1")).await);

    // Loading what is left from scratch gives the same tables.
    let (raw_before, transformed_before) = snapshots(&tenant).await;
    let report: TransformReport = transform::rebuild(&tenant.context("rebuild-1"))
        .await
        .expect("rebuild");
    assert!(report.rebuilt);
    assert_eq!(
        report.manifests.len(),
        loaded(&tenant).await.manifests.len()
    );
    let (raw_after, transformed_after) = snapshots(&tenant).await;
    assert_eq!(raw_after, raw_before, "raw tables after the rebuild");
    assert_eq!(
        transformed_after, transformed_before,
        "transformed tables after the rebuild"
    );
    assert_compacted(&tenant, "after the rebuild").await;

    // A rebuild that crashed after dropping the raw tables (loaded.json
    // deleted first): the next run, rebuild or not, loads everything.
    tenant
        .cloud
        .objects
        .delete_object(&tenant.cred, &tenant.bucket, LOADED_KEY)
        .await
        .expect("forget");
    let drop: String = Resource::ALL
        .iter()
        .map(|r| format!("DROP TABLE {};", r.storage_name()))
        .collect();
    tenant
        .cloud
        .warehouse
        .execute(&tenant.cred, &tenant.raw, &drop)
        .await
        .expect("drop");
    transform::run(&tenant.context("after-crash"))
        .await
        .expect("after a crashed rebuild");
    assert_eq!(snapshots(&tenant).await, (raw_before, transformed_before));
    assert_compacted(&tenant, "after a crashed rebuild").await;
}

/// An object store whose deletions fail once `allowed` of them went through,
/// and whose writes of `failing_put` (if any) fail: a compaction stopped
/// part-way, as by a crash.
struct FailingDeletes {
    inner: Arc<dyn ObjectStore>,
    allowed: usize,
    deleted: AtomicUsize,
    failing_put: Option<String>,
}

#[async_trait]
impl ObjectStore for FailingDeletes {
    async fn ensure_bucket(&self, spec: &BucketSpec) -> CloudResult<Bucket> {
        self.inner.ensure_bucket(spec).await
    }
    async fn get_bucket(&self, name: &str) -> CloudResult<Bucket> {
        self.inner.get_bucket(name).await
    }
    async fn list_buckets(&self, labels: &Labels) -> CloudResult<Vec<Bucket>> {
        self.inner.list_buckets(labels).await
    }
    async fn delete_bucket(&self, name: &str) -> CloudResult<()> {
        self.inner.delete_bucket(name).await
    }
    async fn put_object(
        &self,
        cred: &Credential,
        bucket: &str,
        key: &str,
        data: Vec<u8>,
    ) -> CloudResult<ObjectInfo> {
        if self.failing_put.as_deref() == Some(key) {
            return Err(CloudError::permanent(key, "injected: the process died"));
        }
        self.inner.put_object(cred, bucket, key, data).await
    }
    async fn put_object_if(
        &self,
        cred: &Credential,
        bucket: &str,
        key: &str,
        data: Vec<u8>,
        condition: &Precondition,
    ) -> CloudResult<ObjectInfo> {
        self.inner
            .put_object_if(cred, bucket, key, data, condition)
            .await
    }
    async fn get_object(&self, cred: &Credential, bucket: &str, key: &str) -> CloudResult<Vec<u8>> {
        self.inner.get_object(cred, bucket, key).await
    }
    async fn read_object(
        &self,
        cred: &Credential,
        bucket: &str,
        key: &str,
    ) -> CloudResult<(ObjectInfo, Vec<u8>)> {
        self.inner.read_object(cred, bucket, key).await
    }
    async fn list_objects(
        &self,
        cred: &Credential,
        bucket: &str,
        prefix: &str,
    ) -> CloudResult<Vec<ObjectInfo>> {
        self.inner.list_objects(cred, bucket, prefix).await
    }
    async fn delete_object(&self, cred: &Credential, bucket: &str, key: &str) -> CloudResult<()> {
        if self.deleted.fetch_add(1, Ordering::SeqCst) >= self.allowed {
            return Err(CloudError::permanent(key, "injected: the process died"));
        }
        self.inner.delete_object(cred, bucket, key).await
    }
    async fn delete_object_if(
        &self,
        cred: &Credential,
        bucket: &str,
        key: &str,
        generation: &str,
    ) -> CloudResult<()> {
        self.inner
            .delete_object_if(cred, bucket, key, generation)
            .await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compaction_stopped_part_way_is_finished_by_the_next_run_and_loses_nothing() {
    transform::set_load_batch_bytes(400_000);
    let (_dir, adapters) = open_cloud();
    let tenant = provision(&adapters, "acme").await;
    let mut books = Books::start(150, 53).await;
    books.ingest(&tenant, "run-1", 20).await;
    transform::run(&tenant.context("run-1"))
        .await
        .expect("first");
    books
        .sandbox
        .apply_changes(&ChangeRequest {
            create: 5,
            edit: 5,
            void: 3,
            pay: 4,
            contacts: 6,
            ..Default::default()
        })
        .await
        .expect("changes");
    books.ingest(&tenant, "run-2", 20).await;
    let loaded_before = loaded(&tenant).await;

    // Deletions stop after a few: the run still publishes, says so, and
    // leaves the marker naming what is left to delete.
    let mut faulty = tenant.clone();
    faulty.cloud.objects = Arc::new(FailingDeletes {
        inner: tenant.cloud.objects.clone(),
        allowed: 3,
        deleted: AtomicUsize::new(0),
        failing_put: None,
    });
    let report = transform::run(&faulty.context("run-2"))
        .await
        .expect("published despite the compaction");
    assert!(report.compaction.error.is_some(), "{:?}", report.compaction);
    let marker: Compaction =
        serde_json::from_slice(&tenant.get(COMPACTION_KEY).await).expect("marker");
    assert!(marker.objects.len() > 3, "{marker:?}");
    // loaded.json is rewritten only once every object is gone.
    let state = loaded(&tenant).await;
    for key in &marker.manifests {
        assert!(
            state.manifests.contains(key),
            "{key} left loaded.json early"
        );
        assert!(loaded_before.manifests.contains(key));
    }
    let (raw_tables, transformed) = snapshots(&tenant).await;

    // The next run finishes it before anything else, and compacts nothing
    // more: the tables are as they were.
    let report = transform::run(&tenant.context("run-3"))
        .await
        .expect("next run");
    assert!(report.compaction.error.is_none());
    assert_eq!(report.compaction.manifests, marker.manifests.len() as u64);
    for key in &marker.objects {
        assert!(!exists(&tenant, key).await, "{key} left behind");
    }
    assert_compacted(&tenant, "after finishing the compaction").await;
    assert_eq!(
        snapshots(&tenant).await,
        (raw_tables.clone(), transformed.clone())
    );

    // A rebuild finding an unfinished compaction finishes it first, then
    // loads what is left: the same tables.
    tenant
        .put(COMPACTION_KEY, serde_json::to_vec(&marker).expect("marker"))
        .await;
    let report = transform::rebuild(&tenant.context("rebuild"))
        .await
        .expect("rebuild");
    assert_eq!(report.compaction.manifests, marker.manifests.len() as u64);
    assert_eq!(snapshots(&tenant).await, (raw_tables, transformed));
    assert_compacted(&tenant, "after the rebuild").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_raw_table_without_the_removal_columns_is_upgraded_in_place() {
    let (_dir, adapters) = open_cloud();
    let tenant = provision(&adapters, "acme").await;
    // Raw tables as earlier jobs made them (of resources no model reads, so
    // that these bare records build): a posted and a voided manual journal,
    // and an archived tracking category (no change stamp).
    let old = |table: &str| {
        format!(
            "CREATE TABLE {table} (id VARCHAR NOT NULL, updated_at TIMESTAMP, record VARCHAR NOT NULL, \
             run_id VARCHAR NOT NULL, fetched_at TIMESTAMP NOT NULL);"
        )
    };
    let sql = format!(
        "{}{}\
         INSERT INTO manualjournals VALUES \
           ('a', TIMESTAMP '2024-01-02 03:04:05', '{{\"ManualJournalID\":\"a\",\"Status\":\"POSTED\"}}', 'old-1', TIMESTAMP '2024-02-01 00:00:00'), \
           ('b', TIMESTAMP '2024-01-03 00:00:00', '{{\"ManualJournalID\":\"b\",\"Status\":\"VOIDED\"}}', 'old-1', TIMESTAMP '2024-02-01 00:00:00');\
         INSERT INTO trackingcategories VALUES \
           ('c', NULL, '{{\"TrackingCategoryID\":\"c\",\"Status\":\"ARCHIVED\"}}', 'old-2', TIMESTAMP '2024-02-02 00:00:00');",
        old("manualjournals"),
        old("trackingcategories")
    );
    tenant
        .cloud
        .warehouse
        .execute(&tenant.cred, &tenant.raw, &sql)
        .await
        .expect("an old raw table");
    transform::run(&tenant.context("run-1"))
        .await
        .expect("a run on the old tables");
    let rows = tenant
        .rows(
            &tenant.raw,
            "SELECT id, xero_status, CAST(removed_at AS VARCHAR), removed_run_id FROM manualjournals ORDER BY id",
        )
        .await;
    assert_eq!(
        rows,
        vec![
            vec![
                Value::from("a"),
                Value::from("POSTED"),
                Value::Null,
                Value::Null
            ],
            vec![
                Value::from("b"),
                Value::from("VOIDED"),
                Value::from("2024-01-03 00:00:00"),
                Value::from("old-1")
            ],
        ]
    );
    let rows = tenant
        .rows(
            &tenant.raw,
            "SELECT xero_status, CAST(removed_at AS VARCHAR), removed_run_id FROM trackingcategories",
        )
        .await;
    assert_eq!(
        rows,
        vec![vec![
            Value::from("ARCHIVED"),
            Value::from("2024-02-02 00:00:00"),
            Value::from("old-2")
        ]]
    );
    // Nothing in the bucket: nothing is compacted, and the upgrade is done
    // once (a second run changes nothing).
    let before = tenant.snapshot(&tenant.raw).await;
    transform::run(&tenant.context("run-2"))
        .await
        .expect("second run");
    assert_eq!(tenant.snapshot(&tenant.raw).await, before);
    // A raw table the job makes stores its records with zstd; an old one
    // keeps the compression it was made with (until a rebuild).
    let declared = tenant
        .rows(
            &tenant.raw,
            "SELECT table_name, contains(sql, 'record VARCHAR USING COMPRESSION ZSTD') \
               FROM duckdb_tables() \
              WHERE table_name IN ('invoices', 'manualjournals') ORDER BY table_name",
        )
        .await;
    assert_eq!(
        declared,
        vec![
            vec![Value::from("invoices"), Value::from(true)],
            vec![Value::from("manualjournals"), Value::from(false)],
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn full_resyncs_leave_one_copy_of_the_raw_pages() {
    transform::set_load_batch_bytes(400_000);
    let invoices: usize = std::env::var("COMPACTION_INVOICES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let (_dir, adapters) = open_cloud();
    let tenant = provision(&adapters, "acme").await;
    let mut books = Books::start(invoices, 57).await;
    books.ingest(&tenant, "run-1", 100).await;
    transform::run(&tenant.context("run-1"))
        .await
        .expect("first");
    let one_copy = usage(&tenant, "raw/").await.1;

    // Every run fetches everything again (as after a cursor reset): each
    // run's pages supersede the previous run's whole.
    let mut written = one_copy;
    let mut compacted = transform::CompactionReport::default();
    for run in 2..=4 {
        books
            .sandbox
            .apply_changes(&ChangeRequest {
                edit: invoices / 30,
                void: invoices / 40,
                pay: invoices / 30,
                contacts: 6,
                ..Default::default()
            })
            .await
            .expect("changes");
        books.cursors.clear();
        let before = usage(&tenant, "raw/").await.1;
        let id = format!("run-{run}");
        books.ingest(&tenant, &id, 100).await;
        written += usage(&tenant, "raw/").await.1.saturating_sub(before);
        let report = transform::run(&tenant.context(&id)).await.expect("re-sync");
        assert!(report.compaction.error.is_none(), "{:?}", report.compaction);
        compacted.add(&report.compaction);
        assert_compacted(&tenant, &id).await;
        // Only this run's manifests are left, but for evidence of a
        // removal: the listing that first said a tax rate without a change
        // stamp was deleted.
        let older: Vec<String> = loaded(&tenant)
            .await
            .manifests
            .into_iter()
            .filter(|k| k.split('/').nth(2) != Some(id.as_str()))
            .collect();
        assert!(
            older
                .iter()
                .all(|k| k.starts_with(&raw::resource_prefix(Resource::TaxRates))),
            "{id}: {older:?}"
        );
    }
    let (objects, kept) = usage(&tenant, "raw/").await;
    eprintln!(
        "{invoices} invoices, 4 full syncs: {written} bytes of raw pages written, {kept} bytes in {objects} objects kept \
         (one sync: {one_copy}); compaction deleted {} manifests, {} pages, {} bytes",
        compacted.manifests, compacted.pages, compacted.bytes
    );
    assert!(
        kept * 2 < one_copy * 3,
        "{kept} bytes kept, one copy is {one_copy}"
    );

    let before = snapshots(&tenant).await;
    transform::rebuild(&tenant.context("rebuild"))
        .await
        .expect("rebuild");
    assert_eq!(snapshots(&tenant).await, before);
}

/// The latest fetch of `table`'s rows from `run` (epoch ms).
async fn fetched_in(t: &Tenant, table: &str, run: &str) -> Value {
    t.rows(
        &t.raw,
        &format!("SELECT max(epoch_ms(fetched_at)) FROM {table} WHERE run_id = '{run}'"),
    )
    .await[0][0]
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_items_and_accounts_and_erased_contacts_are_marked_removed() {
    transform::set_load_batch_bytes(400_000);
    let (_dir, adapters) = open_cloud();
    let tenant = provision(&adapters, "acme").await;
    let mut books = Books::start(150, 59).await;
    books.ingest(&tenant, "run-1", 50).await;
    transform::run(&tenant.context("run-1"))
        .await
        .expect("first");

    // Xero deletes items and an unused account outright (they only leave
    // their listings) and erases contacts on a GDPR request.
    let changes = books
        .sandbox
        .apply_changes(&ChangeRequest {
            delete_items: 2,
            delete_accounts: 1,
            gdpr_contacts: 2,
            ..Default::default()
        })
        .await
        .expect("changes");
    assert!(changes.shortfalls.is_empty(), "{changes:?}");
    let gone = |resource: &str| -> Vec<String> {
        let ids: BTreeSet<String> = changes
            .changed
            .iter()
            .filter(|c| c.resource == resource)
            .map(|c| c.id.clone())
            .collect();
        ids.into_iter().collect()
    };
    let (items, accounts, erased) = (gone("Items"), gone("Accounts"), gone("Contacts"));
    assert_eq!((items.len(), accounts.len(), erased.len()), (2, 1, 2));
    books.ingest(&tenant, "run-2", 50).await;
    let report = transform::run(&tenant.context("run-2"))
        .await
        .expect("second");
    assert!(report.compaction.error.is_none(), "{:?}", report.compaction);
    assert_compacted(&tenant, "after the deletions").await;

    // Removed at the fetch of the complete listing that lacked them, by its
    // run (an archived account listed again is removed by its status, by
    // the run of its kept version); the rest is the listing.
    let truth = books.truth();
    for (resource, ids) in [(Resource::Items, &items), (Resource::Accounts, &accounts)] {
        let table = resource.storage_name();
        let at = fetched_in(&tenant, &table, "run-2").await;
        let removed = tenant
            .rows(
                &tenant.raw,
                &format!(
                    "SELECT id, epoch_ms(removed_at), run_id FROM {table} \
                     WHERE removed_run_id = 'run-2' AND run_id <> 'run-2' ORDER BY id"
                ),
            )
            .await;
        let expected: Vec<Vec<Value>> = ids
            .iter()
            .map(|id| vec![Value::from(id.as_str()), at.clone(), Value::from("run-1")])
            .collect();
        assert_eq!(removed, expected, "{table}");
        let listed = tenant
            .rows(
                &tenant.raw,
                &format!("SELECT count(*) FROM {table} WHERE run_id = 'run-2'"),
            )
            .await;
        assert_eq!(listed[0][0], truth["counts"][resource.name()], "{table}");
    }
    // Erased contacts: GDPRREQUEST is a removal status, at the change stamp.
    assert!(assert_marked_by_status(&tenant, Resource::Contacts, "erasures").await >= 2);
    let list = erased
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = tenant
        .rows(
            &tenant.raw,
            &format!(
                "SELECT xero_status, removed_run_id, removed_at = updated_at, \
                        json_extract_string(record, '$.EmailAddress') \
                   FROM contacts WHERE id IN ({list})"
            ),
        )
        .await;
    assert_eq!(
        rows,
        vec![
            vec![
                Value::from("GDPRREQUEST"),
                Value::from("run-2"),
                Value::from(true),
                Value::from("")
            ];
            2
        ]
    );

    // Listed again without them: nothing changes for the removed rows,
    // whose first listing without them stays as the evidence.
    let removed_before = tenant
        .rows(
            &tenant.raw,
            "SELECT id, removed_at, removed_run_id FROM items WHERE removed_at IS NOT NULL \
             UNION ALL SELECT id, removed_at, removed_run_id FROM accounts WHERE removed_run_id <> run_id \
             ORDER BY id",
        )
        .await;
    books.ingest(&tenant, "run-3", 50).await;
    transform::run(&tenant.context("run-3"))
        .await
        .expect("third");
    assert_compacted(&tenant, "after listing them again").await;
    let removed_after = tenant
        .rows(
            &tenant.raw,
            "SELECT id, removed_at, removed_run_id FROM items WHERE removed_at IS NOT NULL \
             UNION ALL SELECT id, removed_at, removed_run_id FROM accounts WHERE removed_run_id <> run_id \
             ORDER BY id",
        )
        .await;
    assert_eq!(removed_after, removed_before);
    for resource in [Resource::Items, Resource::Accounts] {
        assert!(exists(&tenant, &raw::manifest_key(resource, "run-2")).await);
    }

    let before = snapshots(&tenant).await;
    transform::rebuild(&tenant.context("rebuild"))
        .await
        .expect("rebuild");
    assert_eq!(snapshots(&tenant).await, before, "after the rebuild");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_complete_listing_marks_every_row_removed_and_is_kept_as_the_evidence() {
    transform::set_load_batch_bytes(400_000);
    let (_dir, adapters) = open_cloud();
    let tenant = provision(&adapters, "acme").await;
    let mut books = Books::start(100, 61).await;
    books.ingest(&tenant, "run-1", 50).await;
    transform::run(&tenant.context("run-1"))
        .await
        .expect("first");
    let raw_count = |sql: &'static str| {
        let tenant = tenant.clone();
        async move {
            tenant.rows(&tenant.raw, sql).await[0][0]
                .as_i64()
                .expect("count")
        }
    };
    let items = raw_count("SELECT count(*) FROM items").await;
    assert!(items > 0);

    // Every item deleted: the complete listing comes back empty, and its
    // manifest (no pages, records 0) says so.
    let deleted = books
        .sandbox
        .apply_changes(&ChangeRequest {
            delete_items: 1_000,
            ..Default::default()
        })
        .await
        .expect("changes");
    assert_eq!(deleted.changed.len() as i64, items);
    books.ingest(&tenant, "run-2", 50).await;
    let key = raw::manifest_key(Resource::Items, "run-2");
    let manifest: raw::Manifest =
        serde_json::from_slice(&tenant.get(&key).await).expect("manifest");
    assert!(
        manifest.pages.is_empty() && manifest.records == 0,
        "{manifest:?}"
    );
    let report = transform::run(&tenant.context("run-2"))
        .await
        .expect("second");
    assert!(report.manifests.contains(&key), "{:?}", report.manifests);
    assert!(report.compaction.error.is_none(), "{:?}", report.compaction);
    // Every row removed at the listing's fetch (to the microsecond a
    // TIMESTAMP holds), by its run.
    let removed = tenant
        .rows(
            &tenant.raw,
            &format!(
                "SELECT count(*) FROM items WHERE removed_run_id = 'run-2' \
                 AND abs(epoch_us(removed_at) - {}) <= 1",
                manifest.completed_at.unix_timestamp_nanos() / 1_000
            ),
        )
        .await;
    assert_eq!(removed[0][0], items);
    assert_eq!(
        raw_count("SELECT count(*) FROM items WHERE removed_at IS NULL").await,
        0
    );
    // The empty manifest is the evidence of those removals: kept.
    assert_compacted(&tenant, "after the empty listing").await;
    assert!(exists(&tenant, &key).await);

    // Loading it twice changes nothing.
    let before = snapshots(&tenant).await;
    let mut state = loaded(&tenant).await;
    assert!(state.remove(&key));
    tenant
        .put(LOADED_KEY, serde_json::to_vec(&state).expect("loaded"))
        .await;
    let report = transform::run(&tenant.context("again"))
        .await
        .expect("again");
    assert_eq!(report.manifests, vec![key.clone()]);
    assert_eq!(snapshots(&tenant).await, before, "loaded twice");
    assert!(loaded(&tenant).await.manifests.contains(&key));

    // Another empty listing removes nothing more, so it is not evidence of
    // anything and goes; the first stays.
    books.ingest(&tenant, "run-3", 50).await;
    let later = raw::manifest_key(Resource::Items, "run-3");
    assert!(exists(&tenant, &later).await);
    transform::run(&tenant.context("run-3"))
        .await
        .expect("third");
    assert_compacted(&tenant, "after a second empty listing").await;
    assert!(!exists(&tenant, &later).await, "{later} kept");
    assert!(exists(&tenant, &key).await, "{key} gone");

    // Loading what is left from scratch marks them alike.
    let before = snapshots(&tenant).await;
    transform::rebuild(&tenant.context("rebuild"))
        .await
        .expect("rebuild");
    assert_eq!(snapshots(&tenant).await, before, "after the rebuild");

    // A resource that never had a record: its empty listings load to an
    // empty table, so they are needed by nothing and go.
    let other = provision(&adapters, "empty").await;
    let now = OffsetDateTime::now_utc();
    for (i, run) in ["e-1", "e-2"].into_iter().enumerate() {
        write_run(
            &other,
            Resource::TrackingCategories,
            run,
            &[],
            10,
            None,
            now + Duration::seconds(i as i64),
        )
        .await;
    }
    let report = transform::run(&other.context("e-2"))
        .await
        .expect("empty listings");
    assert_eq!(report.manifests.len(), 2, "{:?}", report.manifests);
    assert_eq!(report.compaction.manifests, 2, "{:?}", report.compaction);
    assert!(other.manifests().await.is_empty());
    assert!(loaded(&other).await.manifests.is_empty());
}

/// Objects under `raw/` that no manifest names (pages left behind).
async fn orphans(t: &Tenant) -> Vec<String> {
    let objects = t
        .cloud
        .objects
        .list_objects(&t.cred, &t.bucket, "raw/")
        .await
        .expect("list");
    let mut named = BTreeSet::new();
    for o in objects.iter().filter(|o| o.key.ends_with("/manifest.json")) {
        let m: Manifest = serde_json::from_slice(&t.get(&o.key).await).expect("manifest");
        named.extend(m.pages.into_iter().map(|p| p.key));
    }
    objects
        .into_iter()
        .map(|o| o.key)
        .filter(|k| !k.ends_with("/manifest.json") && !named.contains(k))
        .collect()
}

/// A company of 60 invoices synced in pages of 20 (run-1), then a run
/// (edit-1) with a newer version of 40 of them: run-1's invoices manifest
/// keeps 20 of its 60 records.
async fn two_thirds_edited(adapters: &LocalAdapters) -> (Tenant, String, Vec<raw::PageEntry>) {
    let tenant = provision(adapters, "acme").await;
    let mut books = Books::start(60, 57).await;
    books.ingest(&tenant, "run-1", 20).await;
    transform::run(&tenant.context("run-1"))
        .await
        .expect("first");
    let key = raw::manifest_key(Resource::Invoices, "run-1");
    let first: Manifest = serde_json::from_slice(&tenant.get(&key).await).expect("manifest");
    assert_eq!((first.records, first.pages.len()), (60, 3));
    let edited: Vec<String> = records(&tenant, "invoices")
        .await
        .into_iter()
        .take(40)
        .map(|r| {
            let v: Value = serde_json::from_str(&r).expect("record");
            let stamp =
                xero::dates::parse(v["UpdatedDateUTC"].as_str().expect("stamp")).expect("stamp");
            with_field(
                &with_field(&r, "Reference", Value::from("edited")),
                "UpdatedDateUTC",
                Value::from(xero::dates::to_ms_date(stamp + Duration::days(1))),
            )
        })
        .collect();
    write_run(
        &tenant,
        Resource::Invoices,
        "edit-1",
        &edited,
        20,
        None,
        OffsetDateTime::now_utc(),
    )
    .await;
    (tenant, key, first.pages)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_mostly_superseded_is_rewritten_to_its_kept_records_and_a_rebuild_gives_the_same_tables(
) {
    let (_dir, adapters) = open_cloud();
    let (tenant, key, old_pages) = two_thirds_edited(&adapters).await;
    let (_, before) = usage(&tenant, "raw/invoices/run-1/").await;
    // loaded.json as jobs wrote it before it kept record counts: compaction
    // reads the manifests once and keeps their counts from then on.
    let mut state = loaded(&tenant).await;
    assert!(!state.records.is_empty());
    state.records.clear();
    tenant
        .put(LOADED_KEY, serde_json::to_vec(&state).expect("loaded"))
        .await;
    let report = transform::run(&tenant.context("run-2"))
        .await
        .expect("edits");
    assert!(report.compaction.error.is_none(), "{:?}", report.compaction);
    assert_eq!(report.compaction.rewritten, 1, "{:?}", report.compaction);
    assert_eq!(report.compaction.rewritten_pages, 1);
    assert_eq!(report.compaction.pages, 3, "the three old pages");

    // run-1's invoices manifest now names one new page of its 20 kept
    // records, in their order; the old pages are gone, nothing is left over.
    let rewritten: Manifest = serde_json::from_slice(&tenant.get(&key).await).expect("manifest");
    assert_eq!(rewritten.run_id, "run-1");
    assert_eq!(rewritten.records, 20);
    assert_eq!(rewritten.pages.len(), 1);
    assert!(
        rewritten.pages[0]
            .key
            .starts_with("raw/invoices/run-1/kept-"),
        "{:?}",
        rewritten.pages
    );
    for page in &old_pages {
        assert!(!exists(&tenant, &page.key).await, "{} left", page.key);
    }
    assert_eq!(orphans(&tenant).await, Vec::<String>::new());
    let state = loaded(&tenant).await;
    assert_eq!(state.records.get(&key), Some(&20));
    // Counted now: every manifest of a resource whose manifests may be
    // rewritten (the others are never read for it).
    for resource in Resource::ALL {
        if resource.updated_field().is_none() || resource.listed_in_full() {
            continue;
        }
        let prefix = raw::resource_prefix(resource);
        for m in state.manifests.iter().filter(|k| k.starts_with(&prefix)) {
            assert!(state.records.contains_key(m), "{m}'s count");
        }
    }
    let kept_ids: BTreeSet<String> = tenant
        .rows(
            &tenant.raw,
            "SELECT id FROM invoices WHERE run_id = 'run-1'",
        )
        .await
        .into_iter()
        .map(|r| r[0].as_str().expect("id").to_owned())
        .collect();
    let page = String::from_utf8(tenant.get(&rewritten.pages[0].key).await).expect("utf-8");
    let in_page: BTreeSet<String> = page
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("line");
            v["InvoiceID"].as_str().expect("id").to_owned()
        })
        .collect();
    assert_eq!(in_page, kept_ids);
    let (_, after) = usage(&tenant, "raw/invoices/run-1/").await;
    assert!(after * 2 < before, "{after} of {before} bytes");
    assert_compacted(&tenant, "after the rewrite").await;

    // Nothing more to rewrite: the next run leaves the bucket alone.
    let report = transform::run(&tenant.context("run-3"))
        .await
        .expect("again");
    assert_eq!(report.compaction, transform::CompactionReport::default());

    // Loading from scratch gives the same tables.
    let before = snapshots(&tenant).await;
    transform::rebuild(&tenant.context("rebuild"))
        .await
        .expect("rebuild");
    assert_eq!(snapshots(&tenant).await, before);
    assert_compacted(&tenant, "after the rebuild").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rewrite_stopped_before_or_after_the_manifest_is_swapped_is_finished_or_undone() {
    let (_dir, adapters) = open_cloud();
    let (tenant, key, old_pages) = two_thirds_edited(&adapters).await;
    let faulty = |failing_put: Option<String>, allowed: usize| {
        let mut t = tenant.clone();
        t.cloud.objects = Arc::new(FailingDeletes {
            inner: tenant.cloud.objects.clone(),
            allowed,
            deleted: AtomicUsize::new(0),
            failing_put,
        });
        t
    };

    // Stopped before the swap: the new page is written, the manifest still
    // names the old ones; the marker says what to undo.
    let report = transform::run(&faulty(Some(key.clone()), usize::MAX).context("run-2"))
        .await
        .expect("published despite the compaction");
    assert!(report.compaction.error.is_some(), "{:?}", report.compaction);
    let marker: Compaction =
        serde_json::from_slice(&tenant.get(COMPACTION_KEY).await).expect("marker");
    assert_eq!(marker.rewrites.len(), 1, "{marker:?}");
    let unswapped: Manifest = serde_json::from_slice(&tenant.get(&key).await).expect("manifest");
    assert_eq!(unswapped.pages, old_pages);
    let left = orphans(&tenant).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(&marker.rewrites[0].new_pages));
    let tables = snapshots(&tenant).await;

    // The next run undoes it first, then rewrites again; but its deletions
    // fail after the swap: the old pages stay, named by the marker.
    // (Two deletions go through: the undone page and the marker.)
    let report = transform::run(&faulty(None, 2).context("run-3"))
        .await
        .expect("published despite the compaction");
    assert!(report.compaction.error.is_some(), "{:?}", report.compaction);
    assert!(
        !exists(&tenant, &left[0]).await,
        "the undone rewrite's page"
    );
    let marker: Compaction =
        serde_json::from_slice(&tenant.get(COMPACTION_KEY).await).expect("marker");
    assert_eq!(marker.rewrites.len(), 1, "{marker:?}");
    let swapped: Manifest = serde_json::from_slice(&tenant.get(&key).await).expect("manifest");
    assert_eq!(swapped.records, 20);
    assert!(swapped.pages[0]
        .key
        .starts_with(&marker.rewrites[0].new_pages));
    let left = orphans(&tenant).await;
    for page in &old_pages {
        assert!(left.contains(&page.key), "{} in {left:?}", page.key);
    }
    assert_eq!(snapshots(&tenant).await, tables);

    // The next run deletes the old pages; nothing is left over, and a
    // rebuild gives the same tables.
    let report = transform::run(&tenant.context("run-4"))
        .await
        .expect("finished");
    assert!(report.compaction.error.is_none(), "{:?}", report.compaction);
    assert_eq!(
        report.compaction.rewritten, 1,
        "finished: {:?}",
        report.compaction
    );
    for page in &old_pages {
        assert!(!exists(&tenant, &page.key).await, "{} left", page.key);
    }
    assert_eq!(orphans(&tenant).await, Vec::<String>::new());
    assert_compacted(&tenant, "after finishing the rewrite").await;
    assert_eq!(snapshots(&tenant).await, tables);
    transform::rebuild(&tenant.context("rebuild"))
        .await
        .expect("rebuild");
    assert_eq!(snapshots(&tenant).await, tables);
}
