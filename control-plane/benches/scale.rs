//! The control plane at 10,000 tenants (issue 13), on the local adapter with
//! a SQLite store and, when `LEDGERLAKE_TEST_DATABASE_URL` names a
//! PostgreSQL server, a PostgreSQL store (a fresh database, dropped after).
//!
//! 1. Provisioning rate: `LEDGERLAKE_SCALE_RATE_TENANTS` (default 300) fresh
//!    tenants provisioned one after another through the reconciler, then the
//!    same number through the service's controller at each worker count of
//!    `LEDGERLAKE_SCALE_WORKERS` (default `1,2,4,8`), each in a fresh store
//!    and cloud: tenants/s.
//! 2. A population of `LEDGERLAKE_SCALE_TENANTS` (default 10,000) tenants,
//!    provisioned through the controller with `LEDGERLAKE_SCALE_POP_WORKERS`
//!    workers (default 4) on SQLite; measured when the first 1,000 are
//!    Ready and again at the full count. Each tenant is given a Xero
//!    connection (for the keep-alive scan) and a next run 30 days away. On
//!    PostgreSQL the same rows are copied into the database (the cloud's
//!    resources are the same local ones).
//! 3. At each size and on each store: the no-op `reconcile --all` (3
//!    passes), `tenants list` by page (first, middle, last page of 100, and
//!    every tenant by pages of 1,000), `GET /v1/tenants?limit=100` through
//!    the HTTP API, one scheduler tick with nothing due and one with every
//!    tenant due and no call budget (the choice among all of them), and the
//!    token keep-alive's scan (one query) against the two reads per tenant
//!    it replaces.
//!
//! `LEDGERLAKE_SCALE_DIR` keeps the population's data directory between
//! runs (it is provisioned once; sizes below what it holds are skipped).
//! `LEDGERLAKE_SCALE_RATES=0` skips step 1. Run:
//! `cargo bench --workspace --bench scale --profile dev`.

use std::time::{Duration, Instant};

use cloud::naming::TenantId;
use control_plane::controller::{Backoff, Controller};
use control_plane::platform::{Platform, PlatformConfig};
use control_plane::reconciler::{Reconciler, Settings};
use control_plane::runs::Runs;
use control_plane::scheduler::{self, SchedulerSettings};
use control_plane::server::{self, ServeConfig};
use control_plane::service;
use control_plane::store::{DueCursor, Phase, Store, WithoutCells};

const MASTER_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const OPERATOR_TOKEN: &str = "operator-token-for-the-scale-bench-0123";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn tenant(i: usize) -> TenantId {
    TenantId::parse(&format!("scale{i:05}")).expect("tenant id")
}

async fn open(dir: &std::path::Path, database_url: Option<String>) -> anyhow::Result<Platform> {
    Ok(Platform::open(PlatformConfig {
        cloud: Default::default(),
        data_dir: dir.to_path_buf(),
        database_url,
        bucket_prefix: None,
        master_key: Some(MASTER_KEY.to_owned()),
    })
    .await?)
}

fn settings() -> Settings {
    Settings::default()
}

/// A fresh PostgreSQL database on the test server, if there is one.
async fn postgres_database() -> anyhow::Result<Option<(String, String)>> {
    use sqlx::Connection;
    let Ok(admin) = std::env::var("LEDGERLAKE_TEST_DATABASE_URL") else {
        return Ok(None);
    };
    let name = format!("ll_scale_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await?;
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    Ok(Some((format!("{base}/{name}"), name)))
}

async fn drop_database(name: &str) {
    use sqlx::Connection;
    let Ok(admin) = std::env::var("LEDGERLAKE_TEST_DATABASE_URL") else {
        return;
    };
    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
        let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
    }
}

