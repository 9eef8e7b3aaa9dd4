//! Sync benchmark: a sandbox company of N invoices (`LEDGERLAKE_BENCH_INVOICES`,
//! default 100,000) with Xero's limits off, ingested and transformed by the
//! job's library exactly as `tenant-job sync` does (each manifest loaded as
//! ingest writes it, then the rest of the transform), on the local cloud.
//! Prints records per second end to end, the time after ingest, and Xero
//! calls against the minimum; then the whole transform on its own (a
//! `--rebuild` of the same bucket: every page loaded, every model built),
//! and the floor: DuckDB alone loading the same NDJSON pages (each record as
//! JSON text with its file) into a database of its own, and the transform's
//! and its loading's ratios to it. Then, with Xero's real limits on, a
//! smaller company synced the same way (`LEDGERLAKE_BENCH_LIMITED_INVOICES`,
//! default 2,000; 0 skips it): 429s met, the ingest against calls ÷ 60 per
//! minute, and what the transform adds after it.
//!
//! With `LEDGERLAKE_BENCH_JOB_RSS` (invoice counts, e.g. `100000,400000`),
//! each such company is then synced by the `tenant-job` binary in a process
//! of its own (the sandbox stays in this one), and its peak RSS is read
//! with `/usr/bin/time -v`: the job's memory, without the sandbox's.
//! (`cargo build --workspace --bins` first: the bench runs the binary as
//! built.) With `LEDGERLAKE_BENCH_JOB_LOG=<path>` its log (`RUST_LOG`
//! applies) is written to `<path>.<invoices>`.
//!
//! `LEDGERLAKE_BENCH_LOAD_BATCH_MIB` sets loading's batch in this process
//! (the job's is 128 MiB); `LEDGERLAKE_LOCAL_DUCKDB_MEMORY_MIB` DuckDB's
//! memory limit, as for the job.
//!
//! With `LEDGERLAKE_BENCH_KEEP=1` the data directory of the first sync is
//! kept (its path is printed), to look at its datasets afterwards.
//!
//! Run: `cargo bench --workspace --bench sync`

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Instant;

use cloud::naming::TenantId;
use tenant_job::job::Job;
use xero::resources::{Paging, Resource};
use xero_sandbox::{Sandbox, SandboxConfig, SandboxLimits};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The fewest calls that can list `records` of `resource`.
fn minimum_calls(resource: Resource, records: u64) -> u64 {
    match resource.paging() {
        Paging::Page => records.div_ceil(1000).max(1),
        // Journals: 100 a call, and one more call to learn there are no more.
        Paging::Offset => records / 100 + 1,
        Paging::None => 1,
    }
}

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

/// Every raw page under `dir` (the local cloud's buckets).
fn pages(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            pages(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "ndjson")
            && path.components().any(|c| c.as_os_str() == "raw")
        {
            out.push(path);
        }
    }
    Ok(())
}

