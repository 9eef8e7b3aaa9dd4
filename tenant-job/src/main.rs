//! `tenant-job ingest|transform|sync --tenant <id>`: one run for one tenant,
//! configured by the environment as a Cloud Run job is. Logs are JSON lines
//! on stderr carrying the tenant and run ids; the exit code is 0 when the run
//! succeeded (or a Xero day limit ended it early and cleanly), 1 when it
//! failed, 2 for invalid input.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use tracing::Instrument;

use cloud::naming::{DeploymentPrefix, TenantId};
use tenant_job::job::{Job, JobConfig};
use tenant_job::summary::{Command, RunOutcome};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CommandArg {
    /// Xero → raw pages in the tenant's bucket, incrementally.
    Ingest,
    /// Raw pages → raw dataset → transformed dataset, with data tests.
    Transform,
    /// Ingest, then transform.
    Sync,
}

#[derive(Debug, Parser)]
#[command(
    name = "tenant-job",
    version,
    about = "One ingestion or transformation run for one tenant"
)]
struct Args {
    #[arg(value_enum)]
    command: CommandArg,
    /// The tenant (3–20 lowercase letters, digits and hyphens).
    #[arg(long, env = "LEDGERLAKE_TENANT")]
    tenant: String,
    /// The run id (the control plane's; a Cloud Run execution id otherwise).
    #[arg(long, env = "LEDGERLAKE_RUN_ID")]
    run_id: Option<String>,
    #[arg(long, env = "LEDGERLAKE_DATA_DIR", default_value = ".ledgerlake")]
    data_dir: PathBuf,
    #[arg(long, env = "LEDGERLAKE_BUCKET_PREFIX")]
    bucket_prefix: Option<String>,
    /// The identity the job runs as (set by the jobs adapter).
    #[arg(long, env = "LEDGERLAKE_SERVICE_ACCOUNT")]
    service_account: Option<String>,
    #[arg(long, env = "LEDGERLAKE_XERO_ENDPOINT")]
    xero_endpoint: Option<String>,
    /// Calls per minute per organisation this job allows itself (Xero: 60;
    /// raise only against the sandbox with its limits off).
    #[arg(long, env = "LEDGERLAKE_XERO_PER_MINUTE", default_value_t = 60)]
    xero_per_minute: u32,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn usage(message: &str) -> ExitCode {
    eprintln!("tenant-job: {message}");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging();
    let tenant = match TenantId::parse(&args.tenant) {
        Ok(t) => t,
        Err(e) => return usage(&e.to_string()),
    };
    let bucket_prefix = match args.bucket_prefix.as_deref().map(DeploymentPrefix::parse) {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => return usage(&format!("LEDGERLAKE_BUCKET_PREFIX: {e}")),
    };
    let run_id = args
        .run_id
        .or_else(|| std::env::var("LEDGERLAKE_EXECUTION_ID").ok())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let command = match args.command {
        CommandArg::Ingest => Command::Ingest,
        CommandArg::Transform => Command::Transform,
        CommandArg::Sync => Command::Sync,
    };
    let config = JobConfig {
        tenant: tenant.clone(),
        run_id: run_id.clone(),
        data_dir: args.data_dir,
        master_key: std::env::var("LEDGERLAKE_MASTER_KEY").ok(),
        bucket_prefix,
        service_account: args.service_account,
        xero_endpoint: args.xero_endpoint,
        xero_client_id: std::env::var("LEDGERLAKE_XERO_CLIENT_ID").ok(),
        xero_client_secret: std::env::var("LEDGERLAKE_XERO_CLIENT_SECRET").ok(),
        xero_limits: xero::limits::LimitConfig {
            per_minute: args.xero_per_minute.max(1),
            ..Default::default()
        },
    };
    let span =
        tracing::info_span!("run", tenant = %tenant, run_id = %run_id, command = command.as_str());
    async move {
        let job = match Job::open(config).await {
            Ok(job) => job,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the run");
                eprintln!("tenant-job: tenant {tenant}: {e}");
                return ExitCode::from(1);
            }
        };
        tracing::info!("run started");
        let summary = job.execute(command).await;
        let seconds = (summary.finished_at - summary.started_at).as_seconds_f64();
        match summary.outcome {
            RunOutcome::Succeeded | RunOutcome::Partial => {
                tracing::info!(outcome = ?summary.outcome, seconds, message = summary.message.as_deref().unwrap_or(""), "run finished");
                ExitCode::SUCCESS
            }
            RunOutcome::Failed => {
                let message = summary.message.unwrap_or_default();
                tracing::error!(seconds, error = %message, "run failed");
                eprintln!("tenant-job: tenant {tenant}, run {run_id}: {message}");
                ExitCode::from(1)
            }
        }
    }
    .instrument(span)
    .await
}
