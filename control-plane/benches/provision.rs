//! Provisioning benchmark on the local adapter: provisions N tenants (default
//! 1,000; `LEDGERLAKE_BENCH_TENANTS`) one after another, then times no-op
//! `reconcile --all` passes over all of them. Prints tenants per second, p50
//! and p99 per tenant, and the process's peak resident memory.
//!
//! Run: `cargo bench -p control-plane --bench provision`

use std::time::{Duration, Instant};

use cloud::naming::TenantId;
use control_plane::platform::{Platform, PlatformConfig};
use control_plane::reconciler::Settings;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Peak resident set size (VmHWM) in MiB, from the kernel's own accounting.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("LEDGERLAKE_BENCH_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir()?;
    let platform = Platform::open(PlatformConfig {
        cloud: Default::default(),
        data_dir: dir.path().to_path_buf(),
        database_url: None,
        bucket_prefix: None,
        master_key: Some("11".repeat(32)),
    })
    .await?;
    let reconciler = platform.reconciler(Settings::default());

    let mut latencies = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let id = TenantId::parse(&format!("bench{i:05}"))?;
        let t = Instant::now();
        let report = reconciler.provision(&id, "bench").await?;
        anyhow::ensure!(report.is_success(), "{}", report.failure_summary());
        latencies.push(t.elapsed());
    }
    let total = started.elapsed();
    latencies.sort();
    println!("provision {n} tenants (local adapter, SQLite store, sequential)");
    println!("  total            {:.2} s", total.as_secs_f64());
    println!("  tenants/s        {:.1}", n as f64 / total.as_secs_f64());
    println!(
        "  p50 per tenant   {:.2} ms",
        ms(percentile(&latencies, 0.50))
    );
    println!(
        "  p99 per tenant   {:.2} ms",
        ms(percentile(&latencies, 0.99))
    );
    println!(
        "  max per tenant   {:.2} ms",
        ms(percentile(&latencies, 1.0))
    );

    for pass in 1..=3 {
        let t = Instant::now();
        let results = reconciler.reconcile_all().await?;
        let elapsed = t.elapsed();
        let mut changed = 0;
        for r in results {
            changed += r?.changed;
        }
        anyhow::ensure!(changed == 0, "a no-op pass changed {changed} resources");
        println!(
            "no-op reconcile --all over {n} tenants, pass {pass}: {:.3} s",
            elapsed.as_secs_f64()
        );
    }
    println!("peak RSS         {:.1} MiB", peak_rss_mib());
    Ok(())
}
