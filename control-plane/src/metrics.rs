//! The process's Prometheus metrics: one registry for the whole process
//! (counters are process facts, like Prometheus' own client libraries keep
//! them), recorded where things happen and rendered by `GET /metrics` in the
//! Prometheus text format (0.0.4).
//!
//! Every label has a bounded set of values: route templates, never raw paths
//! (which carry tenant and run ids); a few known methods, anything else
//! "other"; outcomes and statuses from closed enums. Tenants by phase are not
//! counted here but read from the state store on each scrape, so that every
//! replica reports the same truth.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::store::{Phase, RunCommand, RunStatus, RunTrigger};

/// The `Content-Type` of what [`Metrics::render`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    class: &'static str,
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpDurationLabels {
    class: &'static str,
    route: String,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabels {
    quota: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunStartLabels {
    command: &'static str,
    trigger: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunEndLabels {
    command: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuestionLabels {
    outcome: &'static str,
    generator: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// From 5 ms to about 40 s: HTTP requests, questions.
fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// From 50 ms to about 7 minutes: reconcile passes.
fn pass_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 14))
}

/// From 10 s to about 11 hours: runs of the tenant job.
fn run_buckets() -> Histogram {
    Histogram::new(exponential_buckets(10.0, 2.0, 13))
}

/// What the process counts. Obtain it with [`metrics`].
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<HttpDurationLabels>,
    reconcile_passes: Family<OutcomeLabels, Counter>,
    reconcile_duration: HistogramFamily<OutcomeLabels>,
    runs_started: Family<RunStartLabels, Counter>,
    runs_ended: Family<RunEndLabels, Counter>,
    run_duration: HistogramFamily<RunEndLabels>,
    questions: Family<QuestionLabels, Counter>,
    question_duration: HistogramFamily<QuestionLabels>,
    tenants: Family<PhaseLabels, Gauge>,
    tenants_needing_consent: Gauge,
    store_up: Gauge,
    token_refreshes: Family<OutcomeLabels, Counter>,
    controller_tenants: Family<StateLabels, Gauge>,
    scheduler_ticks: Counter,
    scheduled_tenants: Family<OutcomeLabels, Counter>,
    cloud_calls: Family<QuotaLabels, Counter>,
    cloud_retries: Family<QuotaLabels, Counter>,
    /// Serialises copying the cloud adapter's counts (two scrapes at once
    /// would add the same calls twice).
    cloud_sync: std::sync::Mutex<()>,
    xero_calls: Counter,
    xero_rate_limited: Counter,
    xero_day_limit_stops: Counter,
    xero_day_remaining: Histogram,
}

/// The process's metrics, created on first use.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// How a reconcile pass ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassOutcome {
    /// Every resource is as planned.
    Settled,
    /// A resource failed; the tenant is retried after a backoff.
    NotSettled,
    /// The pass could not run (the lease is held elsewhere, the store failed).
    Error,
    /// The tenant was gone (torn down meanwhile).
    Gone,
}

impl PassOutcome {
    fn as_str(self) -> &'static str {
        match self {
            PassOutcome::Settled => "settled",
            PassOutcome::NotSettled => "not_settled",
            PassOutcome::Error => "error",
            PassOutcome::Gone => "gone",
        }
    }
}

