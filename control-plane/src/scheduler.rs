//! The scheduler tick (what Cloud Scheduler calls every minute): follows the
//! runs in progress, then starts the runs that are due — tenants a Xero
//! webhook marked as changed, and tenants whose cron schedule came round —
//! within a budget of Xero calls shared by every tenant (Xero allows an app
//! 10,000 calls a minute across all its organisations).

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use cloud::naming::TenantId;
use job_contract::RunCommand;

use crate::runs::{RunError, Runs};
use crate::store::{RunTrigger, StoreError};

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
    /// Due tenants left for a later tick because the call budget was spent.
    pub deferred: Vec<String>,
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
    let mut report = TickReport {
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
    let mut budget = (u64::from(settings.xero_calls_per_tick) / per_run).saturating_sub(in_flight);

    let default =
        parse_schedule(&settings.default_schedule).map_err(|e| StoreError::InvalidData {
            column: "scheduler default schedule",
            reason: e.to_string(),
        })?;
    let now_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);

    // Webhook-marked tenants first (someone is waiting for their changes),
    // then scheduled ones.
    let mut due: Vec<(TenantId, RunTrigger)> = store
        .tenants_with_sync_requested()
        .await?
        .into_iter()
        .map(|t| (t, RunTrigger::Webhook))
        .collect();
    // Only the tenants whose schedule came round (or was never computed)
    // are read: an index on next_run_at keeps this to the due ones however
    // many tenants there are. When all of them are due at once (the top of
    // the hour), the work per tenant is a set insert: only the tenants with
    // a schedule of their own keep a parsed copy.
    let marked: std::collections::HashSet<TenantId> = due.iter().map(|(t, _)| t.clone()).collect();
    let mut own: std::collections::HashMap<TenantId, croner::Cron> =
        std::collections::HashMap::new();
    let mut scheduled: std::collections::HashSet<TenantId> = std::collections::HashSet::new();
    for (tenant, schedule, _) in store.due_schedules(now_ms).await? {
        if let Some(schedule) = schedule {
            match parse_schedule(&schedule) {
                Ok(cron) => {
                    own.insert(tenant.clone(), cron);
                }
                Err(e) => {
                    report.skipped.push(SkippedRun {
                        tenant: tenant.to_string(),
                        reason: e.to_string(),
                    });
                    continue;
                }
            }
        }
        scheduled.insert(tenant.clone());
        if !marked.contains(&tenant) {
            due.push((tenant, RunTrigger::Schedule));
        }
    }
    let default_next = next_after(&default, now);

    for (tenant, trigger) in due {
        if budget == 0 {
            report.deferred.push(tenant.to_string());
            continue;
        }
        let result = runs.start(&tenant, RunCommand::Sync, trigger).await;
        if scheduled.contains(&tenant) && (trigger == RunTrigger::Schedule || result.is_ok()) {
            // The schedule moves on whether this run started or not, so a
            // tenant that cannot run is not retried every tick. A tenant
            // started by a webhook whose schedule is not due keeps its next
            // time, which is already the schedule's next after now.
            let next = match own.get(&tenant) {
                Some(cron) => next_after(cron, now),
                None => default_next,
            };
            if let Some(next) = next {
                store.set_next_run_at(&tenant, next).await?;
            }
        }
        match result {
            Ok(run) => {
                budget -= 1;
                report.started.push(StartedRun {
                    tenant: tenant.to_string(),
                    run: run.id,
                    trigger,
                });
            }
            Err(RunError::Store(e)) => return Err(e),
            Err(e) => report.skipped.push(SkippedRun {
                tenant: tenant.to_string(),
                reason: e.to_string(),
            }),
        }
    }
    if !report.started.is_empty() || !report.deferred.is_empty() {
        tracing::info!(
            started = report.started.len(),
            deferred = report.deferred.len(),
            skipped = report.skipped.len(),
            "scheduler tick"
        );
    }
    crate::metrics::metrics().scheduler_tick(
        report.started.len(),
        report.deferred.len(),
        report.skipped.len(),
    );
    Ok(report)
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
