//! The scheduler tick (what Cloud Scheduler calls every minute): follows the
//! runs in progress, then starts the runs that are due — tenants a Xero
//! webhook marked as changed, and tenants whose cron schedule came round —
//! within a budget of Xero calls shared by every tenant (Xero allows an app
//! 10,000 calls a minute across all its organisations).

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use cloud::naming::TenantId;
use job_contract::RunCommand;

use crate::runs::{RunError, Runs};
use crate::store::{DueCursor, DueTenant, RunTrigger, StoreError};

/// Every hour, on the hour (UTC).
pub const DEFAULT_SCHEDULE: &str = "0 * * * *";

#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// The cron schedule of tenants without their own.
    pub default_schedule: String,
    /// Xero calls the app may make per tick interval, across all tenants.
    pub xero_calls_per_tick: u32,
    /// What one incremental sync is budgeted at: a call per resource plus
    /// room for a few pages of changes.
    pub calls_per_run: u32,
    /// Cloud Scheduler's identity: when set, `POST /v1/scheduler/tick` also
    /// takes its Google-signed ID token (the verifier keeps Google's keys
    /// cached, so one is shared by every request).
    pub id_token: Option<std::sync::Arc<crate::server::oidc::IdTokenVerifier>>,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            default_schedule: DEFAULT_SCHEDULE.to_owned(),
            // Xero's app-wide limit, with headroom for the runs in flight.
            xero_calls_per_tick: 8_000,
            calls_per_run: 20,
            id_token: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid schedule {schedule:?}: {reason} (five cron fields in UTC, e.g. \"0 * * * *\" for hourly)")]
pub struct InvalidSchedule {
    pub schedule: String,
    pub reason: String,
}

/// Parses a cron schedule (five fields, UTC).
pub fn parse_schedule(schedule: &str) -> Result<croner::Cron, InvalidSchedule> {
    croner::Cron::new(schedule)
        .parse()
        .map_err(|e| InvalidSchedule {
            schedule: schedule.to_owned(),
            reason: e.to_string(),
        })
}

/// The first time after `after` the schedule wants a run, in ms since the epoch.
pub fn next_after(schedule: &croner::Cron, after: OffsetDateTime) -> Option<i64> {
    let ms = i64::try_from(after.unix_timestamp_nanos() / 1_000_000).ok()?;
    let start = chrono::DateTime::from_timestamp_millis(ms)?;
    schedule
        .find_next_occurrence(&start, false)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TickReport {
    /// Runs that ended since the last look.
    pub ended: usize,
    /// (tenant, run id, trigger) of the runs started.
    pub started: Vec<StartedRun>,
    /// How many due tenants were left for a later tick because the call
    /// budget was spent (a count: at the top of the hour it can be most of
    /// the tenants, and the tick does not read them).
    pub deferred: u64,
    /// Due tenants that could not start (not ready, needs consent, a run in
    /// progress), with why.
    pub skipped: Vec<SkippedRun>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StartedRun {
    pub tenant: String,
    pub run: String,
    pub trigger: RunTrigger,
}

#[derive(Debug, Clone, Serialize)]
pub struct SkippedRun {
    pub tenant: String,
    pub reason: String,
}

/// One tick at `now`.
pub async fn tick(
    runs: &Runs,
    settings: &SchedulerSettings,
    now: OffsetDateTime,
) -> Result<TickReport, StoreError> {
    let store = runs.store();
    let report = TickReport {
        ended: match runs.follow_active().await {
            Ok(ended) => ended.len(),
            Err(RunError::Store(e)) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "following runs failed");
                0
            }
        },
        ..TickReport::default()
    };
    let in_flight = store.active_runs().await?.len() as u64;
    let per_run = u64::from(settings.calls_per_run.max(1));
    let budget = (u64::from(settings.xero_calls_per_tick) / per_run).saturating_sub(in_flight);

    let default =
        parse_schedule(&settings.default_schedule).map_err(|e| StoreError::InvalidData {
            column: "scheduler default schedule",
            reason: e.to_string(),
        })?;
    let now_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    let mut starter = Starter {
        runs,
        now,
        default_next: next_after(&default, now),
        budget,
        report,
    };

    // Webhook-marked tenants first (someone is waiting for their changes).
    let mut handled: HashSet<TenantId> = HashSet::new();
    for due in store.due_by_webhook().await? {
        handled.insert(due.tenant.clone());
        starter.start(&due, RunTrigger::Webhook).await?;
    }
    // Then the tenants whose schedule came round, longest due first, read a
    // page at a time and no more than the budget can start: at the top of
    // the hour every tenant may be due, and the tick reads only the ones it
    // starts (or skips), then counts the rest.
    let mut cursor = DueCursor::Start;
    while starter.budget > 0 {
        let limit = u32::try_from(starter.budget.min(DUE_PAGE)).unwrap_or(u32::MAX);
        let page = store.due_schedules(now_ms, &cursor, limit).await?;
        if page.tenants.is_empty() {
            break;
        }
        cursor = page.next;
        for due in page.tenants {
            if !handled.contains(&due.tenant) {
                starter.start(&due, RunTrigger::Schedule).await?;
            }
        }
    }
    let mut report = starter.report;
    if starter.budget == 0 {
        report.deferred += store.count_due(now_ms).await?;
    }
    if !report.started.is_empty() || report.deferred > 0 {
        tracing::info!(
            started = report.started.len(),
            deferred = report.deferred,
            skipped = report.skipped.len(),
            "scheduler tick"
        );
    }
    crate::metrics::metrics().scheduler_tick(
        report.started.len(),
        usize::try_from(report.deferred).unwrap_or(usize::MAX),
        report.skipped.len(),
    );
    Ok(report)
}

