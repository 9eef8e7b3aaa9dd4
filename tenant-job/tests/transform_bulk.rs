//! The bulk load: every pending page loaded by the warehouse at once, merged
//! once per raw table. Its raw tables must be exactly what loading record by
//! record gave: for each id, the version with the newest change stamp, then
//! the latest fetch, then the later manifest, page and line, with its run and
//! fetch time. That is recomputed here from the bucket alone and compared
//! with the raw tables after a first sync and after re-syncs with edits,
//! voids, payments, archived contacts and deleted invoices; and a load
//! interrupted after its merge, or failing part-way, is redone to the same
//! tables.

mod transform_support;

use std::collections::BTreeMap;

use serde_json::Value;
use time::{Duration, OffsetDateTime};

use job_contract::raw::{self, Manifest, LOADED_KEY};
use tenant_job::transform::{self, TransformError};
use transform_support::{open_cloud, provision, with_field, write_run, Books, Tenant};
use xero::resources::Resource;
use xero_sandbox::ChangeRequest;

/// A raw table's rows as compared: id, updated_at and fetched_at in epoch
/// milliseconds, the record, the run; sorted by id.
type RawRows = Vec<Vec<Value>>;

fn ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).expect("ms")
}

/// A manifest's completion as the raw table holds its fetch time: its
/// RFC 3339 text (nanoseconds) read as a TIMESTAMP by the warehouse.
async fn fetched_ms(t: &Tenant, at: OffsetDateTime) -> i64 {
    let text = at
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let rows = t
        .rows(
            &t.raw,
            &format!("SELECT epoch_ms(CAST('{text}' AS TIMESTAMP))"),
        )
        .await;
    rows[0][0].as_i64().expect("ms")
}

/// The id as loading reads it: a non-empty string, or a number's text.
fn id_of(record: &Value, field: &str) -> String {
    match &record[field] {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("no {field}: {other}"),
    }
}

/// What every raw table must hold, recomputed from the bucket's manifests
/// and pages without the warehouse.
async fn expected_raw(t: &Tenant) -> BTreeMap<String, RawRows> {
    let mut out = BTreeMap::new();
    for resource in Resource::ALL {
        let prefix = raw::resource_prefix(resource);
        let objects = t
            .cloud
            .objects
            .list_objects(&t.cred, &t.bucket, &prefix)
            .await
            .expect("list");
        let mut manifests: Vec<(String, Manifest)> = Vec::new();
        for o in objects {
            if o.key.ends_with("/manifest.json") {
                let m: Manifest = serde_json::from_slice(&t.get(&o.key).await).expect("manifest");
                manifests.push((o.key, m));
            }
        }
        manifests.sort_by(|(ka, a), (kb, b)| (a.completed_at, ka).cmp(&(b.completed_at, kb)));
        // id → (ordering key, row)
        type Rank = (i64, i64, usize, usize, usize);
        let mut best: BTreeMap<String, (Rank, Vec<Value>)> = BTreeMap::new();
        for (m_ord, (_, m)) in manifests.iter().enumerate() {
            let fetched = fetched_ms(t, m.completed_at).await;
            for (p_ord, page) in m.pages.iter().enumerate() {
                let bytes = t.get(&page.key).await;
                let text = String::from_utf8(bytes).expect("utf-8");
                for (line_no, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() {
                        continue;
                    }
                    let record: Value = serde_json::from_str(line).expect("json");
                    let id = id_of(&record, resource.id_field());
                    let stamp = resource.updated_field().and_then(|f| match &record[f] {
                        Value::String(s) => Some(ms(xero::dates::parse(s).expect("stamp"))),
                        Value::Null => None,
                        other => panic!("{f}: {other}"),
                    });
                    let rank = (stamp.unwrap_or(i64::MIN), fetched, m_ord, p_ord, line_no);
                    let row = vec![
                        Value::from(id.clone()),
                        stamp.map_or(Value::Null, Value::from),
                        Value::from(line),
                        Value::from(m.run_id.clone()),
                        Value::from(fetched),
                    ];
                    match best.get(&id) {
                        Some((r, _)) if *r > rank => {}
                        _ => {
                            best.insert(id, (rank, row));
                        }
                    }
                }
            }
        }
        out.insert(
            resource.storage_name(),
            best.into_values().map(|(_, row)| row).collect(),
        );
    }
    out
}

