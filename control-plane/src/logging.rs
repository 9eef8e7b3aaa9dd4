//! Logs go to stderr: text for people by default; with
//! `LEDGERLAKE_LOG_FORMAT=json`, one JSON object a line in the shape Cloud
//! Logging reads (see [`job_contract::logging`], which the tenant job writes
//! too). `RUST_LOG` sets the level (default `warn`).

use job_contract::logging::CloudLogging;
use tracing_subscriber::fmt::format::JsonFields;

/// The environment variable that picks the format (`json`, or text).
pub const FORMAT_ENV: &str = "LEDGERLAKE_LOG_FORMAT";

/// Installs the process's logger from `RUST_LOG` and [`FORMAT_ENV`].
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var(FORMAT_ENV).as_deref() == Ok("json") {
        builder
            .fmt_fields(JsonFields::new())
            .event_format(CloudLogging::from_env())
            .init();
    } else {
        builder.init();
    }
}