/// Due tenants read a page at a time.
const DUE_PAGE: u64 = 500;

/// Starts due tenants' runs within the tick's call budget.
struct Starter<'a> {
    runs: &'a Runs,
    now: OffsetDateTime,
    /// The default schedule's next time after now.
    default_next: Option<i64>,
    /// Runs the tick may still start.
    budget: u64,
    report: TickReport,
}

impl Starter<'_> {
    /// Starts one due tenant's sync, or defers or skips it, and moves its
    /// schedule on.
    async fn start(&mut self, due: &DueTenant, trigger: RunTrigger) -> Result<(), StoreError> {
        let tenant = &due.tenant;
        if self.budget == 0 {
            self.report.deferred += 1;
            return Ok(());
        }
        let next = match due.schedule.as_deref().map(parse_schedule) {
            None => Ok(self.default_next),
            Some(Ok(cron)) => Ok(next_after(&cron, self.now)),
            Some(Err(e)) => Err(e),
        };
        let next = match (next, trigger) {
            (Ok(next), _) => next,
            // A webhook's sync does not need the schedule; a scheduled
            // one cannot run on a schedule that does not parse.
            (Err(_), RunTrigger::Webhook) => None,
            (Err(e), _) => {
                self.skip(tenant, e.to_string());
                return Ok(());
            }
        };
        let result = self.runs.start(tenant, RunCommand::Sync, trigger).await;
        // A scheduled tenant's schedule moves on whether its run started or
        // not, so one that cannot run is not retried every tick. A run a
        // webhook started counts as the schedule's too: its next time
        // becomes the schedule's next after now (which, when it was not due,
        // it already was).
        if trigger == RunTrigger::Schedule || result.is_ok() {
            if let Some(next) = next {
                self.runs.store().set_next_run_at(tenant, next).await?;
            }
        }
        match result {
            Ok(run) => {
                self.budget -= 1;
                self.report.started.push(StartedRun {
                    tenant: tenant.to_string(),
                    run: run.id,
                    trigger,
                });
            }
            Err(RunError::Store(e)) => return Err(e),
            Err(e) => self.skip(tenant, e.to_string()),
        }
        Ok(())
    }

    fn skip(&mut self, tenant: &TenantId, reason: String) {
        self.report.skipped.push(SkippedRun {
            tenant: tenant.to_string(),
            reason,
        });
    }
}

/// How often a local deployment ticks when nothing external calls the tick.
pub const LOCAL_TICK: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn schedules_parse_and_name_the_rule_when_they_do_not() {
        assert!(parse_schedule("0 * * * *").is_ok());
        assert!(parse_schedule("*/15 6-18 * * 1-5").is_ok());
        let e = parse_schedule("every hour").expect_err("invalid");
        assert!(e.to_string().contains("five cron fields"), "{e}");
    }

    #[test]
    fn the_next_hourly_run_is_on_the_next_hour() {
        let hourly = parse_schedule(DEFAULT_SCHEDULE).expect("cron");
        let next = next_after(&hourly, datetime!(2026-11-24 10:17:05 UTC)).expect("next");
        assert_eq!(
            next,
            datetime!(2026-11-24 11:00 UTC).unix_timestamp() * 1000
        );
        // Exactly on the hour: the next one, not the same.
        let next = next_after(&hourly, datetime!(2026-11-24 11:00 UTC)).expect("next");
        assert_eq!(
            next,
            datetime!(2026-11-24 12:00 UTC).unix_timestamp() * 1000
        );
    }
}
