//! The query service's offline path on a large tenant, HTTP included:
//! latency over a question set (p50, p99), the guard's cost per query, and
//! throughput with concurrent clients. Run with
//! `cargo bench --workspace --bench query` (release build); the figures go
//! to BENCHMARKS.md. Settings: `LEDGERLAKE_BENCH_INVOICES` (100,000),
//! `LEDGERLAKE_BENCH_CLIENTS` (50), `LEDGERLAKE_BENCH_SECONDS` (20),
//! `LEDGERLAKE_BENCH_ROUNDS` (5).

#[path = "../../control-plane/tests/support/mod.rs"]
mod control_support;

#[path = "../../tenant-job/tests/support/mod.rs"]
mod job_support;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud::naming::TenantId;
use cloud::ports::Credential;
use control_plane::platform::{Platform, PlatformConfig};
use control_plane::server::{self, QuerySettings, ServeConfig};
use control_plane::tokens::write_token_set;
use query::guard::{admit, Dialect, GuardPolicy};
use serde_json::{json, Value};
use tenant_job::job::Job;
use time::macros::date;
use xero::secret::SecretString;
use xero_sandbox::{Sandbox, SandboxConfig, SandboxLimits};

/// Questions of every kind the offline planner answers.
const QUESTIONS: &[&str] = &[
    "What was our revenue this year?",
    "Top 10 customers by revenue last quarter",
    "revenue by month this year",
    "revenue by quarter last year",
    "expenses by supplier this year",
    "top 5 suppliers by spend last quarter",
    "How much do customers owe us?",
    "overdue receivables by customer",
    "what do we owe suppliers",
    "overdue payables",
    "cash received this month",
    "cash paid by month this year",
    "cash received vs last year this quarter",
    "invoice count by month last year",
    "number of bills last quarter",
    "average invoice value this year",
    "average invoice value by quarter this year",
    "how many customers did we have last year",
    "distinct suppliers this year",
    "average days to pay this year",
    "credit notes issued this year",
    "net revenue last year",
    "units sold by item this year",
    "revenue by item last quarter",
    "revenue by account this year",
    "gross margin last quarter",
    "bank balance movement this month",
    "revenue in USD this year",
    "revenue including tax last month",
    "revenue by customer share of total this year",
    "revenue last 30 days",
    "revenue last 6 months by month",
    "revenue since March",
    "revenue in Q2",
    "revenue between 2026-01-01 and 2026-03-31",
    "revenue this financial year",
    "sales by status this year",
    "revenue by currency this year",
    "bottom 5 customers by revenue this year",
    "revnue by custmer last month",
];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn ask(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    question: &str,
) -> anyhow::Result<Value> {
    let resp = http
        .post(format!("{base}/v1/query"))
        .bearer_auth(token)
        .json(&json!({"question": question, "as_of": "2026-11-30"}))
        .send()
        .await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    anyhow::ensure!(status.is_success(), "{question}: {status} {body}");
    Ok(body)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let invoices = env_usize("LEDGERLAKE_BENCH_INVOICES", 100_000);
    let clients = env_usize("LEDGERLAKE_BENCH_CLIENTS", 50);
    let seconds = env_usize("LEDGERLAKE_BENCH_SECONDS", 20) as u64;
    let rounds = env_usize("LEDGERLAKE_BENCH_ROUNDS", 5);

    // A large company, synced in process exactly as `tenant-job sync` does.
    let dir = tempfile::tempdir()?;
    if std::env::var_os("LEDGERLAKE_BENCH_KEEP").is_some() {
        println!("data directory {} (kept)", dir.path().display());
    }
    let t = Instant::now();
    let sandbox = Sandbox::start(
        SandboxConfig::new(job_support::CLIENT_ID, job_support::CLIENT_SECRET)
            .invoices(invoices)
            .seed(7)
            .as_of(date!(2026 - 11 - 30))
            .limits(SandboxLimits {
                enabled: false,
                per_minute: 1_000_000,
                per_day: 1_000_000,
                app_per_minute: 1_000_000,
                ..SandboxLimits::default()
            }),
    )
    .await?;
    println!(
        "sandbox company of {invoices} invoices generated in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let platform = Platform::open(PlatformConfig {
        cloud: Default::default(),
        data_dir: dir.path().to_path_buf(),
        database_url: None,
        bucket_prefix: None,
        master_key: Some(job_support::MASTER_KEY.to_owned()),
    })
    .await?;
    let id = TenantId::parse("bench")?;
    let report = platform
        .reconciler(control_support::fast_settings())
        .provision(&id, "bench")
        .await?;
    anyhow::ensure!(report.is_success(), "provisioning failed: {report:?}");
    let tokens = sandbox.issue_tokens(None);
    write_token_set(&platform.cloud, &Credential::Platform, &id, &tokens).await?;
    let t = Instant::now();
    let job = Job::open(job_support::job_config(
        dir.path(),
        &sandbox,
        &id,
        "bench-1",
    ))
    .await?;
    job.ingest().await?;
    job.transform().await?;
    drop(job);
    println!("synced in {:.1} s", t.elapsed().as_secs_f64());
    sandbox.shutdown().await;

    // The service, as `control-plane serve` runs it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let mut limits = server::ServeLimits::default();
    limits.operator_concurrency = limits.operator_concurrency.max(clients * 2);
    let config = ServeConfig {
        operator_token: Some(SecretString::new("bench-operator")),
        limits,
        query: Some(QuerySettings::default()),
        ..ServeConfig::closed(listener.local_addr()?, base.clone())
    };
    let (state, workers) = server::start(
        platform.cloud.clone(),
        platform.store.clone(),
        platform.reconciler(control_support::fast_settings()),
        config,
    );
    let app = server::router(state);
    tokio::spawn(async move {
        let _workers = workers;
        axum::serve(listener, app).await
    });
    let (_, secret) = platform
        .store
        .issue_api_token(&id, "bench", "bench", None)
        .await?;
    let token = secret.expose_secret().to_owned();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients * 2)
        .build()?;

    // Warm: the tenant's vocabulary is read once, then cached.
    let mut sqls = Vec::new();
    let mut declined = Vec::new();
    for q in QUESTIONS {
        let a = ask(&http, &base, &token, q).await?;
        if a["answered"] == true {
            sqls.push(a["sql"].as_str().unwrap_or_default().to_owned());
        } else {
            declined.push(format!("{q}: {}", a["explanation"]));
        }
    }
    println!(
        "{} questions, {} answered{}",
        QUESTIONS.len(),
        sqls.len(),
        if declined.is_empty() {
            String::new()
        } else {
            format!(", declined:\n  {}", declined.join("\n  "))
        }
    );

    // One client: end-to-end latency over the set.
    let mut latencies = Vec::new();
    let mut slowest: Vec<(Duration, &str)> = Vec::new();
    let mut steps = [0u64; 4];
    for _ in 0..rounds {
        for q in QUESTIONS {
            let t = Instant::now();
            let a = ask(&http, &base, &token, q).await?;
            let d = t.elapsed();
            latencies.push(d);
            slowest.push((d, q));
            for (i, step) in ["plan_ms", "guard_ms", "execute_ms", "total_ms"]
                .iter()
                .enumerate()
            {
                steps[i] += a["timings_ms"][step].as_u64().unwrap_or(0);
            }
        }
    }
    let n = latencies.len().max(1) as f64;
    println!(
        "mean engine steps: plan {:.1} ms, guard {:.1} ms, execute {:.1} ms, engine total {:.1} ms",
        steps[0] as f64 / n,
        steps[1] as f64 / n,
        steps[2] as f64 / n,
        steps[3] as f64 / n
    );
    latencies.sort();
    slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
    slowest.dedup_by(|a, b| a.1 == b.1);
    println!(
        "one client, {} requests: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.9)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0)),
    );
    for (d, q) in slowest.iter().take(5) {
        println!("  slowest: {:.1} ms  {q}", ms(*d));
    }

    // The guard alone, over the SQL those answers ran.
    let policy = GuardPolicy::new("transformed_bench", None, 1000);
    let mut guard = Vec::new();
    for sql in &sqls {
        let mut runs = Vec::with_capacity(200);
        for _ in 0..200 {
            let t = Instant::now();
            let admitted = admit(black_box(sql), Dialect::DuckDb, &policy);
            runs.push(t.elapsed());
            black_box(admitted).map_err(|r| anyhow::anyhow!("guard refused {sql}: {r}"))?;
        }
        runs.sort();
        guard.push(percentile(&runs, 0.5));
    }
    guard.sort();
    println!(
        "guard per query (median of 200 runs each, over {} queries): p50 {:.0} µs, max {:.0} µs",
        guard.len(),
        percentile(&guard, 0.5).as_secs_f64() * 1e6,
        percentile(&guard, 1.0).as_secs_f64() * 1e6,
    );

    // Many clients at once.
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let started = Instant::now();
    for c in 0..clients {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        let (stop, errors) = (stop.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                let q = QUESTIONS[i % QUESTIONS.len()];
                i += 1;
                let t = Instant::now();
                match ask(&http, &base, &token, q).await {
                    Ok(_) => times.push(t.elapsed()),
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("error under load: {e}");
                        }
                    }
                }
            }
            times
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let wall = started.elapsed().as_secs_f64();
    all.sort();
    println!(
        "{clients} clients for {wall:.1} s: {} answers, {:.0} answers/s, {} errors; p50 {:.1} ms, p99 {:.1} ms",
        all.len(),
        all.len() as f64 / wall,
        errors.load(Ordering::Relaxed),
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99)),
    );
    println!("peak RSS {:.0} MiB", peak_rss_mib());
    if std::env::var_os("LEDGERLAKE_BENCH_KEEP").is_some() {
        let _ = dir.keep();
    }
    Ok(())
}
