//! Jobs: per-tenant job definitions (Cloud Run jobs) and their executions.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::CloudResult;
use crate::naming::Labels;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub name: String,
    pub labels: Labels,
    /// The container image on GCP; the executable's path on the local adapter.
    pub image: String,
    pub args: Vec<String>,
    /// Plain configuration only: secrets reach a job through the secrets port
    /// or through `secret_env`.
    pub env: BTreeMap<String, String>,
    /// Variables filled at each start from secrets of the job's own project
    /// (variable → secret name, its newest version), read as the job's
    /// service account, as Cloud Run's secret references are: values never
    /// enter the definition, and a job without access to a secret does not
    /// start.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, String>,
    /// The service account email the job runs as.
    pub service_account: String,
    pub timeout_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub spec: JobSpec,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionOverrides {
    /// Replaces the job's args when set.
    pub args: Option<Vec<String>>,
    /// Added to (and overriding) the job's env.
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ExecutionState {
    Running,
    Succeeded,
    Failed { message: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    /// Unique per job.
    pub id: String,
    pub job: String,
    #[serde(flatten)]
    pub state: ExecutionState,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

#[async_trait]
pub trait JobRunner: Send + Sync {
    /// Creates the job or updates it to `spec`, waiting out the long-running
    /// operation. An existing job with other owner labels is `AlreadyExists`.
    async fn ensure_job(&self, spec: &JobSpec) -> CloudResult<Job>;
    async fn get_job(&self, name: &str) -> CloudResult<Job>;
    async fn list_jobs(&self, labels: &Labels) -> CloudResult<Vec<Job>>;
    async fn delete_job(&self, name: &str) -> CloudResult<()>;

    /// Starts an execution of the job and returns at once.
    async fn run_job(&self, name: &str, overrides: &ExecutionOverrides) -> CloudResult<Execution>;
    async fn get_execution(&self, job: &str, id: &str) -> CloudResult<Execution>;

    /// Cancels an execution, as Cloud Run's `executions.cancel`: its tasks
    /// (locally, its process) are stopped and it ends as `Failed`. Idempotent:
    /// an execution that has already ended is returned as it ended.
    /// `NotFound` for an unknown execution. The stop may take a while (a
    /// grace period, then a kill): follow `get_execution` until it has ended.
    async fn cancel_execution(&self, job: &str, id: &str) -> CloudResult<Execution>;

    /// The plain environment a definition of `spec` gets on this cloud: the
    /// spec's, and what the adapter adds to every definition (on Google
    /// Cloud, where the job finds its cell). What `tenants export-terraform`
    /// writes, so that a job Terraform manages is the job the reconciler made.
    fn definition_env(&self, spec: &JobSpec) -> BTreeMap<String, String> {
        spec.env.clone()
    }
}
