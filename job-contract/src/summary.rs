//! What a run leaves behind for the control plane: `runs/<run-id>.json` in
//! the tenant's bucket, written at the end of every run (also a failed one).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use cloud::ports::Credential;
use cloud::{Cloud, CloudError};

use crate::command::RunCommand;
use crate::raw;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Succeeded,
    /// Xero's day limit stopped the ingest early; the next run resumes.
    Partial,
    Failed,
}

/// `runs/<run-id>.json` in the tenant's bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_id: String,
    pub tenant: String,
    pub command: RunCommand,
    pub outcome: RunOutcome,
    pub message: Option<String>,
    #[serde(default)]
    pub needs_consent: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    pub ingest: Option<IngestReport>,
    /// The transformation's report (models, rows, data tests).
    pub transform: Option<serde_json::Value>,
}

/// What one resource's ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceCounts {
    pub records: u64,
    pub pages: u32,
}

/// What an ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestReport {
    /// Per resource name.
    pub resources: BTreeMap<String, ResourceCounts>,
    /// Xero API calls made.
    pub calls: u64,
    /// Set when the organisation's day limit ended the run early: resources
    /// not yet ingested are picked up by the next run.
    pub stopped_by_day_limit: Option<DayLimitStop>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayLimitStop {
    pub resource: String,
    pub retry_after_secs: u64,
}

/// Reads a run's summary from the tenant's bucket (the control plane's view
/// of what a finished run did).
pub async fn read_summary(
    cloud: &Cloud,
    cred: &Credential,
    bucket: &str,
    run_id: &str,
) -> Result<RunSummary, CloudError> {
    let key = raw::run_summary_key(run_id);
    let bytes = cloud.objects.get_object(cred, bucket, &key).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        CloudError::permanent(format!("object {key}"), format!("not a run summary: {e}"))
    })
}
