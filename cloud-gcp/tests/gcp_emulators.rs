//! The gcp adapter's Cloud Storage and BigQuery halves against the emulators
//! from PyPI (`gcp-storage-emulator`, `bqemulator`), which `.ci/run` starts;
//! IAM and IAM Credentials come from a contract server of the test's own.
//! What the emulators do not reproduce (generation preconditions, policy
//! etags, dry-run byte estimates) is listed in infra/local/gcp/EMULATORS.md.

mod support;

use cloud::error::CloudError;
use cloud::naming::{tenant_labels, TenantId};
use cloud::ports::{
    identity, roles, BucketSpec, Credential, DatasetSpec, QueryRequest, ResourceRef, WriteMode,
};
use support::{cell, emulators, ContractServer};

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

#[tokio::test]
async fn emulator_buckets_carry_their_labels_and_policy_and_hold_objects() {
    if !emulators() {
        return;
    }
    let server = ContractServer::start(&[]);
    let cloud = server.gcp().await.cloud_for(&cell());
    let tenant = TenantId::parse(&unique("t")).expect("id");
    let labels = tenant_labels(&tenant);
    let name = format!("ledgerlake-test-{}", tenant.as_str());
    let spec = BucketSpec {
        name: name.clone(),
        labels: labels.clone(),
    };
    let bucket = cloud.objects.ensure_bucket(&spec).await.expect("create");
    assert_eq!(
        bucket.labels, labels,
        "labels set even where the emulator drops them on insert"
    );
    assert_eq!(
        cloud
            .objects
            .ensure_bucket(&spec)
            .await
            .expect("again")
            .labels,
        labels
    );
    // Read back through the emulator's own API: locked down as created.
    let raw: serde_json::Value = reqwest::get(format!(
        "{}/storage/v1/b/{name}",
        std::env::var("LEDGERLAKE_GCP_STORAGE_ENDPOINT").unwrap_or_default()
    ))
    .await
    .expect("get")
    .json()
    .await
    .expect("json");
    assert_eq!(
        raw["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"], true,
        "{raw}"
    );
    assert_eq!(
        raw["iamConfiguration"]["publicAccessPrevention"], "enforced",
        "{raw}"
    );
    let foreign = BucketSpec {
        name: name.clone(),
        labels: tenant_labels(&TenantId::parse("other").expect("id")),
    };
    assert!(matches!(
        cloud.objects.ensure_bucket(&foreign).await,
        Err(CloudError::AlreadyExists { .. })
    ));
    let listed = cloud.objects.list_buckets(&labels).await.expect("list");
    assert_eq!(
        listed.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
        [name.as_str()]
    );

    let member = "serviceAccount:client-x-sa@ledgerlake-cell-001.iam.gserviceaccount.com";
    assert!(identity::grant(
        cloud.identity.as_ref(),
        &ResourceRef::Bucket(name.clone()),
        roles::STORAGE_OBJECT_ADMIN,
        member
    )
    .await
    .expect("grant"));
    let policy = cloud
        .identity
        .get_iam_policy(&ResourceRef::Bucket(name.clone()))
        .await
        .expect("policy");
    assert!(policy.has(roles::STORAGE_OBJECT_ADMIN, member));

    let p = &Credential::Platform;
    let written = cloud
        .objects
        .put_object(
            p,
            &name,
            "raw/invoices/page-1.ndjson",
            b"{\"a\":1}\n".to_vec(),
        )
        .await
        .expect("put");
    assert_eq!(written.size, 8);
    cloud
        .objects
        .put_object(p, &name, "raw/contacts/page-1.ndjson", b"{}\n".to_vec())
        .await
        .expect("put");
    let (info, data) = cloud
        .objects
        .read_object(p, &name, "raw/invoices/page-1.ndjson")
        .await
        .expect("read");
    assert_eq!(
        (info.generation, data),
        (written.generation, b"{\"a\":1}\n".to_vec())
    );
    let keys: Vec<String> = cloud
        .objects
        .list_objects(p, &name, "raw/")
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        keys,
        ["raw/contacts/page-1.ndjson", "raw/invoices/page-1.ndjson"]
    );
    assert!(matches!(
        cloud.objects.get_object(p, &name, "raw/missing").await,
        Err(CloudError::NotFound { .. })
    ));
    // A bucket with objects goes whole: its objects first.
    cloud.objects.delete_bucket(&name).await.expect("delete");
    assert!(matches!(
        cloud.objects.get_bucket(&name).await,
        Err(CloudError::NotFound { .. })
    ));
    assert!(cloud
        .objects
        .list_buckets(&labels)
        .await
        .expect("list")
        .is_empty());
    server.assert_on_contract().await;
}

