//! Shared test support: a platform in a temporary directory and a cloud wrapper
//! that injects faults into the calls that change something.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use cloud::faulty;

pub mod backends;

use std::time::Duration;

use control_plane::platform::{Platform, PlatformConfig};
use control_plane::reconciler::{Reconciler, RetryPolicy, Settings};

/// A 32-byte master key in hex, so tests never create key files by accident.
pub const TEST_MASTER_KEY: &str =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

pub async fn platform(dir: &std::path::Path) -> Platform {
    Platform::open(PlatformConfig {
        cloud: Default::default(),
        data_dir: dir.to_path_buf(),
        database_url: None,
        bucket_prefix: None,
        master_key: Some(TEST_MASTER_KEY.to_owned()),
    })
    .await
    .expect("open platform")
}

/// Settings with fast retries and a short lease, so crash tests run quickly.
pub fn fast_settings() -> Settings {
    Settings {
        retry: RetryPolicy {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(20),
            max_retries: 4,
        },
        lease_ttl: Duration::from_millis(300),
        lease_wait: Duration::from_secs(10),
        ..Settings::default()
    }
}

pub fn reconciler(platform: &Platform) -> Reconciler {
    platform.reconciler(fast_settings())
}

/// A fresh, empty PostgreSQL database for one test, created through the server
/// named by `LEDGERLAKE_TEST_DATABASE_URL`; `None` when that is unset.
pub fn postgres_database() -> Result<Option<String>, sqlx::Error> {
    use sqlx::Connection;
    let Ok(admin_url) = std::env::var("LEDGERLAKE_TEST_DATABASE_URL") else {
        return Ok(None);
    };
    let name = format!("ll_cli_{}", uuid::Uuid::new_v4().simple());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(sqlx::Error::Io)?;
    runtime.block_on(async {
        let mut conn = sqlx::PgConnection::connect(&admin_url).await?;
        sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str()).await?;
        Ok::<_, sqlx::Error>(())
    })?;
    let base = admin_url
        .rsplit_once('/')
        .map(|(base, _)| base.to_owned())
        .unwrap_or(admin_url);
    Ok(Some(format!("{base}/{name}")))
}

/// Asserts that nothing labelled with tenant `id` is left in any port.
pub async fn assert_nothing_labelled(cloud: &cloud::Cloud, id: &cloud::naming::TenantId) {
    let labels = cloud::naming::tenant_labels(id);
    let buckets = cloud.objects.list_buckets(&labels).await.expect("buckets");
    assert!(buckets.is_empty(), "{buckets:?}");
    let datasets = cloud
        .warehouse
        .list_datasets(&labels)
        .await
        .expect("datasets");
    assert!(datasets.is_empty(), "{datasets:?}");
    let secrets = cloud.secrets.list_secrets(&labels).await.expect("secrets");
    assert!(secrets.is_empty(), "{secrets:?}");
    let jobs = cloud.jobs.list_jobs(&labels).await.expect("jobs");
    assert!(jobs.is_empty(), "{jobs:?}");
    let accounts = cloud
        .identity
        .list_service_accounts(&labels)
        .await
        .expect("accounts");
    assert!(accounts.is_empty(), "{accounts:?}");
}
