//! Provisioning on the gcp adapter at scale: N tenants (default 1,000;
//! `LEDGERLAKE_BENCH_TENANTS`) over cells of `LEDGERLAKE_BENCH_CELL_CAPACITY`
//! (default 100), against the Cloud Storage and BigQuery emulators and a
//! contract server enforcing Google's quotas (`--enforce-quotas`, scaled by
//! `LEDGERLAKE_GCP_QUOTA_SCALE`, default 1: Google's own rates), with the
//! adapter pacing itself by the same quotas. Prints the onboarding rate
//! against the quota-bound maximum (bucket creation, one every 2 s per
//! project, bounds a tenant's cell), one tenant's wall time against its
//! critical path, and the calls per tenant.
//!
//! Needs the emulators: `eval "$(infra/local/gcp-emulators start)"`, then
//! `cargo bench --workspace --bench provision_gcp`.

#[path = "../../cloud-gcp/tests/support.rs"]
mod gcp;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud::naming::TenantId;
use cloud::Clouds;
use control_plane::platform::{Platform, PlatformConfig};
use control_plane::reconciler::{JobTemplate, Reconciler, Settings};
use control_plane::service::cells;
use control_plane::store::{NewCell, WithoutCells};
use futures::StreamExt;
use job_contract::plan::XERO_APP_SECRET;
use xero::secret::SecretString;

fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("LEDGERLAKE_GCP_STORAGE_ENDPOINT").is_none() {
        eprintln!("provision_gcp: the emulators are not running; run `eval \"$(infra/local/gcp-emulators start)\"` first");
        return Ok(());
    }
    let n: usize = var("LEDGERLAKE_BENCH_TENANTS", 1_000);
    let capacity: usize = var("LEDGERLAKE_BENCH_CELL_CAPACITY", 100);
    let concurrency: usize = var("LEDGERLAKE_BENCH_CONCURRENCY", 200);
    let scale: f64 = var("LEDGERLAKE_GCP_QUOTA_SCALE", 1.0);
    let cells = n.div_ceil(capacity);
    let scale_arg = scale.to_string();
    let server = gcp::ContractServer::start(&[
        "--enforce-quotas",
        "--quota-scale",
        &scale_arg,
        "--sa-visibility-delay",
        "2",
        "--lro-delay",
        "0.5",
    ]);
    let mut config = server.config();
    config.quotas = config.quotas.scaled(scale);
    let adapter = cloud_gcp::Gcp::connect(config).await?;
    let dir = tempfile::tempdir()?;
    let platform = Platform::open(PlatformConfig {
        cloud: Default::default(),
        data_dir: dir.path().to_path_buf(),
        database_url: None,
        bucket_prefix: None,
        master_key: Some("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into()),
    })
    .await?;
    let store = platform.store.clone();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let clouds = Clouds::PerCell(Arc::new(adapter.clone()));
    // Registering a cell writes the Xero app's client secret into it, which
    // each tenant's jobs are granted to read.
    let app_secret = SecretString::new("bench-client-secret");
    for c in 0..cells {
        cells::add(
            &store,
            &clouds,
            NewCell {
                id: format!("bench-{}-{c:03}", &run[..6]),
                project: format!("bench-{}-{c:03}", &run[..6]),
                region: "europe-west1".into(),
                capacity: capacity as i64,
            },
            Some(&app_secret),
            "bench",
        )
        .await?;
        // "The oldest cell with the most room" needs distinct creation times.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let reconciler = Reconciler::new(
        clouds.clone(),
        store.clone(),
        Settings {
            without_cells: WithoutCells::Refuse,
            lease_ttl: Duration::from_secs(120),
            jobs: JobTemplate {
                app_secret: Some(XERO_APP_SECRET.into()),
                ..JobTemplate::beside_current_exe()
            },
            ..Settings::default()
        },
    );
    let ids: Vec<TenantId> = (0..n)
        .map(|i| TenantId::parse(&format!("b{}{i:05}", &run[..6])))
        .collect::<Result<_, _>>()?;

    eprintln!("provision_gcp: {n} tenants in {cells} cells of {capacity}, concurrency {concurrency}, quota scale {scale}");
    let started = Instant::now();
    let results: Vec<(Duration, bool)> = futures::stream::iter(ids.iter())
        .map(|id| {
            let reconciler = &reconciler;
            async move {
                let t = Instant::now();
                let outcome = reconciler.provision(id, "bench").await;
                let ok = match &outcome {
                    Ok(r) if r.is_success() => true,
                    Ok(r) => {
                        eprintln!("provision_gcp: {}", r.failure_summary());
                        false
                    }
                    Err(e) => {
                        eprintln!("provision_gcp: tenant {id}: {e}");
                        false
                    }
                };
                (t.elapsed(), ok)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let wall = started.elapsed();
    let failed = results.iter().filter(|(_, ok)| !ok).count();
    let mut times: Vec<Duration> = results.iter().map(|(d, _)| *d).collect();
    times.sort();

    // The quota-bound maximum: each cell creates a bucket every 60/(30·scale) s.
    let per_cell_per_second = 30.0 * scale / 60.0;
    let achieved = n as f64 / wall.as_secs_f64();

    // One tenant alone, in a fresh cell, against its critical path: account
    // (create, then visible after the server's delay), then bucket, datasets
    // and secret at once, then grants at once, then the two jobs at once
    // (each a long-running operation of 0.5 s).
    let lone_cell = format!("bench-{}-lone", &run[..6]);
    cells::add(
        &store,
        &clouds,
        NewCell {
            id: lone_cell.clone(),
            project: lone_cell.clone(),
            region: "europe-west1".into(),
            capacity: 1,
        },
        Some(&app_secret),
        "bench",
    )
    .await?;
    let lone = TenantId::parse(&format!("l{}", &run[..10]))?;
    let t = Instant::now();
    let lone_ok = matches!(reconciler.provision(&lone, "bench").await, Ok(r) if r.is_success());
    let lone_wall = t.elapsed();

    let calls: BTreeMap<_, _> = adapter.calls();
    let total: u64 = calls.values().sum();

    // The no-op `reconcile --all` over every tenant, which lists each cell
    // once per pass (its buckets, datasets, accounts, secrets and jobs)
    // instead of reading each tenant's resources one by one: the first pass
    // marks the tenants settled, the next ones are the steady state.
    let mut passes = Vec::new();
    for _ in 0..3 {
        let before: u64 = adapter.calls().values().sum();
        let t = Instant::now();
        let reports = reconciler.reconcile_all().await?;
        let took = t.elapsed();
        let changed: usize = reports
            .iter()
            .map(|r| r.as_ref().map_or(1, |r| r.changed))
            .sum();
        let after: u64 = adapter.calls().values().sum();
        passes.push((took, reports.len(), changed, after - before));
    }

    println!("provision_gcp: {n} tenants, {cells} cells of {capacity}, concurrency {concurrency}, quota scale {scale}");
    println!("  wall {:.1} s, {failed} failed", wall.as_secs_f64());
    println!(
        "  onboarding {achieved:.2} tenants/s against a quota-bound maximum of {:.2}/s ({:.0}%)",
        cells as f64 * per_cell_per_second,
        100.0 * achieved / (cells as f64 * per_cell_per_second)
    );
    println!(
        "  per tenant under load: p50 {:.1} s, p99 {:.1} s",
        percentile(&times, 0.5).as_secs_f64(),
        percentile(&times, 0.99).as_secs_f64()
    );
    println!(
        "  one tenant alone: {:.2} s (ok: {lone_ok}); critical path ≥ 2.0 s visibility + 0.5 s job LRO + round trips",
        lone_wall.as_secs_f64()
    );
    println!(
        "  calls per tenant: {:.1} (by quota: {})",
        total as f64 / (n + 1) as f64,
        calls
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| format!("{k:?} {:.1}", *v as f64 / (n + 1) as f64))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (i, (took, tenants, changed, calls)) in passes.iter().enumerate() {
        println!(
            "  no-op reconcile --all, pass {}: {:.2} s over {tenants} tenants in {} cells, {changed} changed, {calls} Google calls ({:.2} a tenant)",
            i + 1,
            took.as_secs_f64(),
            cells + 1,
            *calls as f64 / *tenants as f64
        );
    }
    let denials = server.state("iam").await["quotaDenials"]
        .as_array()
        .map_or(0, Vec::len);
    println!("  429s the contract server answered: {denials}");
    server.assert_on_contract().await;
    Ok(())
}
