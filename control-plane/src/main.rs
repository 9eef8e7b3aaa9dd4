use std::process::ExitCode;

use clap::Parser;

use control_plane::cli::{self, Cli, CliFailure};

fn main() -> ExitCode {
    // Everything this process creates (the state store, the local cloud's
    // files and folders) is its owner's only: 0600 files, 0700 directories.
    rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o077));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // clap prints help and version to stdout with exit 0, usage errors with exit 2.
        Err(e) => e.exit(),
    };
    control_plane::logging::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliFailure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(CliFailure::Failed(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