/// The floor: DuckDB alone (its own reader, default settings) loading the
/// pages into a fresh database, each record kept as JSON text with its file.
/// Returns (pages, bytes, records, seconds).
fn floor(dir: &Path) -> anyhow::Result<(usize, u64, u64, f64)> {
    let mut files = Vec::new();
    pages(dir, &mut files)?;
    files.sort();
    let bytes = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()))
        .sum::<std::io::Result<u64>>()?;
    let list = files
        .iter()
        .map(|f| format!("'{}'", f.display().to_string().replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    let db = tempfile::tempdir()?;
    let conn = duckdb::Connection::open(db.path().join("floor.duckdb"))?;
    let t = Instant::now();
    conn.execute_batch(&format!(
        "CREATE TABLE raw AS SELECT filename, json AS record \
         FROM read_ndjson_objects([{list}], filename = true); CHECKPOINT;"
    ))?;
    let secs = t.elapsed().as_secs_f64();
    let records: i64 = conn.query_row("SELECT count(*) FROM raw", [], |r| r.get(0))?;
    Ok((files.len(), bytes, records.max(0) as u64, secs))
}

/// Syncs a company of `invoices` with the `tenant-job` binary in its own
/// process: (seconds, peak RSS in MiB).
async fn job_in_its_own_process(invoices: usize) -> anyhow::Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let sandbox = company(
        invoices,
        SandboxLimits {
            enabled: false,
            per_minute: 1_000_000,
            per_day: 1_000_000,
            app_per_minute: 1_000_000,
            ..SandboxLimits::default()
        },
    )
    .await?;
    let cloud = support::open(dir.path());
    let id = TenantId::parse("rss")?;
    support::connected(&cloud, &sandbox, &id).await;
    // target/debug/deps/sync-… → target/debug/tenant-job
    let exe = std::env::current_exe()?;
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("tenant-job"))
        .ok_or_else(|| anyhow::anyhow!("no tenant-job beside {}", exe.display()))?;
    use job_contract::env as names;
    let started = Instant::now();
    let out = tokio::process::Command::new("/usr/bin/time")
        .arg("-v")
        .arg(&binary)
        .arg("sync")
        .env(names::TENANT, id.as_str())
        .env(names::RUN_ID, "rss-1")
        .env(names::DATA_DIR, dir.path())
        .env(names::MASTER_KEY, support::MASTER_KEY)
        .env(names::XERO_ENDPOINT, sandbox.base_url())
        .env(names::XERO_CLIENT_ID, support::CLIENT_ID)
        .env(names::XERO_CLIENT_SECRET, support::CLIENT_SECRET)
        .env(names::XERO_PER_MINUTE, "100000")
        // As every job definition sets it (JobTemplate::environment).
        .env(
            names::MALLOC_ARENA_MAX,
            names::JOB_MALLOC_ARENAS.to_string(),
        )
        .env(
            names::MALLOC_MMAP_THRESHOLD,
            names::JOB_MALLOC_MMAP_THRESHOLD.to_string(),
        )
        .output()
        .await?;
    let secs = started.elapsed().as_secs_f64();
    let report = String::from_utf8_lossy(&out.stderr);
    if let Some(path) = std::env::var_os("LEDGERLAKE_BENCH_JOB_LOG") {
        std::fs::write(
            format!("{}.{invoices}", path.to_string_lossy()),
            &out.stderr,
        )?;
    }
    anyhow::ensure!(out.status.success(), "tenant-job sync failed: {report}");
    let kib: f64 = report
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no peak RSS in: {report}"))?;
    sandbox.shutdown().await;
    Ok((secs, kib / 1024.0))
}

