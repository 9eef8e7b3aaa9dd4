//! Tenant isolation on the local adapter: a tenant's identity reaches its own
//! bucket, datasets and secret once granted, and nothing of another tenant's.

mod common;

use std::time::Duration;

use cloud::ports::{
    roles, BucketSpec, Credential, DatasetSpec, ExpectedObject, ObjectStore, QueryRequest,
    ResourceRef, SecretPayload, SecretSpec, SecretStore, Warehouse, WriteMode,
};
use cloud_local::LocalAdapters;
use common::{grant_to, is_denied, labels, open_temp, service_account};
use sha2::Digest;

struct Tenant {
    cred: Credential,
    bucket: String,
    dataset: String,
    secret: String,
}

/// Provisions a tenant's resources and grants its account on them, as the reconciler does.
async fn provision(cloud: &LocalAdapters, id: &str) -> Tenant {
    let cred = service_account(cloud, id).await;
    let t = Tenant {
        cred,
        bucket: format!("client-{id}-bucket"),
        dataset: format!("transformed_{id}"),
        secret: format!("xero_token_{id}"),
    };
    cloud
        .objects
        .ensure_bucket(&BucketSpec {
            name: t.bucket.clone(),
            labels: labels(id),
        })
        .await
        .expect("bucket");
    cloud
        .warehouse
        .ensure_dataset(&DatasetSpec {
            name: t.dataset.clone(),
            labels: labels(id),
        })
        .await
        .expect("dataset");
    cloud
        .secrets
        .ensure_secret(&SecretSpec {
            name: t.secret.clone(),
            labels: labels(id),
        })
        .await
        .expect("secret");
    grant_to(
        cloud,
        &t.cred,
        ResourceRef::Bucket(t.bucket.clone()),
        roles::STORAGE_OBJECT_ADMIN,
    )
    .await;
    grant_to(
        cloud,
        &t.cred,
        ResourceRef::Dataset(t.dataset.clone()),
        roles::BIGQUERY_DATA_EDITOR,
    )
    .await;
    grant_to(
        cloud,
        &t.cred,
        ResourceRef::Secret(t.secret.clone()),
        roles::SECRET_ACCESSOR,
    )
    .await;
    grant_to(
        cloud,
        &t.cred,
        ResourceRef::Secret(t.secret.clone()),
        roles::SECRET_VERSION_ADDER,
    )
    .await;
    t
}

fn query(dataset: &str, sql: &str) -> QueryRequest {
    QueryRequest {
        dataset: dataset.to_owned(),
        sql: sql.to_owned(),
        max_rows: 10,
        timeout: Duration::from_secs(10),
        max_bytes: None,
    }
}