/// Records tenants `from..to` as wanted and has the controller (with
/// `workers`) provision them; returns how long until every one was Ready.
async fn provision_with_workers(
    reconciler: &Reconciler,
    from: usize,
    to: usize,
    workers: usize,
) -> anyhow::Result<Duration> {
    let store = reconciler.store().clone();
    let started = Instant::now();
    let (controller, _guard) = Controller::start(reconciler.clone(), workers, Backoff::default());
    for i in from..to {
        let id = tenant(i);
        store
            .want_tenant_placed(&id, WithoutCells::Unplaced)
            .await?;
        controller.request(&id);
    }
    while !controller.is_idle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let not_ready = store
        .list_tenants()
        .await?
        .into_iter()
        .filter(|t| t.phase != Phase::Ready)
        .count();
    anyhow::ensure!(not_ready == 0, "{not_ready} tenants are not Ready");
    Ok(elapsed)
}

async fn provisioning_rates(database: &str, pg: bool) -> anyhow::Result<()> {
    let n: usize = env_or("LEDGERLAKE_SCALE_RATE_TENANTS", 300);
    let workers: String = env_or("LEDGERLAKE_SCALE_WORKERS", "1,2,4,8".to_owned());
    let fresh = || async {
        let dir = tempfile::tempdir()?;
        let db = if pg { postgres_database().await? } else { None };
        let platform = open(dir.path(), db.as_ref().map(|(url, _)| url.clone())).await?;
        anyhow::Ok((dir, db, platform))
    };

    let (_dir, db, platform) = fresh().await?;
    let reconciler = platform.reconciler(settings());
    let started = Instant::now();
    for i in 0..n {
        let report = reconciler.provision(&tenant(i), "bench").await?;
        anyhow::ensure!(report.is_success(), "{}", report.failure_summary());
    }
    let sequential = n as f64 / started.elapsed().as_secs_f64();
    println!(
        "[{database}] provision {n} tenants, sequential: {:.2} s, {sequential:.1} tenants/s",
        started.elapsed().as_secs_f64()
    );
    platform.store.close().await;
    if let Some((_, name)) = db {
        drop_database(&name).await;
    }

    for w in workers
        .split(',')
        .filter_map(|w| w.trim().parse::<usize>().ok())
    {
        let (_dir, db, platform) = fresh().await?;
        let reconciler = platform.reconciler(settings());
        let took = provision_with_workers(&reconciler, 0, n, w).await?;
        let rate = n as f64 / took.as_secs_f64();
        println!(
            "[{database}] provision {n} tenants, controller with {w} workers: {:.2} s, {rate:.1} tenants/s ({:.2}x sequential)",
            took.as_secs_f64(),
            rate / sequential
        );
        platform.store.close().await;
        if let Some((_, name)) = db {
            drop_database(&name).await;
        }
    }
    Ok(())
}

/// Gives tenants `from..to` a Xero connection and a next run 30 days away.
async fn dress(store: &Store, from: usize, to: usize) -> anyhow::Result<()> {
    let later = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 30 * 86_400_000;
    for i in from..to {
        let id = tenant(i);
        store
            .record_connections(&id, &[(format!("org-{i:05}"), None)])
            .await?;
        store.set_next_run_at(&id, later).await?;
    }
    Ok(())
}