/// What the raw tables hold.
async fn actual_raw(t: &Tenant) -> BTreeMap<String, RawRows> {
    let mut out = BTreeMap::new();
    for resource in Resource::ALL {
        let table = resource.storage_name();
        let rows = t
            .rows(
                &t.raw,
                &format!(
                    "SELECT id, epoch_ms(updated_at), record, run_id, epoch_ms(fetched_at) \
                     FROM {table} ORDER BY id"
                ),
            )
            .await;
        out.insert(table, rows);
    }
    out
}

async fn assert_raw_as_before(t: &Tenant, when: &str) {
    let (expected, actual) = (expected_raw(t).await, actual_raw(t).await);
    for (table, rows) in &expected {
        let got = &actual[table];
        assert_eq!(got.len(), rows.len(), "{when}: rows of {table}");
        for (e, a) in rows.iter().zip(got) {
            assert_eq!(a, e, "{when}: {table}");
        }
    }
    t.assert_no_load_table_left(when).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_loading_keeps_the_raw_tables_of_record_by_record_loading_through_resyncs() {
    // Batches of a few pages: a run loads in many, one after the other.
    transform::set_load_batch_bytes(300_000);
    let (_dir, adapters) = open_cloud();
    let tenant = provision(&adapters, "acme").await;
    let mut books = Books::start(400, 41).await;
    books.ingest(&tenant, "run-1", 90).await;
    transform::run(&tenant.context("run-1"))
        .await
        .expect("first");
    assert_raw_as_before(&tenant, "after the first sync").await;

    // A re-sync after edits, voids, payments, contacts archived or changed.
    let changes = books
        .sandbox
        .apply_changes(&ChangeRequest {
            create: 15,
            edit: 12,
            void: 8,
            pay: 10,
            contacts: 10,
            new_contacts: 3,
            ..Default::default()
        })
        .await
        .expect("changes");
    assert!(changes.shortfalls.is_empty(), "{:?}", changes.shortfalls);
    books.ingest(&tenant, "run-2", 7).await;
    let report = transform::run(&tenant.context("run-2"))
        .await
        .expect("second");
    assert!(!report.manifests.is_empty());
    assert_raw_as_before(&tenant, "after a re-sync with changes").await;

    // Invoices deleted in Xero come back with Status DELETED and a newer
    // stamp; an older copy of one, fetched later, must not bring it back; two
    // versions with one stamp in a page: the later line wins.
    let rows = tenant
        .rows(
            &tenant.raw,
            "SELECT record FROM invoices ORDER BY id LIMIT 3",
        )
        .await;
    let records: Vec<String> = rows
        .iter()
        .map(|r| r[0].as_str().expect("record").to_owned())
        .collect();
    let stamp = |r: &str| {
        let v: Value = serde_json::from_str(r).expect("record");
        xero::dates::parse(v["UpdatedDateUTC"].as_str().expect("stamp")).expect("stamp")
    };
    let at = |r: &str, d: Duration| Value::from(xero::dates::to_ms_date(stamp(r) + d));
    let now = OffsetDateTime::now_utc();
    let deleted: Vec<String> = records
        .iter()
        .map(|r| {
            // As Xero shows a deleted invoice: nothing due.
            let r = with_field(r, "Status", Value::from("DELETED"));
            let r = with_field(&r, "AmountDue", Value::from(0));
            with_field(&r, "UpdatedDateUTC", at(&r, Duration::days(2)))
        })
        .collect();
    let mut run3 = deleted.clone();
    run3.push(with_field(
        &deleted[2],
        "Reference",
        Value::from("second of the same stamp"),
    ));
    write_run(&tenant, Resource::Invoices, "run-3", &run3, 2, None, now).await;
    write_run(
        &tenant,
        Resource::Invoices,
        "run-4",
        &[with_field(&records[0], "Reference", Value::from("stale"))],
        100,
        None,
        now + Duration::minutes(1),
    )
    .await;
    let report = transform::run(&tenant.context("run-5"))
        .await
        .expect("third");
    assert_eq!(report.loaded["invoices"], 5);
    assert_raw_as_before(&tenant, "after deletions").await;
    let statuses = tenant
        .rows(
            &tenant.raw,
            "SELECT json_extract_string(record, '$.Status'), json_extract_string(record, '$.Reference') \
             FROM invoices ORDER BY id LIMIT 3",
        )
        .await;
    for s in &statuses {
        assert_eq!(s[0], "DELETED", "{statuses:?}");
    }
    assert_eq!(statuses[2][1], "second of the same stamp");

    // Loading everything again from scratch gives the same raw tables.
    let raw = tenant.snapshot(&tenant.raw).await;
    let transformed = tenant.snapshot(&tenant.transformed).await;
    tenant
        .cloud
        .objects
        .delete_object(&tenant.cred, &tenant.bucket, LOADED_KEY)
        .await
        .expect("forget");
    transform::run(&tenant.context("run-6"))
        .await
        .expect("again");
    assert_eq!(tenant.snapshot(&tenant.raw).await, raw);
    assert_eq!(tenant.snapshot(&tenant.transformed).await, transformed);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_load_interrupted_or_failing_part_way_is_redone_to_the_same_tables() {
    transform::set_load_batch_bytes(300_000);
    let (_dir, adapters) = open_cloud();
    let tenant = provision(&adapters, "acme").await;
    let mut books = Books::start(200, 43).await;
    books.ingest(&tenant, "run-1", 50).await;
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
            contacts: 4,
            ..Default::default()
        })
        .await
        .expect("changes");
    books.ingest(&tenant, "run-2", 3).await;
    let loaded_before = tenant.get(LOADED_KEY).await;
    let pending: Vec<String> = Resource::ALL
        .iter()
        .map(|r| raw::manifest_key(*r, "run-2"))
        .collect();

    // The clean run, for comparison.
    let report = transform::run(&tenant.context("run-2"))
        .await
        .expect("clean");
    let manifests = report.manifests.clone();
    assert!(!manifests.is_empty());
    assert!(manifests.iter().all(|m| pending.contains(m)));
    let raw = tenant.snapshot(&tenant.raw).await;
    let transformed = tenant.snapshot(&tenant.transformed).await;
    assert_raw_as_before(&tenant, "the clean run").await;

    // A crash after the merge, before `loaded.json` was written: the same
    // manifests are loaded and merged again, changing nothing.
    tenant.put(LOADED_KEY, loaded_before.clone()).await;
    let again = transform::run(&tenant.context("run-3"))
        .await
        .expect("after a crash before the record");
    assert_eq!(again.manifests, manifests);
    assert_eq!(tenant.snapshot(&tenant.raw).await, raw);
    assert_eq!(tenant.snapshot(&tenant.transformed).await, transformed);

    // A load that fails part-way (a bad record in one resource's page):
    // that resource's table is as it was and nothing is recorded; once the
    // page is gone, the next run gives the same tables again.
    tenant.put(LOADED_KEY, loaded_before.clone()).await;
    let bad = Resource::ManualJournals;
    let manual = tenant
        .rows(&tenant.raw, "SELECT * FROM manualjournals ORDER BY ALL")
        .await;
    write_run(
        &tenant,
        bad,
        "run-bad",
        &[r#"{"Narration":"no id"}"#.to_owned()],
        10,
        None,
        OffsetDateTime::now_utc(),
    )
    .await;
    match transform::run(&tenant.context("run-4")).await {
        Err(TransformError::Load { resource, .. }) => assert_eq!(resource, bad.name()),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        tenant
            .rows(&tenant.raw, "SELECT * FROM manualjournals ORDER BY ALL")
            .await,
        manual
    );
    assert_eq!(tenant.get(LOADED_KEY).await, loaded_before);
    assert_eq!(tenant.snapshot(&tenant.transformed).await, transformed);
    tenant
        .cloud
        .objects
        .delete_object(
            &tenant.cred,
            &tenant.bucket,
            &raw::manifest_key(bad, "run-bad"),
        )
        .await
        .expect("remove the bad run");
    let again = transform::run(&tenant.context("run-5"))
        .await
        .expect("after a failed load");
    assert_eq!(again.manifests, manifests);
    assert_eq!(tenant.snapshot(&tenant.raw).await, raw);
    assert_eq!(tenant.snapshot(&tenant.transformed).await, transformed);
    assert_raw_as_before(&tenant, "after the crashes").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_without_an_id_or_with_a_stamp_that_is_no_date_is_refused_by_page_and_line() {
    transform::set_load_batch_bytes(300_000);
    let (_dir, adapters) = open_cloud();
    let tenant = provision(&adapters, "acme").await;
    let now = OffsetDateTime::now_utc();
    // Manual journals: stamped, and read by no model, so only loading judges
    // these records.
    let resource = Resource::ManualJournals;
    let (id, stamp) = (
        resource.id_field(),
        resource.updated_field().expect("stamped"),
    );
    let table = resource.storage_name();
    let good = format!(r#"{{"{id}":"a","{stamp}":"/Date(1577836800000+0000)/"}}"#);
    for (bad, why) in [
        (
            r#"{"Total":1}"#.to_owned(),
            format!("the record has no {id}"),
        ),
        (
            format!(r#"{{"{id}":""}}"#),
            format!("the record has no {id}"),
        ),
        ("[1]".to_owned(), format!("the record has no {id}")),
        (
            format!(r#"{{"{id}":"b","{stamp}":"yesterday"}}"#),
            format!("{stamp} is not a date"),
        ),
        (
            format!(r#"{{"{id}":"b","{stamp}":12}}"#),
            format!("{stamp} is not a date"),
        ),
    ] {
        let run = format!("bad-{}", uuid::Uuid::new_v4().simple());
        write_run(
            &tenant,
            resource,
            &run,
            &[good.clone(), good.clone(), bad.clone()],
            2,
            None,
            now,
        )
        .await;
        match transform::run(&tenant.context("run")).await {
            Err(TransformError::Load {
                resource: failed,
                manifest,
                source,
            }) => {
                assert_eq!(failed, resource.name());
                assert_eq!(manifest, raw::manifest_key(resource, &run));
                let message = source.to_string();
                let page = raw::page_key(resource, &run, 2);
                assert!(
                    message.contains(&format!("{page} line 1: {why}")),
                    "{bad}: {message}"
                );
            }
            other => panic!("{bad}: {other:?}"),
        }
        // Nothing merged, nothing recorded: the manifest is pending still.
        assert_eq!(
            tenant
                .rows(&tenant.raw, &format!("SELECT count(*) FROM {table}"))
                .await[0][0],
            0
        );
        tenant
            .cloud
            .objects
            .delete_object(
                &tenant.cred,
                &tenant.bucket,
                &raw::manifest_key(resource, &run),
            )
            .await
            .expect("remove the bad run");
    }
    // Numbers are ids too; a null or missing stamp is no stamp.
    write_run(
        &tenant,
        resource,
        "fine",
        &[
            format!(r#"{{"{id}":42,"{stamp}":null}}"#),
            format!(r#"{{"{id}":"c"}}"#),
            good,
        ],
        100,
        None,
        now,
    )
    .await;
    transform::run(&tenant.context("run")).await.expect("fine");
    let rows = tenant
        .rows(
            &tenant.raw,
            &format!("SELECT id, epoch_ms(updated_at) FROM {table} ORDER BY id"),
        )
        .await;
    assert_eq!(
        rows,
        vec![
            vec![Value::from("42"), Value::Null],
            vec![Value::from("a"), Value::from(1_577_836_800_000_i64)],
            vec![Value::from("c"), Value::Null],
        ]
    );
}