#[tokio::test]
async fn nothing_is_reachable_before_the_grants() {
    let (_dir, cloud) = open_temp();
    let cred = service_account(&cloud, "aaa").await;
    cloud
        .objects
        .ensure_bucket(&BucketSpec {
            name: "b".into(),
            labels: labels("aaa"),
        })
        .await
        .expect("bucket");
    cloud
        .warehouse
        .ensure_dataset(&DatasetSpec {
            name: "d".into(),
            labels: labels("aaa"),
        })
        .await
        .expect("dataset");
    cloud
        .secrets
        .ensure_secret(&SecretSpec {
            name: "s".into(),
            labels: labels("aaa"),
        })
        .await
        .expect("secret");
    assert!(is_denied(
        &cloud
            .objects
            .put_object(&cred, "b", "k", b"x".to_vec())
            .await
    ));
    assert!(is_denied(&cloud.objects.list_objects(&cred, "b", "").await));
    assert!(is_denied(&cloud.warehouse.list_tables(&cred, "d").await));
    assert!(is_denied(
        &cloud.warehouse.query(&cred, &query("d", "SELECT 1")).await
    ));
    assert!(is_denied(&cloud.secrets.access_latest(&cred, "s").await));
    // A read role does not allow writing.
    grant_to(
        &cloud,
        &cred,
        ResourceRef::Bucket("b".into()),
        roles::STORAGE_OBJECT_VIEWER,
    )
    .await;
    grant_to(
        &cloud,
        &cred,
        ResourceRef::Dataset("d".into()),
        roles::BIGQUERY_DATA_VIEWER,
    )
    .await;
    grant_to(
        &cloud,
        &cred,
        ResourceRef::Secret("s".into()),
        roles::SECRET_ACCESSOR,
    )
    .await;
    assert!(cloud
        .objects
        .list_objects(&cred, "b", "")
        .await
        .expect("read")
        .is_empty());
    assert!(is_denied(
        &cloud
            .objects
            .put_object(&cred, "b", "k", b"x".to_vec())
            .await
    ));
    assert!(cloud
        .warehouse
        .list_tables(&cred, "d")
        .await
        .expect("read")
        .is_empty());
    assert!(is_denied(
        &cloud
            .warehouse
            .execute(&cred, "d", "CREATE TABLE t (x INT)")
            .await
    ));
    assert!(is_denied(
        &cloud
            .warehouse
            .load_ndjson(&cred, "d", "t", b"{\"a\":1}\n".to_vec(), WriteMode::Append)
            .await
    ));
    assert!(is_denied(
        &cloud
            .secrets
            .add_version(&cred, "s", &SecretPayload::new(b"x".to_vec()))
            .await
    ));
    // A role for another resource type grants nothing here.
    grant_to(
        &cloud,
        &cred,
        ResourceRef::Secret("s".into()),
        roles::STORAGE_OBJECT_ADMIN,
    )
    .await;
    assert!(is_denied(
        &cloud
            .secrets
            .add_version(&cred, "s", &SecretPayload::new(b"x".to_vec()))
            .await
    ));
}

