//! `xero-sandbox`: a local Xero (identity, connections, Accounting API) over
//! deterministic demo books. Prints `xero-sandbox listening on <url>` on
//! stdout once it serves, then one `organisation <id> <name>` line per
//! organisation.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use xero::secret::SecretString;
use xero_sandbox::wire;
use xero_sandbox::{FaultSettings, Sandbox, SandboxConfig, SandboxLimits, WebhookTarget};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnOff {
    On,
    Off,
}

/// A local Xero for tests, benchmarks and demos.
#[derive(Debug, Parser)]
#[command(name = "xero-sandbox", version)]
struct Args {
    /// Port to listen on (0 = pick a free port and print it).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address to listen on.
    #[arg(long, alias = "host", default_value = "127.0.0.1")]
    listen: IpAddr,
    /// The URL clients use, when not http://<listen>:<port> (e.g. behind a proxy).
    #[arg(long)]
    public_url: Option<String>,
    /// The app's client id.
    #[arg(long, env = "XERO_SANDBOX_CLIENT_ID")]
    client_id: String,
    /// The app's client secret.
    #[arg(long, env = "XERO_SANDBOX_CLIENT_SECRET", hide_env_values = true)]
    client_secret: String,
    /// Registered redirect URIs (repeatable; none = any http(s) URI).
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// Seed of the demo books.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Invoices per organisation.
    #[arg(long, default_value_t = 1_000)]
    invoices: usize,
    /// Organisations.
    #[arg(long, default_value_t = 1)]
    organisations: usize,
    /// Approve consents at once (redirect instead of the approve page).
    #[arg(long)]
    auto_approve: bool,
    /// The books end before this day (YYYY-MM-DD; default today, UTC).
    #[arg(long, value_parser = parse_date)]
    as_of: Option<time::Date>,
    /// Enforce Xero's rate limits (the headers are sent either way).
    #[arg(long, value_enum, default_value = "on")]
    rate_limits: OnOff,
    /// Calls in flight per organisation.
    #[arg(long, default_value_t = wire::MAX_IN_FLIGHT)]
    limit_in_flight: usize,
    /// Calls per minute per organisation.
    #[arg(long, default_value_t = wire::PER_MINUTE)]
    limit_minute: u32,
    /// Calls per day per organisation.
    #[arg(long, default_value_t = wire::PER_DAY)]
    limit_day: u32,
    /// Calls per minute for the app.
    #[arg(long, default_value_t = wire::APP_PER_MINUTE)]
    limit_app_minute: u32,
    /// Access-token lifetime in seconds.
    #[arg(long, default_value_t = wire::ACCESS_TOKEN_TTL_SECS)]
    access_token_ttl: u64,
    /// Grace period of a rotated refresh token, in seconds.
    #[arg(long, default_value_t = wire::REFRESH_GRACE_SECS)]
    refresh_grace: u64,
    /// Where to POST webhook events.
    #[arg(long, requires = "webhook_key")]
    webhook_url: Option<String>,
    /// The webhook signing key.
    #[arg(
        long,
        env = "XERO_SANDBOX_WEBHOOK_KEY",
        hide_env_values = true,
        requires = "webhook_url"
    )]
    webhook_key: Option<String>,
    /// Share of API calls answered with a 5xx.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// The 5xx status of failed calls.
    #[arg(long, default_value_t = 503)]
    fail_status: u16,
    /// Share of API calls answered slowly.
    #[arg(long, default_value_t = 0.0)]
    slow_rate: f64,
    /// Delay of slow calls, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    slow_ms: u64,
    /// Share of API calls whose connection drops.
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
}

fn parse_date(s: &str) -> Result<time::Date, String> {
    time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|e| format!("expected YYYY-MM-DD: {e}"))
}

fn rate(name: &str, v: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("--{name} must be between 0 and 1"))
    }
}

fn config(a: Args) -> Result<SandboxConfig, String> {
    if !(500..=599).contains(&a.fail_status) {
        return Err("--fail-status must be a 5xx status".into());
    }
    let mut c = SandboxConfig::new(a.client_id, a.client_secret);
    c.listen = SocketAddr::new(a.listen, a.port);
    c.public_url = a.public_url;
    c.redirect_uris = a.redirect_uris;
    c.seed = a.seed;
    c.invoices = a.invoices;
    c.organisations = a.organisations;
    c.auto_approve = a.auto_approve;
    c.as_of = a.as_of;
    c.access_token_ttl = Duration::from_secs(a.access_token_ttl);
    c.refresh_grace = Duration::from_secs(a.refresh_grace);
    c.limits = SandboxLimits {
        enabled: a.rate_limits == OnOff::On,
        max_in_flight: a.limit_in_flight,
        per_minute: a.limit_minute,
        per_day: a.limit_day,
        app_per_minute: a.limit_app_minute,
        ..SandboxLimits::default()
    };
    c.faults = FaultSettings {
        fail_rate: rate("fail-rate", a.fail_rate)?,
        fail_status: Some(a.fail_status),
        slow_rate: rate("slow-rate", a.slow_rate)?,
        slow_ms: a.slow_ms,
        drop_rate: rate("drop-rate", a.drop_rate)?,
        ..FaultSettings::default()
    };
    if let (Some(url), Some(key)) = (a.webhook_url, a.webhook_key) {
        c.webhook = Some(WebhookTarget {
            url,
            key: SecretString::new(key),
        });
    }
    Ok(c)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match config(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xero-sandbox: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let invoices = config.invoices;
    let sandbox = match Sandbox::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("xero-sandbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        invoices,
        ready_ms = started.elapsed().as_millis() as u64,
        "demo books generated"
    );
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "xero-sandbox listening on {}", sandbox.base_url());
    for (id, name) in sandbox.organisations() {
        let _ = writeln!(out, "organisation {id} {name}");
    }
    let _ = out.flush();
    drop(out);
    wait_for_signal().await;
    tracing::info!("shutting down");
    sandbox.shutdown().await;
    ExitCode::SUCCESS
}
