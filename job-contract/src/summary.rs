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
    /// The transformation's report (models, rows, data tests, and the
    /// `warnings` list: see [`RunSummary::warnings`]).
    pub transform: Option<serde_json::Value>,
}

impl RunSummary {
    /// The data tests that warned in this run's transformation: the tables
    /// were published, and these say what in them needs a look (facts that
    /// point at reference data Xero did not return). Empty when the run did
    /// not transform, and for summaries written before tests had severities.
    pub fn warnings(&self) -> Vec<TestWarning> {
        self.transform
            .as_ref()
            .map(transform_warnings)
            .unwrap_or_default()
    }
}

/// A data test of severity `warn` that failed: recorded in the run's
/// summary (the transformation report's `warnings` list), while the tables
/// were published anyway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestWarning {
    /// The model tested, e.g. `fct_invoices`.
    pub model: String,
    /// The test's full name, e.g.
    /// `fct_invoices.relationship(contact_id -> dim_contacts.contact_id)`.
    pub test: String,
    /// Rows of the model breaking the rule.
    pub failing_rows: u64,
    /// A few of those rows, each `{column: value}`.
    #[serde(default)]
    pub sample: Vec<serde_json::Value>,
}

/// The `warnings` of a transformation report as a run summary holds it
/// (`RunSummary::transform`, or `/transform` of a summary read as JSON): none
/// when the report has no such list (older jobs) or it is not one.
pub fn transform_warnings(transform: &serde_json::Value) -> Vec<TestWarning> {
    #[derive(Deserialize)]
    struct Report {
        #[serde(default)]
        warnings: Vec<TestWarning>,
    }
    Report::deserialize(transform)
        .map(|r| r.warnings)
        .unwrap_or_default()
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
    /// 429 answers Xero gave (waited out, or the day limit's).
    #[serde(default)]
    pub rate_limited: u64,
    /// Calls the organisation had left of its day limit when the ingest
    /// ended (absent in summaries of older jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day_remaining: Option<u64>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(transform: Option<serde_json::Value>) -> serde_json::Value {
        serde_json::json!({
            "run_id": "run-1",
            "tenant": "acme",
            "command": "transform",
            "outcome": "succeeded",
            "message": null,
            "started_at": "2024-05-01T10:00:00Z",
            "finished_at": "2024-05-01T10:01:00Z",
            "ingest": null,
            "transform": transform,
        })
    }

    #[test]
    fn summaries_without_warnings_still_parse() {
        for transform in [
            None,
            Some(serde_json::json!({"models": [], "tests": []})),
            Some(serde_json::json!("not a report")),
        ] {
            let parsed: RunSummary =
                serde_json::from_value(summary(transform)).expect("an older summary");
            assert!(parsed.warnings().is_empty());
        }
    }

    #[test]
    fn warnings_are_read_from_the_transformation_report() {
        let warning = serde_json::json!({
            "model": "fct_invoices",
            "test": "fct_invoices.relationship(contact_id -> dim_contacts.contact_id)",
            "failing_rows": 34,
            "sample": [{"invoice_id": "i-1", "contact_id": "c-9"}],
        });
        let parsed: RunSummary = serde_json::from_value(summary(Some(serde_json::json!({
            "models": [],
            "warnings": [warning, {"model": "m", "test": "m.t", "failing_rows": 1}],
        }))))
        .expect("summary");
        let warnings = parsed.warnings();
        assert_eq!(warnings.len(), 2);
        assert_eq!(warnings[0].model, "fct_invoices");
        assert_eq!(warnings[0].failing_rows, 34);
        assert_eq!(warnings[0].sample[0]["contact_id"], "c-9");
        assert!(warnings[1].sample.is_empty(), "the sample is optional");
        let round_trip: RunSummary =
            serde_json::from_value(serde_json::to_value(&parsed).expect("encode")).expect("decode");
        assert_eq!(round_trip.warnings(), warnings);
    }
}