#[tokio::test]
async fn a_tenant_reaches_its_own_resources_and_never_anothers() {
    let (_dir, cloud) = open_temp();
    let a = provision(&cloud, "aaa").await;
    let b = provision(&cloud, "bbb").await;

    // Each tenant works on its own resources with its own identity.
    for t in [&a, &b] {
        cloud
            .objects
            .put_object(&t.cred, &t.bucket, "raw/x.ndjson", b"mine".to_vec())
            .await
            .expect("put own");
        assert_eq!(
            cloud
                .objects
                .get_object(&t.cred, &t.bucket, "raw/x.ndjson")
                .await
                .expect("get own"),
            b"mine"
        );
        assert_eq!(
            cloud
                .objects
                .list_objects(&t.cred, &t.bucket, "raw/")
                .await
                .expect("list own")
                .len(),
            1
        );
        let rows = cloud
            .warehouse
            .load_ndjson(
                &t.cred,
                &t.dataset,
                "invoices",
                b"{\"id\": 1}\n".to_vec(),
                WriteMode::Append,
            )
            .await
            .expect("load own");
        assert_eq!(rows, 1);
        // A bulk load of its own bucket's objects into its own dataset.
        let mine = ExpectedObject {
            key: "raw/x.ndjson".to_owned(),
            sha256: hex::encode(sha2::Sha256::digest(b"mine")),
            lines: 1,
        };
        let read = cloud
            .warehouse
            .load_lines(
                &t.cred,
                &t.dataset,
                "_lines",
                &t.bucket,
                std::slice::from_ref(&mine),
                "SELECT count(*) FROM _lines",
            )
            .await
            .expect("load own lines");
        assert!(mine.matches(&read[0]), "{read:?}");
        cloud
            .warehouse
            .execute(
                &t.cred,
                &t.dataset,
                "CREATE TABLE totals AS SELECT count(*) AS n FROM invoices",
            )
            .await
            .expect("execute own");
        assert_eq!(
            cloud
                .warehouse
                .list_tables(&t.cred, &t.dataset)
                .await
                .expect("tables own")
                .len(),
            2
        );
        let r = cloud
            .warehouse
            .query(&t.cred, &query(&t.dataset, "SELECT n FROM totals"))
            .await
            .expect("query own");
        assert_eq!(r.rows.len(), 1);
        let v = cloud
            .secrets
            .add_version(&t.cred, &t.secret, &SecretPayload::new(b"token".to_vec()))
            .await
            .expect("add own");
        assert_eq!(
            cloud
                .secrets
                .access_latest(&t.cred, &t.secret)
                .await
                .expect("read own")
                .0,
            v
        );
    }

    // A's identity against every one of B's resources.
    let c = &a.cred;
    assert!(is_denied(
        &cloud.objects.get_object(c, &b.bucket, "raw/x.ndjson").await
    ));
    assert!(is_denied(
        &cloud
            .objects
            .put_object(c, &b.bucket, "raw/evil", b"x".to_vec())
            .await
    ));
    assert!(is_denied(
        &cloud.objects.list_objects(c, &b.bucket, "").await
    ));
    assert!(is_denied(
        &cloud
            .objects
            .delete_object(c, &b.bucket, "raw/x.ndjson")
            .await
    ));
    assert!(is_denied(
        &cloud
            .warehouse
            .query(c, &query(&b.dataset, "SELECT * FROM invoices"))
            .await
    ));
    assert!(is_denied(&cloud.warehouse.list_tables(c, &b.dataset).await));
    assert!(is_denied(
        &cloud
            .warehouse
            .load_ndjson(
                c,
                &b.dataset,
                "invoices",
                b"{\"id\": 2}\n".to_vec(),
                WriteMode::Truncate
            )
            .await
    ));
    assert!(is_denied(
        &cloud
            .warehouse
            .execute(c, &b.dataset, "DROP TABLE invoices")
            .await
    ));
    // Bulk loads: not into B's dataset, and not from B's bucket into A's own
    // dataset either (the warehouse reads the files itself).
    let theirs = [ExpectedObject {
        key: "raw/x.ndjson".to_owned(),
        sha256: hex::encode(sha2::Sha256::digest(b"mine")),
        lines: 1,
    }];
    for (dataset, bucket) in [
        (&b.dataset, &a.bucket),
        (&a.dataset, &b.bucket),
        (&b.dataset, &b.bucket),
    ] {
        assert!(is_denied(
            &cloud
                .warehouse
                .load_lines(c, dataset, "_lines", bucket, &theirs, "SELECT 1")
                .await
        ));
    }
    assert!(is_denied(&cloud.secrets.access_latest(c, &b.secret).await));
    assert!(is_denied(
        &cloud
            .secrets
            .add_version(c, &b.secret, &SecretPayload::new(b"x".to_vec()))
            .await
    ));

    // Nor through its own dataset: B's file cannot be attached or read from A's query.
    let theirs = cloud.layout.dataset_file(&b.dataset);
    for sql in [
        format!("SELECT * FROM read_blob('{}')", theirs.display()),
        format!("SELECT * FROM '{}'", theirs.display()),
    ] {
        assert!(
            cloud
                .warehouse
                .query(c, &query(&a.dataset, &sql))
                .await
                .is_err(),
            "{sql}"
        );
    }
    assert!(cloud
        .warehouse
        .execute(
            c,
            &a.dataset,
            &format!("ATTACH '{}' AS b", theirs.display())
        )
        .await
        .is_err());

    // A forged key for A's own email is refused on A's own resources.
    let Credential::ServiceAccount { email, .. } = c else {
        panic!()
    };
    let forged = Credential::ServiceAccount {
        email: email.clone(),
        key: "f".repeat(64),
    };
    assert!(is_denied(
        &cloud
            .objects
            .get_object(&forged, &a.bucket, "raw/x.ndjson")
            .await
    ));
    assert!(is_denied(
        &cloud
            .warehouse
            .query(&forged, &query(&a.dataset, "SELECT 1"))
            .await
    ));
    assert!(is_denied(
        &cloud.secrets.access_latest(&forged, &a.secret).await
    ));

    // B's data is untouched.
    assert_eq!(
        cloud
            .objects
            .get_object(&b.cred, &b.bucket, "raw/x.ndjson")
            .await
            .expect("b reads"),
        b"mine"
    );
    let r = cloud
        .warehouse
        .query(&b.cred, &query(&b.dataset, "SELECT count(*) FROM invoices"))
        .await
        .expect("b queries");
    assert_eq!(r.rows, vec![vec![serde_json::json!(1)]]);
}
