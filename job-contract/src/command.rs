//! What a run does: `tenant-job <command>`. One type and one spelling for
//! the job's command line, the control plane's CLI and API, the state store's
//! `runs.command` column and the run summary.

use std::fmt;
use std::str::FromStr;

use cloud::naming::{self, TenantId};
use serde::{Deserialize, Serialize};

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum RunCommand {
    /// Xero into raw pages in the tenant's bucket, incrementally.
    Ingest,
    /// The bucket's raw pages into the raw and transformed datasets, with data tests.
    Transform,
    /// Ingest, then transform.
    Sync,
}

/// A command name that is none of `ingest`, `transform`, `sync`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown command {0:?}: use ingest, transform or sync")]
pub struct UnknownCommand(pub String);

impl RunCommand {
    pub const ALL: [RunCommand; 3] = [RunCommand::Ingest, RunCommand::Transform, RunCommand::Sync];

    /// The one spelling: `ingest`, `transform`, `sync`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunCommand::Ingest => "ingest",
            RunCommand::Transform => "transform",
            RunCommand::Sync => "sync",
        }
    }

    /// Whether the run reads Xero (and so needs the tenant's consent).
    pub fn reads_xero(self) -> bool {
        matches!(self, RunCommand::Ingest | RunCommand::Sync)
    }

    /// Whether the run transforms the raw pages.
    pub fn transforms(self) -> bool {
        matches!(self, RunCommand::Transform | RunCommand::Sync)
    }

    /// Which of the tenant's job definitions carries the run: the ingest job
    /// (which holds the Xero settings) for runs that read Xero, the transform
    /// job otherwise.
    pub fn job_name(self, tenant: &TenantId) -> String {
        if self.reads_xero() {
            naming::ingest_job(tenant)
        } else {
            naming::transform_job(tenant)
        }
    }

    /// The job's command line for this run of `tenant`.
    pub fn args(self, tenant: &TenantId) -> Vec<String> {
        vec![
            self.as_str().to_owned(),
            "--tenant".to_owned(),
            tenant.to_string(),
        ]
    }
}

impl fmt::Display for RunCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunCommand {
    type Err = UnknownCommand;

    fn from_str(s: &str) -> Result<Self, UnknownCommand> {
        RunCommand::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCommand(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn one_spelling_everywhere() {
        for c in RunCommand::ALL {
            let text = c.as_str();
            assert_eq!(c.to_string(), text);
            assert_eq!(text.parse::<RunCommand>(), Ok(c));
            assert_eq!(
                serde_json::to_value(c).ok(),
                Some(serde_json::Value::String(text.to_owned()))
            );
            assert_eq!(
                serde_json::from_value::<RunCommand>(serde_json::json!(text)).ok(),
                Some(c)
            );
            let value = c.to_possible_value().map(|v| v.get_name().to_owned());
            assert_eq!(value.as_deref(), Some(text));
        }
        let err = "Sync".parse::<RunCommand>().err();
        assert_eq!(err, Some(UnknownCommand("Sync".to_owned())));
    }

    #[test]
    fn runs_that_read_xero_go_to_the_ingest_job() {
        let t = TenantId::parse("acme").expect("id");
        assert_eq!(RunCommand::Sync.job_name(&t), naming::ingest_job(&t));
        assert_eq!(RunCommand::Ingest.job_name(&t), naming::ingest_job(&t));
        assert_eq!(
            RunCommand::Transform.job_name(&t),
            naming::transform_job(&t)
        );
        assert_eq!(RunCommand::Sync.args(&t), ["sync", "--tenant", "acme"]);
        assert!(!RunCommand::Transform.reads_xero());
        assert!(RunCommand::Sync.transforms() && !RunCommand::Ingest.transforms());
    }
}
