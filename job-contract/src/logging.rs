//! The log format both binaries write in production: one JSON object a line
//! in the shape Cloud Logging reads from a container's output (its
//! "structured logging"), so that the control plane's and the jobs' lines are
//! read, filtered and alerted on the same way:
//!
//! - `severity` in Google's names (DEBUG, INFO, WARNING, ERROR), `message`,
//!   `time` (RFC 3339), `target`;
//! - the fields of the event and of every span it is in, flattened into the
//!   object (an inner span's field wins over an outer one's, the event's over
//!   both);
//! - `logging.googleapis.com/trace` (and `spanId`, `trace_sampled`) from the
//!   fields `trace_id`, `span_id`, `trace_sampled`, as
//!   `projects/<project>/traces/<id>` when `GOOGLE_CLOUD_PROJECT` names the
//!   project (Cloud Logging then links the line to the trace);
//! - `logging.googleapis.com/labels` with `tenant` and `run` (from a `run` or
//!   `run_id` field), so that a tenant's or a run's lines are found by label.
//!
//! Install it with `tracing_subscriber::fmt().fmt_fields(JsonFields::new())
//! .event_format(CloudLogging::from_env())`: the span fields are read as the
//! JSON that `JsonFields` keeps.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The Cloud Logging event format (see the module's documentation).
#[derive(Debug, Clone, Default)]
pub struct CloudLogging {
    /// The project traces belong to, for the trace field's full name.
    project: Option<String>,
}

impl CloudLogging {
    /// Reads the project from `GOOGLE_CLOUD_PROJECT`.
    pub fn from_env() -> Self {
        CloudLogging {
            project: std::env::var("GOOGLE_CLOUD_PROJECT")
                .ok()
                .filter(|p| !p.is_empty()),
        }
    }

    /// One log entry from the event's and its spans' fields.
    fn entry(&self, level: Level, target: &str, mut fields: Map<String, Value>) -> Value {
        if let Some(Value::String(trace)) = fields.remove("trace_id") {
            let trace = match &self.project {
                Some(project) => format!("projects/{project}/traces/{trace}"),
                None => trace,
            };
            fields.insert("logging.googleapis.com/trace".to_owned(), trace.into());
        }
        if let Some(span) = fields.remove("span_id") {
            fields.insert("logging.googleapis.com/spanId".to_owned(), span);
        }
        if let Some(sampled) = fields.remove("trace_sampled") {
            fields.insert("logging.googleapis.com/trace_sampled".to_owned(), sampled);
        }
        let labels: Map<String, Value> = [("tenant", "tenant"), ("run", "run"), ("run", "run_id")]
            .into_iter()
            .filter_map(|(label, field)| {
                let value = match fields.get(field)? {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                Some((label.to_owned(), Value::String(value)))
            })
            .collect();
        if !labels.is_empty() {
            fields.insert(
                "logging.googleapis.com/labels".to_owned(),
                Value::Object(labels),
            );
        }
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        fields.insert("severity".to_owned(), severity(level).into());
        fields.insert("time".to_owned(), time.into());
        fields.insert("target".to_owned(), target.into());
        fields
            .entry("message".to_owned())
            .or_insert_with(|| Value::String(String::new()));
        Value::Object(fields)
    }
}

/// Google's severity names for tracing's levels.
fn severity(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

impl<S> FormatEvent<S, JsonFields> for CloudLogging
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Map::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                // The fmt layer keeps each span's fields, formatted by
                // `JsonFields` as one JSON object.
                if let Some(formatted) = extensions.get::<FormattedFields<JsonFields>>() {
                    if let Ok(Value::Object(map)) = serde_json::from_str(formatted.as_str()) {
                        fields.extend(map);
                    }
                }
            }
        }
        event.record(&mut Fields(&mut fields));
        let metadata = event.metadata();
        let entry = self.entry(*metadata.level(), metadata.target(), fields);
        writeln!(writer, "{entry}")
    }
}

/// Collects an event's fields as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_has_google_names_and_labels() {
        let mut fields = Map::new();
        fields.insert("message".into(), "run ended".into());
        fields.insert("tenant".into(), "acme".into());
        fields.insert("run_id".into(), "r-1".into());
        fields.insert("trace_id".into(), "4bf92f3577b34da6a3ce929d0e0e4736".into());
        fields.insert("span_id".into(), "00f067aa0ba902b7".into());
        let format = CloudLogging {
            project: Some("p1".into()),
        };
        let entry = format.entry(Level::WARN, "control_plane::runs", fields);
        assert_eq!(entry["severity"], "WARNING");
        assert_eq!(entry["message"], "run ended");
        assert_eq!(
            entry["logging.googleapis.com/trace"],
            "projects/p1/traces/4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(entry["logging.googleapis.com/spanId"], "00f067aa0ba902b7");
        assert_eq!(entry["logging.googleapis.com/labels"]["tenant"], "acme");
        assert_eq!(entry["logging.googleapis.com/labels"]["run"], "r-1");
        assert_eq!(entry["tenant"], "acme");
        assert!(entry.get("trace_id").is_none());
        assert!(time::OffsetDateTime::parse(
            entry["time"].as_str().unwrap_or_default(),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok());
    }
}