#[tokio::test]
async fn emulator_datasets_take_loads_statements_and_questions() {
    if !emulators() {
        return;
    }
    let server = ContractServer::start(&[]);
    let cloud = server.gcp().await.cloud_for(&cell());
    let tenant = TenantId::parse(&unique("t")).expect("id");
    let labels = tenant_labels(&tenant);
    let raw = format!("raw_{}", tenant.as_str());
    let dataset = cloud
        .warehouse
        .ensure_dataset(&DatasetSpec {
            name: raw.clone(),
            labels: labels.clone(),
        })
        .await
        .expect("create");
    assert_eq!(
        (dataset.name.as_str(), &dataset.labels),
        (raw.as_str(), &labels)
    );
    cloud
        .warehouse
        .ensure_dataset(&DatasetSpec {
            name: raw.clone(),
            labels: labels.clone(),
        })
        .await
        .expect("again");
    let listed = cloud.warehouse.list_datasets(&labels).await.expect("list");
    assert_eq!(listed.len(), 1);

    let member = "serviceAccount:client-x-sa@ledgerlake-cell-001.iam.gserviceaccount.com";
    identity::grant(
        cloud.identity.as_ref(),
        &ResourceRef::Dataset(raw.clone()),
        roles::BIGQUERY_DATA_EDITOR,
        member,
    )
    .await
    .expect("grant");
    let policy = cloud
        .identity
        .get_iam_policy(&ResourceRef::Dataset(raw.clone()))
        .await
        .expect("policy");
    assert!(
        policy.has(roles::BIGQUERY_DATA_EDITOR, member),
        "{policy:?}"
    );

    let p = &Credential::Platform;
    let rows = b"{\"id\":\"i1\",\"total\":10.5}\n{\"id\":\"i2\",\"total\":4}\n".to_vec();
    assert_eq!(
        cloud
            .warehouse
            .load_ndjson(p, &raw, "invoices", rows.clone(), WriteMode::Truncate)
            .await
            .expect("load"),
        2
    );
    // (bqemulator reports the table's rows as an append's outputRows, where
    // BigQuery reports the job's: the table is counted below instead.)
    cloud
        .warehouse
        .load_ndjson(p, &raw, "invoices", rows, WriteMode::Append)
        .await
        .expect("load");
    cloud
        .warehouse
        .execute(p, &raw, "CREATE OR REPLACE TABLE totals AS SELECT id, SUM(total) AS total FROM invoices GROUP BY id")
        .await
        .expect("statement");
    let tables: Vec<String> = cloud
        .warehouse
        .list_tables(p, &raw)
        .await
        .expect("tables")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(tables, ["invoices", "totals"]);
    let answer = cloud
        .warehouse
        .query(
            p,
            &QueryRequest {
                dataset: raw.clone(),
                sql: "SELECT id, total FROM totals ORDER BY id".into(),
                max_rows: 1,
                timeout: std::time::Duration::from_secs(30),
                max_bytes: Some(10_000_000),
            },
        )
        .await
        .expect("question");
    assert_eq!(
        answer
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["id", "total"]
    );
    assert_eq!(
        answer.rows,
        vec![vec![serde_json::json!("i1"), serde_json::json!(21.0)]]
    );
    assert!(answer.truncated, "two rows, one allowed");
    // The dry run refuses anything but a SELECT before it runs.
    let refused = cloud
        .warehouse
        .query(
            p,
            &QueryRequest {
                dataset: raw.clone(),
                sql: "DELETE FROM totals WHERE TRUE".into(),
                max_rows: 10,
                timeout: std::time::Duration::from_secs(30),
                max_bytes: None,
            },
        )
        .await
        .expect_err("not a SELECT");
    assert!(
        matches!(refused, CloudError::PermissionDenied { .. }),
        "{refused}"
    );
    let still = cloud
        .warehouse
        .query(
            p,
            &QueryRequest {
                dataset: raw.clone(),
                sql: "SELECT COUNT(*) AS n FROM totals".into(),
                max_rows: 10,
                timeout: std::time::Duration::from_secs(30),
                max_bytes: None,
            },
        )
        .await
        .expect("count");
    assert_eq!(
        still.rows,
        vec![vec![serde_json::json!(2)]],
        "nothing was deleted"
    );
    cloud.warehouse.delete_dataset(&raw).await.expect("delete");
    assert!(cloud
        .warehouse
        .list_datasets(&labels)
        .await
        .expect("list")
        .is_empty());
    server.assert_on_contract().await;
}
