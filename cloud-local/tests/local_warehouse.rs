//! The local warehouse: DuckDB files, loading, and confined read-only queries.

mod common;

use std::time::{Duration, Instant};

use cloud::ports::{
    BucketSpec, Credential, DatasetSpec, ExpectedObject, ObjectStore, QueryRequest, Warehouse,
    WriteMode,
};
use cloud::CloudError;
use common::{labels, open_temp};
use serde_json::json;
use sha2::Digest;

const P: Credential = Credential::Platform;

fn spec(name: &str, tenant: &str) -> DatasetSpec {
    DatasetSpec {
        name: name.to_owned(),
        labels: labels(tenant),
    }
}

fn req(dataset: &str, sql: &str) -> QueryRequest {
    QueryRequest {
        dataset: dataset.to_owned(),
        sql: sql.to_owned(),
        max_rows: 100,
        timeout: Duration::from_secs(30),
        max_bytes: None,
    }
}

#[tokio::test]
async fn datasets_are_create_or_get_files() {
    let (dir, cloud) = open_temp();
    let d = cloud
        .warehouse
        .ensure_dataset(&spec("raw_aaa", "aaa"))
        .await
        .expect("create");
    assert!(dir.path().join("warehouse/raw_aaa.duckdb").is_file());
    assert!(dir.path().join("meta/datasets/raw_aaa.json").is_file());
    assert_eq!(
        cloud
            .warehouse
            .ensure_dataset(&spec("raw_aaa", "aaa"))
            .await
            .expect("get"),
        d
    );
    assert_eq!(
        cloud.warehouse.get_dataset("raw_aaa").await.expect("get"),
        d
    );
    assert!(matches!(
        cloud
            .warehouse
            .ensure_dataset(&spec("raw_aaa", "bbb"))
            .await,
        Err(CloudError::AlreadyExists { .. })
    ));
    cloud
        .warehouse
        .ensure_dataset(&spec("raw_bbb", "bbb"))
        .await
        .expect("create");
    let names: Vec<_> = cloud
        .warehouse
        .list_datasets(&labels("bbb"))
        .await
        .expect("list")
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["raw_bbb"]);
    assert_eq!(
        cloud
            .warehouse
            .list_datasets(&Default::default())
            .await
            .expect("list")
            .len(),
        2
    );

    cloud
        .warehouse
        .delete_dataset("raw_aaa")
        .await
        .expect("delete");
    assert!(!dir.path().join("warehouse/raw_aaa.duckdb").exists());
    assert!(matches!(
        cloud.warehouse.delete_dataset("raw_aaa").await,
        Err(CloudError::NotFound { .. })
    ));
    assert!(matches!(
        cloud.warehouse.get_dataset("raw_aaa").await,
        Err(CloudError::NotFound { .. })
    ));
    assert!(matches!(
        cloud.warehouse.list_tables(&P, "raw_aaa").await,
        Err(CloudError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_crash_between_the_record_and_the_file_is_adopted() {
    let (dir, cloud) = open_temp();
    cloud
        .warehouse
        .ensure_dataset(&spec("d", "aaa"))
        .await
        .expect("create");
    std::fs::remove_file(dir.path().join("warehouse/d.duckdb")).expect("simulate the crash");
    cloud
        .warehouse
        .ensure_dataset(&spec("d", "aaa"))
        .await
        .expect("adopt");
    assert!(dir.path().join("warehouse/d.duckdb").is_file());
    assert!(cloud
        .warehouse
        .list_tables(&P, "d")
        .await
        .expect("tables")
        .is_empty());
}

#[tokio::test]
async fn loads_append_and_truncate_and_queries_convert_types() {
    let (_dir, cloud) = open_temp();
    cloud
        .warehouse
        .ensure_dataset(&spec("d", "aaa"))
        .await
        .expect("create");
    let rows = b"{\"id\": 1, \"name\": \"Acme\", \"total\": 10.5, \"due\": \"2024-03-01\"}\n\
                 {\"id\": 2, \"name\": \"Bolt\", \"total\": 20.25, \"due\": \"2024-03-02\"}\n";
    assert_eq!(
        cloud
            .warehouse
            .load_ndjson(&P, "d", "invoices", rows.to_vec(), WriteMode::Append)
            .await
            .expect("load"),
        2
    );
    // Append with a new field: the column is added.
    let more = b"{\"id\": 3, \"name\": \"Cog\", \"total\": 1, \"due\": \"2024-03-03\", \"status\": \"PAID\"}\n";
    assert_eq!(
        cloud
            .warehouse
            .load_ndjson(&P, "d", "invoices", more.to_vec(), WriteMode::Append)
            .await
            .expect("load"),
        1
    );
    let tables = cloud.warehouse.list_tables(&P, "d").await.expect("tables");
    assert_eq!(tables.len(), 1);
    assert_eq!(
        (tables[0].name.as_str(), tables[0].rows),
        ("invoices", Some(3))
    );

    let r = cloud
        .warehouse
        .query(
            &P,
            &req(
                "d",
                "SELECT id, name, due, status FROM invoices ORDER BY id",
            ),
        )
        .await
        .expect("query");
    assert_eq!(
        r.columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["id", "name", "due", "status"]
    );
    assert_eq!(r.columns[2].data_type, "DATE");
    assert_eq!(
        r.rows[0],
        vec![json!(1), json!("Acme"), json!("2024-03-01"), json!(null)]
    );
    assert_eq!(r.rows[2][3], json!("PAID"));
    assert!(!r.truncated);

    // Truncate replaces the contents in one step.
    let replacement = b"{\"id\": 9, \"name\": \"Only\"}\n";
    assert_eq!(
        cloud
            .warehouse
            .load_ndjson(
                &P,
                "d",
                "invoices",
                replacement.to_vec(),
                WriteMode::Truncate
            )
            .await
            .expect("load"),
        1
    );
    let r = cloud
        .warehouse
        .query(&P, &req("d", "SELECT * FROM invoices"))
        .await
        .expect("query");
    assert_eq!(r.rows, vec![vec![json!(9), json!("Only")]]);

    // A bad file changes nothing (the transaction rolls back).
    let bad = b"{\"id\": 10}\nnot json\n";
    assert!(cloud
        .warehouse
        .load_ndjson(&P, "d", "invoices", bad.to_vec(), WriteMode::Truncate)
        .await
        .is_err());
    let r = cloud
        .warehouse
        .query(&P, &req("d", "SELECT count(*) AS n FROM invoices"))
        .await
        .expect("query");
    assert_eq!(r.rows, vec![vec![json!(1)]]);
    // Empty input loads nothing.
    assert_eq!(
        cloud
            .warehouse
            .load_ndjson(&P, "d", "invoices", b"\n".to_vec(), WriteMode::Append)
            .await
            .expect("load"),
        0
    );
    // Invalid table names.
    assert!(matches!(
        cloud
            .warehouse
            .load_ndjson(
                &P,
                "d",
                "x; DROP TABLE invoices",
                rows.to_vec(),
                WriteMode::Append
            )
            .await,
        Err(CloudError::Permanent { .. })
    ));
}

#[tokio::test]
async fn lines_of_objects_load_whole_for_the_statements_only_when_they_hold_what_they_should() {
    let (_dir, cloud) = open_temp();
    cloud
        .warehouse
        .ensure_dataset(&spec("d", "aaa"))
        .await
        .expect("create");
    cloud
        .objects
        .ensure_bucket(&BucketSpec {
            name: "b".into(),
            labels: labels("aaa"),
        })
        .await
        .expect("bucket");
    let first = "{\"id\": \"a\", \"note\": \"it's\"}\n\n{\"id\":\"b\"}\n".as_bytes();
    let second = "{\"id\": \"c\", \"x\": [1, 2]}".as_bytes();
    for (key, bytes) in [("raw/p/1.ndjson", first), ("raw/p/2.ndjson", second)] {
        cloud
            .objects
            .put_object(&P, "b", key, bytes.to_vec())
            .await
            .expect("put");
    }
    let digest = |b: &[u8]| hex::encode(sha2::Sha256::digest(b));
    let objects = vec![
        ExpectedObject {
            key: "raw/p/1.ndjson".into(),
            sha256: digest(first),
            lines: 2,
        },
        ExpectedObject {
            key: "raw/p/2.ndjson".into(),
            sha256: digest(second).to_uppercase(),
            lines: 1,
        },
    ];
    let keep = "CREATE OR REPLACE TABLE kept AS SELECT * FROM _lines";
    let read = cloud
        .warehouse
        .load_lines(&P, "d", "_lines", "b", &objects, keep)
        .await
        .expect("load");
    assert_eq!(
        read.iter()
            .map(|o| (o.key.as_str(), o.sha256.clone(), o.lines))
            .collect::<Vec<_>>(),
        vec![
            ("raw/p/1.ndjson", digest(first), 2),
            ("raw/p/2.ndjson", digest(second), 1),
        ]
    );
    let all = "SELECT object, line, text FROM kept ORDER BY object, line";
    let r = cloud
        .warehouse
        .query(&P, &req("d", all))
        .await
        .expect("query");
    assert_eq!(
        r.rows,
        vec![
            vec![
                json!("raw/p/1.ndjson"),
                json!(1),
                json!("{\"id\": \"a\", \"note\": \"it's\"}")
            ],
            vec![json!("raw/p/1.ndjson"), json!(3), json!("{\"id\":\"b\"}")],
            vec![
                json!("raw/p/2.ndjson"),
                json!(1),
                json!("{\"id\": \"c\", \"x\": [1, 2]}")
            ],
        ]
    );
    // The load table was there for the statements only.
    let tables = cloud.warehouse.list_tables(&P, "d").await.expect("tables");
    assert_eq!(
        tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["kept"]
    );

    let count = |cloud: &cloud_local::LocalAdapters| {
        let cloud = cloud.clone();
        async move {
            cloud
                .warehouse
                .query(&P, &req("d", "SELECT count(*) FROM kept"))
                .await
                .expect("count")
                .rows[0][0]
                .clone()
        }
    };
    let replace = "CREATE OR REPLACE TABLE kept AS SELECT * FROM _lines WHERE line = 1";
    // An object that is not what it should be: nothing is loaded, nothing runs.
    for (i, wrong) in [
        ExpectedObject {
            sha256: digest(b"other"),
            ..objects[1].clone()
        },
        ExpectedObject {
            lines: 2,
            ..objects[1].clone()
        },
    ]
    .into_iter()
    .enumerate()
    {
        let read = cloud
            .warehouse
            .load_lines(
                &P,
                "d",
                "_lines",
                "b",
                &[objects[0].clone(), wrong.clone()],
                replace,
            )
            .await
            .expect("read");
        assert_eq!(read.len(), 2, "{i}");
        assert!(objects[0].matches(&read[0]));
        assert!(!wrong.matches(&read[1]), "{i}");
        assert_eq!(count(&cloud).await, json!(3), "{i}");
    }
    // A statement that fails changes nothing either.
    let failing = format!("{replace}; SELECT error('no')");
    assert!(cloud
        .warehouse
        .load_lines(&P, "d", "_lines", "b", &objects, &failing)
        .await
        .is_err());
    assert_eq!(count(&cloud).await, json!(3));
    // A missing object, or a key out of the bucket, loads nothing.
    for bad in ["raw/p/3.ndjson", "../b/raw/p/1.ndjson", "raw"] {
        let mut with_bad = objects.clone();
        with_bad[1].key = bad.to_owned();
        let e = cloud
            .warehouse
            .load_lines(&P, "d", "_lines", "b", &with_bad, replace)
            .await
            .expect_err(bad);
        assert!(
            matches!(
                e,
                CloudError::NotFound { .. } | CloudError::Permanent { .. }
            ),
            "{bad}: {e:?}"
        );
    }
    assert_eq!(count(&cloud).await, json!(3));
    // Not a bucket: nothing to read.
    assert!(matches!(
        cloud
            .warehouse
            .load_lines(&P, "d", "_lines", "nope", &objects, replace)
            .await,
        Err(CloudError::NotFound { .. })
    ));
    cloud
        .warehouse
        .load_lines(&P, "d", "_lines", "b", &objects, replace)
        .await
        .expect("load");
    assert_eq!(count(&cloud).await, json!(2));
}

#[tokio::test]
async fn values_become_json_exactly() {
    let (_dir, cloud) = open_temp();
    cloud
        .warehouse
        .ensure_dataset(&spec("d", "aaa"))
        .await
        .expect("create");
    cloud
        .warehouse
        .execute(
            &P,
            "d",
            "CREATE TABLE t AS SELECT 1234.50::DECIMAL(18,2) AS amount, \
             DATE '2024-02-29' AS day, TIMESTAMP '2024-03-01 12:00:00' AS at, \
             TIMESTAMPTZ '2024-03-01 12:00:00+00' AS at_tz, NULL::VARCHAR AS nothing, \
             true AS flag, 2.5::DOUBLE AS ratio, [1, 2] AS list, {'a': 1} AS obj, \
             9007199254740993::BIGINT AS big",
        )
        .await
        .expect("execute");
    let r = cloud
        .warehouse
        .query(&P, &req("d", "SELECT * FROM t"))
        .await
        .expect("query");
    assert_eq!(
        r.rows[0],
        vec![
            json!("1234.50"),
            json!("2024-02-29"),
            json!("2024-03-01T12:00:00Z"),
            json!("2024-03-01T12:00:00Z"),
            json!(null),
            json!(true),
            json!(2.5),
            json!([1, 2]),
            json!({"a": 1}),
            json!(9_007_199_254_740_993_i64),
        ]
    );
    assert_eq!(r.columns[0].data_type, "DECIMAL(18,2)");
    assert_eq!(r.columns[2].data_type, "TIMESTAMP");
}

#[tokio::test]
async fn max_rows_truncates_and_says_so() {
    let (_dir, cloud) = open_temp();
    cloud
        .warehouse
        .ensure_dataset(&spec("d", "aaa"))
        .await
        .expect("create");
    let mut q = req("d", "SELECT * FROM range(1000) t(i) ORDER BY i;");
    q.max_rows = 10;
    let r = cloud.warehouse.query(&P, &q).await.expect("query");
    assert_eq!(r.rows.len(), 10);
    assert!(r.truncated);
    assert_eq!(r.rows[9], vec![json!(9)]);
    q.max_rows = 1000;
    let r = cloud.warehouse.query(&P, &q).await.expect("query");
    assert_eq!(r.rows.len(), 1000);
    assert!(!r.truncated);
    // A trailing comment cannot break out of the cap.
    q.sql = "SELECT * FROM range(50) -- trailing".into();
    q.max_rows = 5;
    let r = cloud.warehouse.query(&P, &q).await.expect("query");
    assert_eq!((r.rows.len(), r.truncated), (5, true));
}

/// A library caller's timeout beyond what an Instant can hold means no
/// timeout; it once panicked computing the deadline.
#[tokio::test]
async fn a_timeout_too_large_for_a_deadline_is_no_timeout() {
    let (_dir, cloud) = open_temp();
    cloud
        .warehouse
        .ensure_dataset(&spec("d", "aaa"))
        .await
        .expect("create");
    for timeout in [Duration::MAX, Duration::from_secs(u64::MAX / 2)] {
        let q = QueryRequest {
            timeout,
            ..req("d", "SELECT 42 AS x")
        };
        let r = cloud.warehouse.query(&P, &q).await.expect("query");
        assert_eq!(r.rows, vec![vec![json!(42)]]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_its_timeout_is_interrupted() {
    let (_dir, cloud) = open_temp();
    cloud
        .warehouse
        .ensure_dataset(&spec("d", "aaa"))
        .await
        .expect("create");
    let mut q = req(
        "d",
        "SELECT count(*) FROM range(1000000000000) a(i) WHERE i % 7 = 3",
    );
    q.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let r = cloud.warehouse.query(&P, &q).await;
    let took = started.elapsed();
    match r {
        Err(CloudError::Permanent { message, .. }) => {
            assert!(message.contains("timeout"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        took < Duration::from_secs(10),
        "the query was not interrupted: {took:?}"
    );
    // The dataset is usable afterwards.
    let r = cloud
        .warehouse
        .query(&P, &req("d", "SELECT 42 AS x"))
        .await
        .expect("query");
    assert_eq!(r.rows, vec![vec![json!(42)]]);
}

#[tokio::test]
async fn queries_are_read_only_and_confined_to_their_dataset() {
    let (dir, cloud) = open_temp();
    cloud
        .warehouse
        .ensure_dataset(&spec("mine", "aaa"))
        .await
        .expect("create");
    cloud
        .warehouse
        .ensure_dataset(&spec("theirs", "bbb"))
        .await
        .expect("create");
    cloud
        .warehouse
        .execute(&P, "mine", "CREATE TABLE t AS SELECT 1 AS x")
        .await
        .expect("execute");
    cloud
        .warehouse
        .execute(&P, "theirs", "CREATE TABLE secret AS SELECT 'b-data' AS x")
        .await
        .expect("execute");
    let ndjson = dir.path().join("plain.ndjson");
    std::fs::write(&ndjson, "{\"a\": 1}\n").expect("write");
    let theirs = dir.path().join("warehouse/theirs.duckdb");
    // (statement, what the refusal says): every external read is refused by
    // DuckDB's configuration, not by accident.
    let disabled = "disabled by configuration";
    let attempts = [
        ("SELECT * FROM read_csv('/etc/passwd')".to_owned(), disabled),
        (
            "SELECT * FROM read_csv_auto('/etc/passwd')".to_owned(),
            disabled,
        ),
        (
            "SELECT * FROM read_text('/etc/passwd')".to_owned(),
            disabled,
        ),
        (
            format!("SELECT * FROM read_json('{}')", ndjson.display()),
            disabled,
        ),
        (
            format!("SELECT * FROM read_json_auto('{}')", ndjson.display()),
            disabled,
        ),
        (
            format!("SELECT * FROM read_blob('{}')", theirs.display()),
            disabled,
        ),
        (
            format!("SELECT * FROM glob('{}/*')", dir.path().display()),
            disabled,
        ),
        (
            "SELECT * FROM 'https://example.com/data.csv'".to_owned(),
            disabled,
        ),
        // A bare path is not even looked up as a file.
        ("SELECT * FROM '/etc/passwd'".to_owned(), "does not exist"),
        // Extensions that are not linked in are neither installed nor loaded.
        (
            "SELECT * FROM read_parquet('/etc/passwd')".to_owned(),
            "not in the catalog",
        ),
    ];
    for (sql, refusal) in &attempts {
        match cloud.warehouse.query(&P, &req("mine", sql)).await {
            Err(CloudError::Permanent { message, .. }) => {
                assert!(message.contains(refusal), "{sql}: {message}")
            }
            other => panic!("{sql}: {other:?}"),
        }
    }
    // Statements other than a query do not even parse inside the row cap's
    // wrapper; the read-only connection refuses them on its own as well (see
    // the unit tests of the warehouse module).
    for sql in [
        format!("ATTACH '{}' AS other", theirs.display()),
        "CREATE TABLE evil AS SELECT 1".to_owned(),
        "INSERT INTO t VALUES (2)".to_owned(),
        format!("COPY t TO '{}/out.csv'", dir.path().display()),
        "SET enable_external_access = true".to_owned(),
        "INSTALL httpfs".to_owned(),
        "SELECT 1; DROP TABLE t".to_owned(),
    ] {
        let r = cloud.warehouse.query(&P, &req("mine", &sql)).await;
        assert!(
            matches!(r, Err(CloudError::Permanent { .. })),
            "{sql}: {r:?}"
        );
    }
    assert!(!dir.path().join("out.csv").exists());
    let r = cloud
        .warehouse
        .query(&P, &req("mine", "SELECT * FROM t"))
        .await
        .expect("query");
    assert_eq!(r.rows, vec![vec![json!(1)]]);
    let r = cloud
        .warehouse
        .query(&P, &req("mine", "SELECT * FROM secret"))
        .await;
    assert!(r.is_err(), "another dataset's table is visible: {r:?}");
}

#[tokio::test]
async fn execute_cannot_reach_files_or_other_datasets_either() {
    let (dir, cloud) = open_temp();
    cloud
        .warehouse
        .ensure_dataset(&spec("mine", "aaa"))
        .await
        .expect("create");
    cloud
        .warehouse
        .ensure_dataset(&spec("theirs", "bbb"))
        .await
        .expect("create");
    let theirs = dir.path().join("warehouse/theirs.duckdb");
    let disabled = "disabled by configuration";
    let locked = "the configuration has been locked";
    for (sql, refusal) in [
        (
            "CREATE TABLE p AS SELECT * FROM read_csv('/etc/passwd')".to_owned(),
            disabled,
        ),
        (format!("ATTACH '{}' AS other", theirs.display()), disabled),
        (
            format!("COPY (SELECT 1) TO '{}/out.csv'", dir.path().display()),
            disabled,
        ),
        ("SET enable_external_access = true".to_owned(), locked),
        ("SET allowed_paths = ['/etc/passwd']".to_owned(), locked),
        ("SET lock_configuration = false".to_owned(), locked),
    ] {
        match cloud.warehouse.execute(&P, "mine", &sql).await {
            Err(CloudError::Permanent { message, .. }) => {
                assert!(message.contains(refusal), "{sql}: {message}")
            }
            other => panic!("{sql}: {other:?}"),
        }
    }
    assert!(!dir.path().join("out.csv").exists());
    assert!(cloud
        .warehouse
        .list_tables(&P, "mine")
        .await
        .expect("tables")
        .is_empty());
}

#[tokio::test]
async fn the_master_key_in_the_environment_is_not_readable_by_a_query() {
    let (_dir, cloud) = open_temp();
    cloud
        .warehouse
        .ensure_dataset(&spec("d", "aaa"))
        .await
        .expect("create");
    for sql in [
        "SELECT getenv('HOME') AS v",
        "SELECT current_setting('home_directory') AS v",
    ] {
        if let Ok(r) = cloud.warehouse.query(&P, &req("d", sql)).await {
            let home = std::env::var("HOME").unwrap_or_default();
            let shown = r
                .rows
                .first()
                .and_then(|row| row.first())
                .cloned()
                .unwrap_or_default();
            assert!(
                home.is_empty() || shown != json!(home),
                "{sql} reads the environment: {shown}"
            );
        }
    }
}

/// A crash between writing a dataset's record and its database file leaves a
/// record alone: that is not a dataset yet, and the next ensure finishes it.
#[tokio::test]
async fn a_record_without_its_database_file_is_not_found_until_ensured() {
    let (dir, cloud) = open_temp();
    let d = cloud
        .warehouse
        .ensure_dataset(&spec("raw_ccc", "ccc"))
        .await
        .expect("create");
    let file = dir.path().join("warehouse/raw_ccc.duckdb");
    std::fs::remove_file(&file).expect("simulate the crash");
    assert!(matches!(
        cloud.warehouse.get_dataset("raw_ccc").await,
        Err(CloudError::NotFound { .. })
    ));
    let adopted = cloud
        .warehouse
        .ensure_dataset(&spec("raw_ccc", "ccc"))
        .await
        .expect("ensure again");
    assert_eq!(adopted, d);
    assert!(file.is_file());
    assert_eq!(
        cloud.warehouse.get_dataset("raw_ccc").await.expect("get"),
        d
    );
}

#[tokio::test]
async fn a_dataset_held_by_another_process_is_transient() {
    let (dir, cloud) = open_temp();
    cloud
        .warehouse
        .ensure_dataset(&spec("d", "aaa"))
        .await
        .expect("create");
    let file = dir.path().join("warehouse/d.duckdb");
    // Another process takes the POSIX lock DuckDB takes on its file (a
    // running tenant-job would hold it the same way).
    let script = "import fcntl, sys, time\n\
                  f = open(sys.argv[1], 'r+')\n\
                  fcntl.lockf(f, fcntl.LOCK_EX)\n\
                  print('locked', flush=True)\n\
                  time.sleep(30)\n";
    let mut holder = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is needed for this test");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("read");
    assert_eq!(line.trim(), "locked");
    // A query waits for the holder within its timeout, then says it is busy.
    let waiting = QueryRequest {
        timeout: Duration::from_secs(2),
        ..req("d", "SELECT 1")
    };
    let started = Instant::now();
    let query = cloud.warehouse.query(&P, &waiting).await.map(|_| ());
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the query waited its timeout"
    );
    let results = [
        query,
        cloud
            .warehouse
            .execute(&P, "d", "CREATE TABLE t (x INT)")
            .await,
        cloud.warehouse.list_tables(&P, "d").await.map(|_| ()),
    ];
    let _ = holder.kill();
    let _ = holder.wait();
    for r in results {
        match r {
            Err(e @ CloudError::Transient { .. }) => assert!(e.is_retryable()),
            other => panic!("expected a transient error, got {other:?}"),
        }
    }
    // Once the other process lets go, the dataset works again.
    cloud
        .warehouse
        .execute(&P, "d", "CREATE TABLE t (x INT)")
        .await
        .expect("execute after release");
}

/// Tenant `id`'s raw and transformed datasets, and its service account
/// granted dataEditor on exactly those two (as the reconciler grants).
async fn tenant_with_datasets(cloud: &cloud_local::LocalAdapters, id: &str) -> Credential {
    let cred = common::service_account(cloud, id).await;
    for name in [format!("raw_{id}"), format!("transformed_{id}")] {
        cloud
            .warehouse
            .ensure_dataset(&spec(&name, id))
            .await
            .expect("create");
        common::grant_to(
            cloud,
            &cred,
            cloud::ports::ResourceRef::Dataset(name),
            cloud::ports::roles::BIGQUERY_DATA_EDITOR,
        )
        .await;
    }
    cred
}

#[tokio::test]
async fn execute_reading_reads_its_sources_read_only_and_nothing_else() {
    let (dir, cloud) = open_temp();
    let a = tenant_with_datasets(&cloud, "aaa").await;
    let b = tenant_with_datasets(&cloud, "bbb").await;
    cloud
        .warehouse
        .execute(&a, "raw_aaa", "CREATE TABLE invoices AS SELECT 'a-1' AS id")
        .await
        .expect("a's raw");
    cloud
        .warehouse
        .execute(
            &b,
            "raw_bbb",
            "CREATE TABLE invoices AS SELECT 'b-secret' AS id",
        )
        .await
        .expect("b's raw");
    let raw_a = vec!["raw_aaa".to_owned()];

    // The model reads the raw dataset and builds into the transformed one.
    cloud
        .warehouse
        .execute_reading(
            &a,
            "transformed_aaa",
            "CREATE TABLE fct AS SELECT id FROM raw_aaa.invoices",
            &raw_a,
        )
        .await
        .expect("build from raw");
    let r = cloud
        .warehouse
        .query(&a, &req("transformed_aaa", "SELECT id FROM fct"))
        .await
        .expect("query");
    assert_eq!(r.rows, vec![vec![json!("a-1")]]);

    // A's credential cannot name B's raw dataset as a source, to read or to write.
    for (target, sources) in [
        ("transformed_aaa", vec!["raw_bbb".to_owned()]),
        (
            "transformed_aaa",
            vec!["raw_aaa".to_owned(), "raw_bbb".to_owned()],
        ),
        ("transformed_bbb", raw_a.clone()),
    ] {
        let r = cloud
            .warehouse
            .execute_reading(
                &a,
                target,
                "CREATE TABLE stolen AS SELECT * FROM raw_bbb.invoices",
                &sources,
            )
            .await;
        assert!(common::is_denied(&r), "{target} {sources:?}: {r:?}");
    }
    // Read on the source is required, not just write on the target: a grant
    // of dataViewer on B's raw dataset is what would make it readable.
    cloud
        .warehouse
        .ensure_dataset(&spec("shared_ccc", "ccc"))
        .await
        .expect("create");
    let r = cloud
        .warehouse
        .execute_reading(
            &a,
            "transformed_aaa",
            "SELECT 1",
            &["shared_ccc".to_owned()],
        )
        .await;
    assert!(common::is_denied(&r), "{r:?}");

    // B's raw dataset is not reachable without being a source: not attached,
    // and ATTACH or file reads are refused once the sources are attached.
    let theirs = dir.path().join("warehouse/raw_bbb.duckdb");
    let disabled = "disabled by configuration";
    for (sql, refusal) in [
        (
            "CREATE TABLE stolen AS SELECT * FROM raw_bbb.invoices".to_owned(),
            "raw_bbb",
        ),
        (
            format!("ATTACH '{}' AS other (READ_ONLY)", theirs.display()),
            disabled,
        ),
        (
            format!(
                "CREATE TABLE stolen AS SELECT * FROM read_blob('{}')",
                theirs.display()
            ),
            disabled,
        ),
        (
            format!(
                "COPY raw_aaa.invoices TO '{}/out.csv'",
                dir.path().display()
            ),
            disabled,
        ),
        ("SET enable_external_access = true".to_owned(), "locked"),
        // The source is attached read-only.
        (
            "INSERT INTO raw_aaa.invoices VALUES ('x')".to_owned(),
            "read-only",
        ),
        ("DROP TABLE raw_aaa.invoices".to_owned(), "read-only"),
    ] {
        match cloud
            .warehouse
            .execute_reading(&a, "transformed_aaa", &sql, &raw_a)
            .await
        {
            Err(CloudError::Permanent { message, .. }) => {
                assert!(message.contains(refusal), "{sql}: {message}")
            }
            other => panic!("{sql}: {other:?}"),
        }
    }
    assert!(!dir.path().join("out.csv").exists());
    let r = cloud
        .warehouse
        .query(&a, &req("raw_aaa", "SELECT count(*) FROM invoices"))
        .await
        .expect("raw intact");
    assert_eq!(r.rows, vec![vec![json!(1)]]);
    let names: Vec<String> = cloud
        .warehouse
        .list_tables(&a, "transformed_aaa")
        .await
        .expect("tables")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["fct"]);
}

#[tokio::test]
async fn execute_reading_calls_in_opposite_directions_do_not_deadlock() {
    let (_dir, cloud) = open_temp();
    for name in ["one", "two"] {
        cloud
            .warehouse
            .ensure_dataset(&spec(name, "aaa"))
            .await
            .expect("create");
        cloud
            .warehouse
            .execute(&P, name, "CREATE TABLE t (x INTEGER)")
            .await
            .expect("table");
    }
    let mut tasks = Vec::new();
    for i in 0..20 {
        let wh = cloud.warehouse.clone();
        let (target, source) = if i % 2 == 0 {
            ("one", "two")
        } else {
            ("two", "one")
        };
        tasks.push(tokio::spawn(async move {
            wh.execute_reading(
                &P,
                target,
                &format!("INSERT INTO t SELECT count(*) FROM {source}.t"),
                &[source.to_owned()],
            )
            .await
        }));
    }
    let all = tokio::time::timeout(Duration::from_secs(120), futures_join(tasks))
        .await
        .expect("no deadlock");
    for r in all {
        r.expect("task").expect("execute_reading");
    }
    for name in ["one", "two"] {
        let r = cloud
            .warehouse
            .query(&P, &req(name, "SELECT count(*) FROM t"))
            .await
            .expect("count");
        assert_eq!(r.rows, vec![vec![json!(10)]], "{name}");
    }
}

async fn futures_join<T>(
    tasks: Vec<tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await);
    }
    out
}

/// Set in the child process of the test below: the data directory it writes to.
const WRITER_DIR: &str = "LEDGERLAKE_TEST_WRITER_DIR";

/// The writer of `a_writer_in_another_process_gets_a_file_that_queries_keep_open`,
/// run as a child process of this test binary (it does nothing otherwise).
#[tokio::test]
async fn writer_child_process() {
    let Some(dir) = std::env::var_os(WRITER_DIR) else {
        return;
    };
    let cloud =
        cloud_local::LocalAdapters::open(&cloud_local::LocalConfig::new(dir)).expect("open");
    // As a job does: retried while another process holds the file.
    let policy = cloud::retry::RetryPolicy {
        min_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(500),
        max_retries: 6,
    };
    cloud::retry::retry(&policy, || {
        cloud.warehouse.execute(
            &P,
            "transformed_kept",
            "CREATE OR REPLACE TABLE t AS SELECT 2 AS x",
        )
    })
    .await
    .expect("the writer gets the file");
}

#[tokio::test]
async fn a_writer_in_another_process_gets_a_file_that_queries_keep_open() {
    let (dir, cloud) = open_temp();
    cloud
        .warehouse
        .ensure_dataset(&spec("transformed_kept", "kept"))
        .await
        .expect("create");
    cloud
        .warehouse
        .execute(&P, "transformed_kept", "CREATE TABLE t AS SELECT 1 AS x")
        .await
        .expect("table");
    let read = || async {
        cloud
            .warehouse
            .query(&P, &req("transformed_kept", "SELECT x FROM t"))
            .await
            .expect("query")
            .rows[0][0]
            .clone()
    };
    assert_eq!(read().await, json!(1));
    // Keep querying (the open stays in use, never idle) while another
    // process writes the same file: the writer gets it, and queries wait for
    // the writer instead of failing.
    let mut child = tokio::process::Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", "writer_child_process", "--nocapture"])
        .env(WRITER_DIR, dir.path())
        .spawn()
        .expect("spawn the writer");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the writer never finished"
        );
        let x = read().await;
        assert!(x == json!(1) || x == json!(2), "{x}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        status.success(),
        "the writer failed while queries kept the file open"
    );
    // The next query sees the new file, not the kept open of the old one.
    assert_eq!(read().await, json!(2));
}