async fn company(invoices: usize, limits: SandboxLimits) -> anyhow::Result<Sandbox> {
    Ok(Sandbox::start(
        SandboxConfig::new(support::CLIENT_ID, support::CLIENT_SECRET)
            .invoices(invoices)
            .seed(7)
            .limits(limits),
    )
    .await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `RUST_LOG=tenant_job=debug` shows the phases of loading.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let invoices = env_usize("LEDGERLAKE_BENCH_INVOICES", 100_000);
    let limited = env_usize("LEDGERLAKE_BENCH_LIMITED_INVOICES", 2_000);
    // Loading's batch, to measure other sizes than the job's 128 MiB.
    let batch_mib = env_usize("LEDGERLAKE_BENCH_LOAD_BATCH_MIB", 0);
    if batch_mib > 0 {
        tenant_job::transform::set_load_batch_bytes(batch_mib as u64 * 1024 * 1024);
        println!("load batches of {batch_mib} MiB");
    }

    // Limits off.
    let dir = tempfile::tempdir()?;
    if std::env::var_os("LEDGERLAKE_BENCH_KEEP").is_some_and(|v| v == "1") {
        println!("data directory kept: {}", dir.path().display());
    }
    let t = Instant::now();
    let sandbox = company(
        invoices,
        // Off: no 429s, and remaining-calls headers too high to hold the
        // client back.
        SandboxLimits {
            enabled: false,
            per_minute: 1_000_000,
            per_day: 1_000_000,
            app_per_minute: 1_000_000,
            ..SandboxLimits::default()
        },
    )
    .await?;
    println!(
        "sandbox company of {invoices} invoices generated in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let cloud = support::open(dir.path());
    let id = TenantId::parse("bench")?;
    support::connected(&cloud, &sandbox, &id).await;
    let job = Job::open(support::job_config(dir.path(), &sandbox, &id, "bench-1")).await?;

    let started = Instant::now();
    let (ingest, preloaded) = job.ingest_while_loading().await;
    let ingest = ingest?;
    let ingest_secs = started.elapsed().as_secs_f64();
    let preload_passes = preloaded.passes;
    let t = Instant::now();
    let after_ingest = job.transform_after(preloaded).await?;
    let after_ingest_secs = t.elapsed().as_secs_f64();
    let total_secs = started.elapsed().as_secs_f64();

    let records: u64 = ingest.resources.values().map(|c| c.records).sum();
    let minimum: u64 = Resource::ALL
        .iter()
        .map(|r| minimum_calls(*r, ingest.resources.get(r.name()).map_or(0, |c| c.records)))
        .sum();
    println!("full sync, limits off");
    println!("  records ingested      {records}");
    println!(
        "  Xero calls            {} (minimum {minimum})",
        ingest.calls
    );
    println!(
        "  ingest                {ingest_secs:.1} s ({:.0} records/s)",
        records as f64 / ingest_secs
    );
    println!(
        "  loaded during ingest  {} ms in {preload_passes} passes",
        after_ingest.timings.preload_ms
    );
    println!(
        "  after ingest          {after_ingest_secs:.1} s (load {} ms, models {} ms, data tests {} ms, publish {} ms)",
        after_ingest.timings.load_ms,
        after_ingest.timings.build_ms,
        after_ingest.timings.test_ms,
        after_ingest.timings.publish_ms
    );
    println!(
        "  end to end            {total_secs:.1} s ({:.0} records/s; {:.2}x the ingest)",
        records as f64 / total_secs,
        total_secs / ingest_secs
    );
    for m in &after_ingest.models {
        println!("    {:<24} {:>9} rows", m.name, m.rows);
    }
    println!("  peak RSS              {:.0} MiB", peak_rss_mib());
    drop(job);
    // The whole transform on its own: the same bucket loaded from scratch.
    let mut config = support::job_config(dir.path(), &sandbox, &id, "bench-rebuild");
    config.rebuild = true;
    let job = Job::open(config).await?;
    let t = Instant::now();
    let transform = job.transform().await?;
    let transform_secs = t.elapsed().as_secs_f64();
    println!(
        "transform on its own (--rebuild)  {transform_secs:.1} s (load {} ms, models {} ms, data tests {} ms, publish {} ms)",
        transform.timings.load_ms,
        transform.timings.build_ms,
        transform.timings.test_ms,
        transform.timings.publish_ms
    );
    drop(job);
    let (files, bytes, floor_records, floor_secs) = floor(dir.path())?;
    println!(
        "floor: DuckDB alone loading the same {files} pages ({:.0} MiB, {floor_records} records) as JSON text",
        bytes as f64 / (1024.0 * 1024.0)
    );
    println!(
        "  floor                 {floor_secs:.2} s ({:.0} records/s)",
        floor_records as f64 / floor_secs
    );
    let load_secs = transform.timings.load_ms as f64 / 1000.0;
    println!(
        "  transform / floor     {:.1}x (target 2x); loading alone {:.1}x",
        transform_secs / floor_secs,
        load_secs / floor_secs
    );
    sandbox.shutdown().await;
    if std::env::var_os("LEDGERLAKE_BENCH_KEEP").is_some_and(|v| v == "1") {
        let _kept = dir.keep();
    }

    let rss_sizes: Vec<usize> = std::env::var("LEDGERLAKE_BENCH_JOB_RSS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    for n in rss_sizes {
        let (secs, mib) = job_in_its_own_process(n).await?;
        println!(
            "tenant-job sync in its own process, {n} invoices: {secs:.1} s, peak RSS {mib:.0} MiB"
        );
    }

    if limited == 0 {
        return Ok(());
    }
    // Xero's real limits on both sides: 60 calls a minute per organisation.
    let dir = tempfile::tempdir()?;
    let sandbox = company(limited, SandboxLimits::default()).await?;
    let cloud = support::open(dir.path());
    support::connected(&cloud, &sandbox, &id).await;
    let mut config = support::job_config(dir.path(), &sandbox, &id, "bench-2");
    config.xero_limits = xero::limits::LimitConfig::default();
    let job = Job::open(config).await?;
    let started = Instant::now();
    let (ingest, preloaded) = job.ingest_while_loading().await;
    let ingest = ingest?;
    let secs = started.elapsed().as_secs_f64();
    let t = Instant::now();
    let after_ingest = job.transform_after(preloaded).await?;
    let after_secs = t.elapsed().as_secs_f64();
    println!("sync with Xero's limits on ({limited} invoices)");
    println!("  Xero calls            {}", ingest.calls);
    println!(
        "  429s met              minute {}, day {}",
        sandbox.rate_limited("minute"),
        sandbox.rate_limited("day")
    );
    // A rolling window of 60 a minute lets calls through in bursts of 60:
    // call k (from 1) cannot go before minute ⌊(k − 1) / 60⌋.
    let floor = (ingest.calls.saturating_sub(1) / 60 * 60) as f64;
    println!("  ingest                {secs:.1} s (the window allows no less than {floor:.0} s)");
    println!(
        "  loaded during ingest  {} ms; after ingest {after_secs:.1} s (load {} ms, models {} ms)",
        after_ingest.timings.preload_ms,
        after_ingest.timings.load_ms,
        after_ingest.timings.build_ms
    );
    Ok(())
}
