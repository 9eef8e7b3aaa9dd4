//! A tenant provisioned through the cloud ports from the reconciler's own
//! plan, its Xero token set from an in-process sandbox, and the job's
//! configuration (from the environment the control plane would give it)
//! pointing at both.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use cloud::naming::{self, TenantId};
use cloud::ports::identity::grant;
use cloud::ports::{
    BucketSpec, Credential, DatasetSpec, Identity, ObjectStore, QueryRequest, SecretSpec,
    SecretStore, ServiceAccountSpec, Warehouse,
};
use cloud_local::{LocalAdapters, LocalConfig};
use job_contract::plan::{JobTemplate, Planned, TenantPlan};
use job_contract::tokens::write_token_set;
use job_contract::JobEnvironment;
use serde_json::Value;
use tenant_job::job::JobConfig;
use xero::secret::SecretString;
use xero_sandbox::{Sandbox, SandboxConfig, SandboxLimits};

pub const MASTER_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
pub const CLIENT_ID: &str = "job-client";
pub const CLIENT_SECRET: &str = "job-client-secret";

pub fn open(dir: &Path) -> LocalAdapters {
    LocalAdapters::open(&LocalConfig {
        master_key: Some(MASTER_KEY.to_owned()),
        ..LocalConfig::new(dir)
    })
    .expect("open the local cloud")
}

/// Creates the tenant's resources and grants from the control plane's own
/// plan (its job definitions aside: these tests run the job's library).
pub async fn provision(cloud: &LocalAdapters, id: &TenantId) -> Credential {
    let labels = naming::tenant_labels(id);
    let email = cloud.identity.email_for(&naming::service_account_id(id));
    let plan = TenantPlan::new(id, None, email.clone(), &JobTemplate::beside_current_exe());
    for planned in plan.resources() {
        match planned {
            Planned::ServiceAccount { account_id, .. } => {
                let sa = cloud
                    .identity
                    .ensure_service_account(&ServiceAccountSpec {
                        account_id: account_id.clone(),
                        display_name: format!("tenant {id}"),
                        labels: labels.clone(),
                    })
                    .await
                    .expect("service account");
                assert_eq!(sa.email, email);
            }
            Planned::Bucket { name } => {
                cloud
                    .objects
                    .ensure_bucket(&BucketSpec {
                        name: name.clone(),
                        labels: labels.clone(),
                    })
                    .await
                    .expect("bucket");
            }
            Planned::Dataset { name } => {
                cloud
                    .warehouse
                    .ensure_dataset(&DatasetSpec {
                        name: name.clone(),
                        labels: labels.clone(),
                    })
                    .await
                    .expect("dataset");
            }
            Planned::Secret { name } => {
                cloud
                    .secrets
                    .ensure_secret(&SecretSpec {
                        name: name.clone(),
                        labels: labels.clone(),
                    })
                    .await
                    .expect("secret");
            }
            Planned::Binding {
                resource,
                role,
                member,
            } => {
                grant(cloud.identity.as_ref(), resource, role, member)
                    .await
                    .expect("grant");
            }
            Planned::Job { .. } => {}
        }
    }
    cloud
        .identity
        .credential_for(&email)
        .await
        .expect("credential")
}

pub async fn sandbox(invoices: usize) -> Sandbox {
    Sandbox::start(
        SandboxConfig::new(CLIENT_ID, CLIENT_SECRET)
            .invoices(invoices)
            .seed(21)
            .limits(SandboxLimits {
                per_minute: 100_000,
                ..SandboxLimits::default()
            }),
    )
    .await
    .expect("sandbox")
}

/// A provisioned tenant connected to the sandbox (its token set in its secret).
pub async fn connected(cloud: &LocalAdapters, sandbox: &Sandbox, id: &TenantId) -> Credential {
    let cred = provision(cloud, id).await;
    let tokens = sandbox.issue_tokens(None);
    write_token_set(
        &cloud.clone().into_cloud(),
        &Credential::Platform,
        id,
        &tokens,
    )
    .await
    .expect("token set");
    cred
}

pub fn job_config(dir: &Path, sandbox: &Sandbox, id: &TenantId, run_id: &str) -> JobConfig {
    JobConfig::from_environment(JobEnvironment {
        run_id: Some(run_id.to_owned()),
        data_dir: Some(dir.to_path_buf()),
        master_key: Some(SecretString::new(MASTER_KEY)),
        xero_endpoint: Some(sandbox.base_url().to_owned()),
        xero_client_id: Some(CLIENT_ID.to_owned()),
        xero_client_secret: Some(SecretString::new(CLIENT_SECRET)),
        // The sandbox's minute limit is off in these tests unless a test
        // turns it on; the day limit and concurrency stay Xero's.
        xero_per_minute: Some(100_000),
        ..JobEnvironment::new(id.clone())
    })
}

/// Every manifest in `bucket`.
pub async fn manifests(
    objects: &dyn ObjectStore,
    cred: &Credential,
    bucket: &str,
) -> BTreeSet<String> {
    objects
        .list_objects(cred, bucket, "raw/")
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.ends_with("/manifest.json"))
        .collect()
}

/// The rows `sql` returns from `dataset`.
pub async fn rows(
    cloud: &cloud_local::LocalAdapters,
    cred: &Credential,
    dataset: &str,
    sql: String,
) -> Vec<Vec<Value>> {
    cloud
        .warehouse
        .query(
            cred,
            &QueryRequest {
                dataset: dataset.to_owned(),
                sql,
                max_rows: 10_000_000,
                timeout: Duration::from_secs(120),
                max_bytes: None,
            },
        )
        .await
        .expect("rows")
        .rows
}

/// Every table of `dataset` with every row, sorted.
pub async fn snapshot(
    cloud: &cloud_local::LocalAdapters,
    cred: &Credential,
    dataset: &str,
) -> BTreeMap<String, Vec<Vec<Value>>> {
    let mut out = BTreeMap::new();
    for table in cloud
        .warehouse
        .list_tables(cred, dataset)
        .await
        .expect("tables")
    {
        let sql = format!("SELECT * FROM {} ORDER BY ALL", table.name);
        out.insert(table.name, rows(cloud, cred, dataset, sql).await);
    }
    out
}