/// Copies the SQLite store's tenants, resources and connections into an
/// empty PostgreSQL store (the same cloud serves both).
async fn copy_into_postgres(sqlite_file: &std::path::Path, pg_url: &str) -> anyhow::Result<()> {
    use sqlx::Row;
    let src = sqlx::SqlitePool::connect(&format!("sqlite://{}", sqlite_file.display())).await?;
    let dst = sqlx::PgPool::connect(pg_url).await?;
    let tenants = sqlx::query(
        "SELECT id, desired, generation, phase, keep_data, message, created_at, updated_at, \
         needs_consent, schedule, next_run_at FROM tenants ORDER BY id",
    )
    .fetch_all(&src)
    .await?;
    for chunk in tenants.chunks(500) {
        let mut tx = dst.begin().await?;
        for r in chunk {
            sqlx::query(
                "INSERT INTO tenants (id, desired, generation, phase, keep_data, message, \
                 created_at, updated_at, needs_consent, schedule, next_run_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
            )
            .bind(r.get::<String, _>("id"))
            .bind(r.get::<String, _>("desired"))
            .bind(r.get::<i64, _>("generation"))
            .bind(r.get::<String, _>("phase"))
            .bind(r.get::<i64, _>("keep_data") != 0)
            .bind(r.get::<Option<String>, _>("message"))
            .bind(r.get::<i64, _>("created_at"))
            .bind(r.get::<i64, _>("updated_at"))
            .bind(r.get::<i64, _>("needs_consent") != 0)
            .bind(r.get::<Option<String>, _>("schedule"))
            .bind(r.get::<Option<i64>, _>("next_run_at"))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    }
    let resources = sqlx::query(
        "SELECT tenant_id, kind, name, status, message, observed_generation, attempts, \
         attempt_generation, last_error, last_transition, created_at FROM resources",
    )
    .fetch_all(&src)
    .await?;
    for chunk in resources.chunks(1000) {
        let mut tx = dst.begin().await?;
        for r in chunk {
            sqlx::query(
                "INSERT INTO resources (tenant_id, kind, name, status, message, observed_generation, \
                 attempts, attempt_generation, last_error, last_transition, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
            )
            .bind(r.get::<String, _>("tenant_id"))
            .bind(r.get::<String, _>("kind"))
            .bind(r.get::<String, _>("name"))
            .bind(r.get::<String, _>("status"))
            .bind(r.get::<Option<String>, _>("message"))
            .bind(r.get::<i64, _>("observed_generation"))
            .bind(r.get::<i64, _>("attempts"))
            .bind(r.get::<i64, _>("attempt_generation"))
            .bind(r.get::<Option<String>, _>("last_error"))
            .bind(r.get::<i64, _>("last_transition"))
            .bind(r.get::<i64, _>("created_at"))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    }
    sqlx::raw_sql(
        "INSERT INTO xero_connections (tenant_id, xero_tenant_id, connected_at) \
         SELECT id, 'org-' || substr(id, 6), 0 FROM tenants ON CONFLICT DO NOTHING; ANALYZE",
    )
    .execute(&dst)
    .await?;
    src.close().await;
    dst.close().await;
    Ok(())
}

/// The best of `runs` timings of `f`, and the last result.
async fn best_of<T, F, Fut>(runs: usize, mut f: F) -> anyhow::Result<(Duration, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let out = f().await?;
        best = best.min(t.elapsed());
        last = Some(out);
    }
    Ok((best, last.expect("at least one run")))
}

/// Every measurement of step 3 on one store.
async fn measure(platform: &Platform, database: &str, n: usize) -> anyhow::Result<()> {
    let store = &platform.store;
    let reconciler = platform.reconciler(settings());
    let label = format!("[{database}, {n} tenants]");

    // The no-op reconcile --all.
    for pass in 1..=3 {
        let t = Instant::now();
        let results = reconciler.reconcile_all().await?;
        let elapsed = t.elapsed();
        let mut changed = 0;
        for r in &results {
            match r {
                Ok(r) => changed += r.changed,
                Err(e) => anyhow::bail!("{e}"),
            }
        }
        anyhow::ensure!(results.len() == n, "{} reports", results.len());
        anyhow::ensure!(changed == 0, "a no-op pass changed {changed} resources");
        println!(
            "{label} no-op reconcile --all, pass {pass}: {:.3} s",
            elapsed.as_secs_f64()
        );
    }

    // Where a pass's time goes: the store's reads of every page, and the
    // listings of the cell.
    let t = Instant::now();
    let mut after: Option<TenantId> = None;
    let mut rows = 0;
    loop {
        let page = store.list_tenants_page(after.as_ref(), 1_000).await?;
        let (Some(first), Some(last)) = (page.first(), page.last()) else {
            break;
        };
        rows += store
            .resources_in_range(&first.id, &last.id)
            .await?
            .values()
            .map(Vec::len)
            .sum::<usize>();
        after = Some(last.id.clone());
    }
    println!(
        "{label}   (reading every page's {rows} resource rows, which a pass skips for marked tenants: {:.3} s)",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let managed = cloud::naming::Labels::from([(
        cloud::naming::MANAGED_BY_LABEL.to_owned(),
        cloud::naming::MANAGED_BY_VALUE.to_owned(),
    )]);
    let cloud = &platform.cloud;
    let _ = tokio::join!(
        cloud.identity.list_service_accounts(&managed),
        cloud.objects.list_buckets(&managed),
        cloud.warehouse.list_datasets(&managed),
        cloud.secrets.list_secrets(&managed),
        cloud.jobs.list_jobs(&managed),
    );
    println!(
        "{label}   (the cell's five listings, which a pass reads once: {:.3} s)",
        t.elapsed().as_secs_f64()
    );

    if env_or("LEDGERLAKE_SCALE_ONLY_PASS", 0) == 1 {
        return Ok(());
    }

    // tenants list, by page.
    let middle = tenant(n / 2);
    let last_page_after = tenant(n - 51);
    for (name, after) in [
        ("first", None),
        ("middle", Some(&middle)),
        ("last", Some(&last_page_after)),
    ] {
        let (took, page) = best_of(5, || async {
            Ok(service::tenants::list_page(store, after, 100).await?)
        })
        .await?;
        println!(
            "{label} tenants list, {name} page of 100 ({} listed): {:.2} ms",
            page.tenants.len(),
            ms(took)
        );
    }
    let (took, all) = best_of(2, || async { Ok(service::tenants::list(store).await?) }).await?;
    anyhow::ensure!(all.len() == n);
    println!(
        "{label} tenants list, every tenant by pages of 1,000: {:.1} ms",
        ms(took)
    );

    // The operator API's page.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    let (state, workers) = server::start(
        platform.cloud.clone(),
        store.clone(),
        platform.reconciler(settings()),
        ServeConfig {
            operator_token: Some(xero::secret::SecretString::new(OPERATOR_TOKEN)),
            ..ServeConfig::closed(addr, base.clone())
        },
    );
    let app = server::router(state);
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    for (name, after) in [("first", None), ("middle", Some(&middle))] {
        let url = match after {
            None => format!("{base}/v1/tenants?limit=100"),
            Some(a) => format!("{base}/v1/tenants?limit=100&after={a}"),
        };
        let (took, body) = best_of(5, || async {
            let r = http.get(&url).bearer_auth(OPERATOR_TOKEN).send().await?;
            anyhow::ensure!(r.status() == 200, "{}", r.status());
            Ok(r.bytes().await?)
        })
        .await?;
        println!(
            "{label} GET /v1/tenants?limit=100, {name} page ({} bytes): {:.2} ms",
            body.len(),
            ms(took)
        );
    }
    serving.abort();
    drop(workers);

    // One scheduler tick: nothing due, then every tenant due with no budget.
    let runs = Runs::new(
        platform.clouds.clone(),
        store.clone(),
        None,
        Default::default(),
    );
    let now = time::OffsetDateTime::now_utc();
    let (took, report) = best_of(5, || async {
        Ok(scheduler::tick(&runs, &SchedulerSettings::default(), now).await?)
    })
    .await?;
    anyhow::ensure!(report.started.is_empty() && report.deferred == 0);
    println!("{label} scheduler tick, none due: {:.2} ms", ms(took));
    let all_due = now + Duration::from_secs(60 * 86_400);
    let no_budget = SchedulerSettings {
        xero_calls_per_tick: 0,
        ..SchedulerSettings::default()
    };
    let (took, report) = best_of(5, || async {
        Ok(scheduler::tick(&runs, &no_budget, all_due).await?)
    })
    .await?;
    anyhow::ensure!(report.deferred == n as u64, "{} deferred", report.deferred);
    println!(
        "{label} scheduler tick, all {n} due, none startable (no call budget): {:.2} ms",
        ms(took)
    );
    // What a tick with the default budget reads before it starts anything:
    // one page of as many due tenants as it may start.
    let default_budget = u64::from(SchedulerSettings::default().xero_calls_per_tick)
        / u64::from(SchedulerSettings::default().calls_per_run);
    let page_of = u32::try_from(default_budget)?;
    let all_due_ms = i64::try_from(all_due.unix_timestamp_nanos() / 1_000_000)?;
    let (took, page) = best_of(5, || async {
        Ok(store
            .due_schedules(all_due_ms, &DueCursor::Start, page_of)
            .await?)
    })
    .await?;
    anyhow::ensure!(page.tenants.len() == page_of as usize);
    println!(
        "{label} scheduler tick, all {n} due: reading the {page_of} the default budget starts: {:.2} ms",
        ms(took)
    );
    let (took, _) = best_of(3, || async { Ok(store.schedules().await?) }).await?;
    println!(
        "{label}   (reading every tenant's schedule, as the tick did before: {:.2} ms)",
        ms(took)
    );

    // The token keep-alive's scan.
    let (took, connected) =
        best_of(5, || async { Ok(store.tenants_to_keep_alive().await?) }).await?;
    anyhow::ensure!(connected.len() == n, "{} connected", connected.len());
    println!(
        "{label} keep-alive scan, one query ({} tenants): {:.2} ms",
        connected.len(),
        ms(took)
    );
    let (took, checked) = best_of(1, || async {
        let mut checked = 0;
        for t in store.list_tenants().await? {
            if !store.needs_consent(&t.id).await? && !store.connections_of(&t.id).await?.is_empty()
            {
                checked += 1;
            }
        }
        Ok(checked)
    })
    .await?;
    anyhow::ensure!(checked == n);
    println!(
        "{label}   (the scan it replaces, two reads per tenant: {:.1} ms)",
        ms(took)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = env_or("LEDGERLAKE_SCALE_TENANTS", 10_000);
    let pop_workers: usize = env_or("LEDGERLAKE_SCALE_POP_WORKERS", 4);
    let pg = std::env::var("LEDGERLAKE_TEST_DATABASE_URL").is_ok();
    if !pg {
        eprintln!("!!! LEDGERLAKE_TEST_DATABASE_URL is not set: SQLite only !!!");
    }

    if env_or("LEDGERLAKE_SCALE_RATES", 1) == 1 {
        provisioning_rates("sqlite", false).await?;
        if pg {
            provisioning_rates("postgres", true).await?;
        }
    }

    let kept = std::env::var("LEDGERLAKE_SCALE_DIR").ok();
    let temp = tempfile::tempdir()?;
    let dir = kept
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let platform = open(&dir, None).await?;
    let reconciler = platform.reconciler(settings());
    let mut have = platform.store.list_tenants().await?.len();
    let mut sizes = vec![1_000.min(n), n];
    sizes.dedup();
    for size in sizes {
        if have > size {
            println!("(the kept directory holds {have} tenants: no figures at {size})");
            continue;
        }
        if have < size {
            let took = provision_with_workers(&reconciler, have, size, pop_workers).await?;
            dress(&platform.store, have, size).await?;
            println!(
                "[sqlite] provision tenants {have}..{size} with {pop_workers} workers: {:.1} s, {:.1} tenants/s",
                took.as_secs_f64(),
                (size - have) as f64 / took.as_secs_f64()
            );
            have = size;
        }
        anyhow::ensure!(
            have == size,
            "the kept directory holds {have} tenants, not {size}"
        );
        measure(&platform, "sqlite", size).await?;
        if pg {
            if let Some((url, name)) = postgres_database().await? {
                let on_pg = open(&dir, Some(url.clone())).await?;
                copy_into_postgres(&dir.join("state.db"), &url).await?;
                measure(&on_pg, "postgres", size).await?;
                on_pg.store.close().await;
                drop_database(&name).await;
            }
        }
    }
    platform.store.close().await;
    Ok(())
}