/// The `method` label: the methods the API uses, anything else "other", so
/// that a client inventing methods cannot grow the series without bound.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ledgerlake");
        let m = Metrics {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(request_buckets),
            reconcile_passes: Family::default(),
            reconcile_duration: Family::new_with_constructor(pass_buckets),
            runs_started: Family::default(),
            runs_ended: Family::default(),
            run_duration: Family::new_with_constructor(run_buckets),
            questions: Family::default(),
            question_duration: Family::new_with_constructor(request_buckets),
            tenants: Family::default(),
            tenants_needing_consent: Gauge::default(),
            store_up: Gauge::default(),
            token_refreshes: Family::default(),
            controller_tenants: Family::default(),
            scheduler_ticks: Counter::default(),
            scheduled_tenants: Family::default(),
            cloud_calls: Family::default(),
            cloud_retries: Family::default(),
            cloud_sync: std::sync::Mutex::new(()),
            xero_calls: Counter::default(),
            xero_rate_limited: Counter::default(),
            xero_day_limit_stops: Counter::default(),
            // An organisation's day is 5,000 calls: how close runs end to it.
            xero_day_remaining: Histogram::new([
                0.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
            ]),
            registry: Registry::default(),
        };
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The running build (always 1)", build);
        registry.register(
            "http_requests",
            "HTTP requests answered, by route class, route template, method and status",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (to the response head), by route class, route template and method",
            m.http_duration.clone(),
        );
        registry.register(
            "reconcile_passes",
            "Reconcile passes over one tenant, by outcome (settled, not_settled, error, gone)",
            m.reconcile_passes.clone(),
        );
        registry.register(
            "reconcile_pass_duration_seconds",
            "Time of one reconcile pass, by outcome",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "runs_started",
            "Runs of the tenant job started, by command and trigger",
            m.runs_started.clone(),
        );
        registry.register(
            "runs_ended",
            "Runs of the tenant job that ended, by command and status (succeeded, partial, failed)",
            m.runs_ended.clone(),
        );
        registry.register(
            "run_duration_seconds",
            "Time from a run's record to its end, by command and status",
            m.run_duration.clone(),
        );
        registry.register(
            "questions",
            "Questions asked, by outcome (answered, declined, refused, failed) and generator (offline, llm, none)",
            m.questions.clone(),
        );
        registry.register(
            "question_duration_seconds",
            "Time to answer a question, by outcome and generator",
            m.question_duration.clone(),
        );
        registry.register(
            "tenants",
            "Tenants by phase, read from the state store at each scrape",
            m.tenants.clone(),
        );
        registry.register(
            "tenants_needing_consent",
            "Tenants whose Xero connection must be consented again, read at each scrape",
            m.tenants_needing_consent.clone(),
        );
        registry.register(
            "state_store_up",
            "1 when the state store answered this scrape's read, 0 when it did not",
            m.store_up.clone(),
        );
        registry.register(
            "token_refreshes",
            "Refreshes of a tenant's Xero token set by this process, by outcome (refreshed, needs_consent, failed)",
            m.token_refreshes.clone(),
        );
        registry.register(
            "controller_tenants",
            "Tenants in this process's controller, by state (queued, running, backing_off), read at each scrape",
            m.controller_tenants.clone(),
        );
        registry.register(
            "scheduler_ticks",
            "Scheduler ticks this process ran (Cloud Scheduler's calls, or its own locally)",
            m.scheduler_ticks.clone(),
        );
        registry.register(
            "scheduler_tenants",
            "Due tenants seen by the scheduler's ticks, by outcome: started, deferred (the Xero call budget was spent) or skipped (not ready, needs consent, a run in progress)",
            m.scheduled_tenants.clone(),
        );
        registry.register(
            "cloud_api_calls",
            "Calls this process made to the cloud's APIs (every attempt), by the quota they count against (gcp adapter only)",
            m.cloud_calls.clone(),
        );
        registry.register(
            "cloud_api_retries",
            "Calls repeated because the cloud answered 429 or 503, by quota (gcp adapter only)",
            m.cloud_retries.clone(),
        );
        registry.register(
            "xero_calls",
            "Xero API calls made by the tenants' ingest runs that ended here (from their summaries)",
            m.xero_calls.clone(),
        );
        registry.register(
            "xero_rate_limited",
            "429 answers Xero gave those runs",
            m.xero_rate_limited.clone(),
        );
        registry.register(
            "xero_day_limit_stops",
            "Ingest runs an organisation's Xero day limit ended early",
            m.xero_day_limit_stops.clone(),
        );
        registry.register(
            "xero_day_remaining_calls",
            "Calls an organisation had left of its Xero day limit when an ingest run ended",
            m.xero_day_remaining.clone(),
        );
        m.zero_known_series();
        Metrics { registry, ..m }
    }

    /// Creates every counter series whose labels are known in advance at 0,
    /// so that a rate or an alert over them works before the first event
    /// (Prometheus' own advice for counters with labels).
    fn zero_known_series(&self) {
        for outcome in [
            PassOutcome::Settled,
            PassOutcome::NotSettled,
            PassOutcome::Error,
            PassOutcome::Gone,
        ] {
            self.reconcile_passes.get_or_create_owned(&OutcomeLabels {
                outcome: outcome.as_str(),
            });
        }
        for command in [RunCommand::Ingest, RunCommand::Transform, RunCommand::Sync] {
            for trigger in [
                RunTrigger::Operator,
                RunTrigger::Api,
                RunTrigger::Schedule,
                RunTrigger::Webhook,
            ] {
                self.runs_started.get_or_create_owned(&RunStartLabels {
                    command: command.as_str(),
                    trigger: trigger.as_str(),
                });
            }
            for status in [RunStatus::Succeeded, RunStatus::Partial, RunStatus::Failed] {
                self.runs_ended.get_or_create_owned(&RunEndLabels {
                    command: command.as_str(),
                    status: status.as_str(),
                });
            }
        }
        for outcome in ["answered", "declined", "refused", "failed"] {
            for generator in ["offline", "llm"] {
                self.questions
                    .get_or_create_owned(&QuestionLabels { outcome, generator });
            }
        }
        self.questions.get_or_create_owned(&QuestionLabels {
            outcome: "failed",
            generator: "none",
        });
        for outcome in ["started", "deferred", "skipped"] {
            self.scheduled_tenants
                .get_or_create_owned(&OutcomeLabels { outcome });
        }
        for outcome in ["refreshed", "needs_consent", "failed"] {
            self.token_refreshes
                .get_or_create_owned(&OutcomeLabels { outcome });
        }
    }

    /// One HTTP request answered. `route` is the matched route template
    /// (`/v1/tenants/{id}`), or "unmatched".
    pub fn http_request(
        &self,
        class: &'static str,
        route: &str,
        method: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        self.http_requests
            .get_or_create(&HttpLabels {
                class,
                route: route.to_owned(),
                method,
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&HttpDurationLabels {
                class,
                route: route.to_owned(),
                method,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// One reconcile pass over one tenant ended.
    pub fn reconcile_pass(&self, outcome: PassOutcome, elapsed: Duration) {
        let labels = OutcomeLabels {
            outcome: outcome.as_str(),
        };
        self.reconcile_passes.get_or_create(&labels).inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// A run's job was started.
    pub fn run_started(&self, command: RunCommand, trigger: RunTrigger) {
        self.runs_started
            .get_or_create(&RunStartLabels {
                command: command.as_str(),
                trigger: trigger.as_str(),
            })
            .inc();
    }

    /// A run ended (recorded as ended by this process); `elapsed` from its record.
    pub fn run_ended(&self, command: RunCommand, status: RunStatus, elapsed: Option<Duration>) {
        let labels = RunEndLabels {
            command: command.as_str(),
            status: status.as_str(),
        };
        self.runs_ended.get_or_create(&labels).inc();
        if let Some(elapsed) = elapsed {
            self.run_duration
                .get_or_create(&labels)
                .observe(elapsed.as_secs_f64());
        }
    }

    /// A question was answered, declined, refused or failed.
    pub fn question(
        &self,
        outcome: &'static str,
        generator: &'static str,
        elapsed: Option<Duration>,
    ) {
        let labels = QuestionLabels { outcome, generator };
        self.questions.get_or_create(&labels).inc();
        if let Some(elapsed) = elapsed {
            self.question_duration
                .get_or_create(&labels)
                .observe(elapsed.as_secs_f64());
        }
    }

    /// A tenant's token set was refreshed, or the refresh failed.
    pub fn token_refresh(&self, outcome: &'static str) {
        self.token_refreshes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// What an ended ingest run's summary says of its Xero calls.
    pub fn xero_ingest(&self, report: &job_contract::summary::IngestReport) {
        self.xero_calls.inc_by(report.calls);
        self.xero_rate_limited.inc_by(report.rate_limited);
        if report.stopped_by_day_limit.is_some() {
            self.xero_day_limit_stops.inc();
        }
        if let Some(remaining) = report.day_remaining {
            self.xero_day_remaining.observe(remaining as f64);
        }
    }

    /// Brings the cloud API counters up to the adapter's own counts, read
    /// at scrape time (they only grow).
    pub fn set_cloud_usage(&self, usage: &[cloud::ApiUsage]) {
        let _one_at_a_time = self
            .cloud_sync
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for u in usage {
            let labels = QuotaLabels { quota: u.quota };
            for (family, total) in [
                (&self.cloud_calls, u.calls),
                (&self.cloud_retries, u.retries),
            ] {
                let counter = family.get_or_create(&labels);
                let counted = counter.get();
                if total > counted {
                    counter.inc_by(total - counted);
                }
            }
        }
    }

    /// One scheduler tick: how many due tenants it started, deferred for the
    /// Xero budget, and skipped.
    pub fn scheduler_tick(&self, started: usize, deferred: usize, skipped: usize) {
        self.scheduler_ticks.inc();
        for (outcome, n) in [
            ("started", started),
            ("deferred", deferred),
            ("skipped", skipped),
        ] {
            self.scheduled_tenants
                .get_or_create(&OutcomeLabels { outcome })
                .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
        }
    }

    /// Sets the controller's gauges, read at scrape time.
    pub fn set_controller(&self, queued: usize, running: usize, backing_off: usize) {
        for (state, n) in [
            ("queued", queued),
            ("running", running),
            ("backing_off", backing_off),
        ] {
            self.controller_tenants
                .get_or_create(&StateLabels { state })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Sets the tenant gauges from a count read at scrape time: `(phase,
    /// needs_consent, tenants)` rows; `None` when the store did not answer
    /// (the gauges keep their last values and `state_store_up` says 0).
    pub fn set_tenants(&self, counts: Option<&[(Phase, bool, i64)]>) {
        let Some(counts) = counts else {
            self.store_up.set(0);
            return;
        };
        self.store_up.set(1);
        for phase in Phase::ALL {
            let n: i64 = counts
                .iter()
                .filter(|(p, _, _)| p == phase)
                .map(|(_, _, n)| n)
                .sum();
            self.tenants
                .get_or_create(&PhaseLabels {
                    phase: phase.as_str(),
                })
                .set(n);
        }
        let consent: i64 = counts
            .iter()
            .filter(|(_, c, _)| *c)
            .map(|(_, _, n)| n)
            .sum();
        self.tenants_needing_consent.set(consent);
    }

    /// Every metric in the Prometheus text format (0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would mean a bug
        // in a label, and a partial page is still better than none.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_request_renders_with_its_template_and_bounded_labels() {
        let m = Metrics::new();
        m.http_request(
            "operator",
            "/v1/tenants/{id}",
            "GET",
            200,
            Duration::from_millis(12),
        );
        m.reconcile_pass(PassOutcome::NotSettled, Duration::from_millis(80));
        m.question("answered", "offline", Some(Duration::from_millis(30)));
        m.set_tenants(Some(&[(Phase::Ready, false, 3), (Phase::Ready, true, 1)]));
        m.token_refresh("needs_consent");
        m.set_controller(2, 1, 0);
        m.scheduler_tick(1, 2, 0);
        let usage = |calls, retries| {
            [cloud::ApiUsage {
                quota: "policy_write",
                calls,
                retries,
            }]
        };
        m.set_cloud_usage(&usage(7, 1));
        m.set_cloud_usage(&usage(7, 1));
        m.set_cloud_usage(&usage(9, 2));
        m.xero_ingest(&job_contract::summary::IngestReport {
            calls: 120,
            rate_limited: 3,
            day_remaining: Some(80),
            stopped_by_day_limit: Some(job_contract::summary::DayLimitStop {
                resource: "Invoices".into(),
                retry_after_secs: 3600,
            }),
            ..Default::default()
        });
        let text = m.render();
        assert!(
            text.contains(r#"ledgerlake_cloud_api_calls_total{quota="policy_write"} 9"#),
            "the adapter's counts, not their sum over scrapes: {text}"
        );
        assert!(text.contains(r#"ledgerlake_cloud_api_retries_total{quota="policy_write"} 2"#));
        assert!(text.contains("ledgerlake_xero_calls_total 120"), "{text}");
        assert!(text.contains("ledgerlake_xero_rate_limited_total 3"));
        assert!(text.contains("ledgerlake_xero_day_limit_stops_total 1"));
        assert!(
            text.contains(r#"ledgerlake_xero_day_remaining_calls_bucket{le="100"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"ledgerlake_xero_day_remaining_calls_bucket{le="50"} 0"#));
        assert!(
            text.contains(
                r#"ledgerlake_http_requests_total{class="operator",route="/v1/tenants/{id}",method="GET",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE ledgerlake_http_request_duration_seconds histogram"));
        assert!(text.contains(r#"ledgerlake_reconcile_passes_total{outcome="not_settled"} 1"#));
        assert!(text
            .contains(r#"ledgerlake_questions_total{outcome="answered",generator="offline"} 1"#));
        assert!(
            text.contains(r#"ledgerlake_tenants{phase="Ready"} 4"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ledgerlake_tenants{phase="Failed"} 0"#),
            "{text}"
        );
        assert!(text.contains("ledgerlake_tenants_needing_consent 1"));
        assert!(text.contains("ledgerlake_state_store_up 1"));
        assert!(text.contains(r#"ledgerlake_token_refreshes_total{outcome="needs_consent"} 1"#));
        assert!(text.contains(r#"ledgerlake_token_refreshes_total{outcome="refreshed"} 0"#));
        assert!(text.contains(r#"ledgerlake_controller_tenants{state="queued"} 2"#));
        assert!(text.contains("ledgerlake_scheduler_ticks_total 1"));
        assert!(text.contains(r#"ledgerlake_scheduler_tenants_total{outcome="deferred"} 2"#));
        assert_eq!(
            method_label(&axum::http::Method::from_bytes(b"BREW").expect("method")),
            "other"
        );
    }
}
