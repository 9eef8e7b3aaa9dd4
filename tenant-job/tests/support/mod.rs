//! A tenant provisioned by hand through the cloud ports (what the
//! reconciler's plan creates), its Xero token set from an in-process sandbox,
//! and the job's configuration pointing at both.
#![allow(dead_code)]

use std::path::Path;

use cloud::local::{LocalAdapters, LocalConfig};
use cloud::naming::{self, TenantId};
use cloud::ports::identity::grant;
use cloud::ports::{
    roles, BucketSpec, Credential, DatasetSpec, Identity, ObjectStore, ResourceRef, SecretSpec,
    SecretStore, ServiceAccountSpec, Warehouse,
};
use tenant_job::job::JobConfig;
use tenant_job::tokens::write_token_set;
use xero::sandbox::{Sandbox, SandboxConfig, SandboxLimits};

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

/// Creates the tenant's resources and grants, as the reconciler would.
pub async fn provision(cloud: &LocalAdapters, id: &TenantId) -> Credential {
    let labels = naming::tenant_labels(id);
    let sa = cloud
        .identity
        .ensure_service_account(&ServiceAccountSpec {
            account_id: naming::service_account_id(id),
            display_name: format!("tenant {id}"),
            labels: labels.clone(),
        })
        .await
        .expect("service account");
    let bucket = naming::bucket_name(None, id);
    cloud
        .objects
        .ensure_bucket(&BucketSpec {
            name: bucket.clone(),
            labels: labels.clone(),
        })
        .await
        .expect("bucket");
    for name in [naming::raw_dataset(id), naming::transformed_dataset(id)] {
        cloud
            .warehouse
            .ensure_dataset(&DatasetSpec {
                name,
                labels: labels.clone(),
            })
            .await
            .expect("dataset");
    }
    cloud
        .secrets
        .ensure_secret(&SecretSpec {
            name: naming::secret_name(id),
            labels,
        })
        .await
        .expect("secret");
    let member = cloud::ports::member_for(&sa.email);
    let grants = [
        (ResourceRef::Bucket(bucket), roles::STORAGE_OBJECT_ADMIN),
        (
            ResourceRef::Dataset(naming::raw_dataset(id)),
            roles::BIGQUERY_DATA_EDITOR,
        ),
        (
            ResourceRef::Dataset(naming::transformed_dataset(id)),
            roles::BIGQUERY_DATA_EDITOR,
        ),
        (
            ResourceRef::Secret(naming::secret_name(id)),
            roles::SECRET_ACCESSOR,
        ),
        (
            ResourceRef::Secret(naming::secret_name(id)),
            roles::SECRET_VERSION_ADDER,
        ),
        (ResourceRef::Project, roles::BIGQUERY_JOB_USER),
    ];
    for (resource, role) in grants {
        grant(cloud.identity.as_ref(), &resource, role, &member)
            .await
            .expect("grant");
    }
    cloud
        .identity
        .credential_for(&sa.email)
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
    JobConfig {
        tenant: id.clone(),
        run_id: run_id.to_owned(),
        data_dir: dir.to_path_buf(),
        master_key: Some(MASTER_KEY.to_owned()),
        bucket_prefix: None,
        service_account: None,
        xero_endpoint: Some(sandbox.base_url().to_owned()),
        xero_client_id: Some(CLIENT_ID.to_owned()),
        xero_client_secret: Some(CLIENT_SECRET.to_owned()),
        // The sandbox's minute limit is off in these tests unless a test
        // turns it on; the day limit and concurrency stay Xero's.
        xero_limits: xero::limits::LimitConfig {
            per_minute: 100_000,
            ..Default::default()
        },
    }
}
