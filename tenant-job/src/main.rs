//! `tenant-job ingest|transform|sync --tenant <id>`: one run for one tenant,
//! configured by the environment as a Cloud Run job is (the variables of
//! `job_contract::env`, and no others). Logs are JSON lines
//! on stderr carrying the tenant and run ids; the exit code is 0 when the run
//! succeeded (or a Xero day limit ended it early and cleanly), 1 when it
//! failed, 2 for invalid input.

use std::process::ExitCode;

use clap::Parser;
use tracing::Instrument;

use job_contract::env::{self, JobEnvironment};
use job_contract::summary::RunOutcome;
use job_contract::RunCommand;
use tenant_job::job::{Job, JobConfig};

#[derive(Debug, Parser)]
#[command(
    name = "tenant-job",
    version,
    about = "One ingestion or transformation run for one tenant",
    after_help = after_help()
)]
struct Args {
    #[arg(value_enum)]
    command: RunCommand,
    /// The tenant (3–20 lowercase letters, digits and hyphens); overrides
    /// LEDGERLAKE_TENANT.
    #[arg(long)]
    tenant: Option<String>,
    /// With transform or sync: load every raw page in the bucket from
    /// scratch into emptied raw tables, then build and publish (the
    /// published tables stay readable until then). Safe to run again after
    /// a crash.
    #[arg(long)]
    rebuild: bool,
}

fn after_help() -> String {
    format!(
        "Everything else comes from the environment, and only from these variables: {}.",
        env::NAMES.join(", ")
    )
}

/// The job's environment: the process's, with `--tenant` for the tenant.
fn environment(args: &Args) -> Result<JobEnvironment, String> {
    if let Some(name) = env::NAMES
        .into_iter()
        .find(|n| matches!(std::env::var(n), Err(std::env::VarError::NotUnicode(_))))
    {
        return Err(format!("{name} is not valid Unicode"));
    }
    JobEnvironment::from_env(|name| match (&args.tenant, name) {
        (Some(tenant), env::TENANT) => Some(tenant.clone()),
        _ => std::env::var(name).ok(),
    })
    .map_err(|e| match e {
        job_contract::env::EnvError::Missing(env::TENANT) => {
            format!("{} is not set and no --tenant was given", env::TENANT)
        }
        other => other.to_string(),
    })
}

fn init_logging(filter: Option<&str>) {
    let filter = filter
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    // Cloud Logging's shape, as the control plane's: severity, message, the
    // run span's tenant and run_id flattened and as labels.
    tracing_subscriber::fmt()
        .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
        .event_format(job_contract::logging::CloudLogging::from_env())
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
    // What the job writes into the data directory (warehouse files, objects)
    // is its owner's only: 0600 files, 0700 directories.
    rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o077));
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
    let environment = match environment(&args) {
        Ok(e) => e,
        Err(message) => return usage(&message),
    };
    let command = args.command;
    if args.rebuild && !command.transforms() {
        return usage("--rebuild goes with transform or sync: an ingest loads nothing");
    }
    init_logging(environment.log_filter.as_deref());
    let config = JobConfig {
        rebuild: args.rebuild,
        ..JobConfig::from_environment(environment)
    };
    let (tenant, run_id) = (config.tenant.clone(), config.run_id.clone());
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
