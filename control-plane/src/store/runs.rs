//! Runs of `tenant-job` and each tenant's schedule. The database itself keeps
//! a tenant to one active (queued or running) run: a partial unique index.
//! A run's record outlives its tenant, like the audit log (migration 0005):
//! a teardown leaves the runs it cancelled recorded.

use std::fmt;
use std::str::FromStr;

use cloud::TenantId;
use serde::Serialize;
use sqlx::any::AnyRow;
use time::OffsetDateTime;

use super::{get, get_parsed, get_time, get_time_opt, now_ms, tenant_write_err, Store, StoreError};

/// What a run does (`tenant-job <command>`), as the job spells it.
pub use job_contract::RunCommand;

/// Who asked for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunTrigger {
    /// The operator CLI.
    Operator,
    /// `POST /v1/tenants/{id}/runs`.
    Api,
    /// The tenant's schedule, through the scheduler tick.
    Schedule,
    /// A Xero webhook marked the tenant changed.
    Webhook,
}

/// A tenant whose schedule is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueTenant {
    pub tenant: TenantId,
    /// Its own cron schedule, if it has one.
    pub schedule: Option<String>,
    /// When its schedule wanted a run (ms); `None` when never computed.
    pub next_run_at: Option<i64>,
}

/// Where a reading of the due tenants stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DueCursor {
    #[default]
    Start,
    /// Among the tenants never scheduled, after this one.
    Unscheduled(TenantId),
    /// Among the scheduled tenants, after this next run (ms) and tenant.
    Scheduled(i64, TenantId),
}

/// One page of due tenants, and where the next page starts.
#[derive(Debug, Clone)]
pub struct DuePage {
    pub tenants: Vec<DueTenant>,
    pub next: DueCursor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    /// Xero's day limit ended the ingest early; the next run resumes.
    Partial,
    Failed,
}

impl RunStatus {
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    other => Err(format!("unknown {} {other:?}", stringify!($ty))),
                }
            }
        }
    };
}

text_enum!(RunTrigger { Operator => "operator", Api => "api", Schedule => "schedule", Webhook => "webhook" });
text_enum!(RunStatus {
    Queued => "queued",
    Running => "running",
    Succeeded => "succeeded",
    Partial => "partial",
    Failed => "failed",
});

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub tenant: TenantId,
    pub command: RunCommand,
    pub trigger: RunTrigger,
    pub status: RunStatus,
    /// The job and execution that carry the run, once started.
    pub job: Option<String>,
    pub execution_id: Option<String>,
    pub message: Option<String>,
    /// The job's own summary (per-resource counts, models, data tests).
    pub summary: Option<serde_json::Value>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

/// The columns of a [`RunRecord`], as a literal for `concat!`.
macro_rules! run_columns {
    () => {
        "id, tenant_id, command, trigger, status, job, execution_id, message, \
         summary, created_at, started_at, finished_at"
    };
}

/// A queued run, recorded only if its tenant exists (`$1` id, `$2` tenant,
/// `$3` command, `$4` trigger, `$5` now).
pub(super) const CREATE_RUN: &str =
    "INSERT INTO runs (id, tenant_id, command, trigger, status, created_at) \
     SELECT $1, $2, $3, $4, 'queued', $5 \
     WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $2)";

pub(super) const GET_RUN: &str = concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1");

/// The tenant's queued or running run (the partial unique index's rows).
pub(super) const ACTIVE_RUN: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE tenant_id = $1 AND status IN ('queued', 'running')"
);

/// Every queued or running run, oldest first (every tick follows them).
pub(super) const ACTIVE_RUNS: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE status IN ('queued', 'running') ORDER BY created_at"
);

/// The newest `$2` runs of tenant `$1`.
pub(super) const TENANT_RUNS: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
);

/// The newest `$1` runs of all tenants.
pub(super) const ALL_RUNS: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs ORDER BY created_at DESC, id DESC LIMIT $1"
);

pub(super) const MARK_RUN_RUNNING: &str =
    "UPDATE runs SET status = 'running', job = $2, execution_id = $3, started_at = $4 \
     WHERE id = $1 AND status = 'queued'";

pub(super) const FINISH_RUN: &str =
    "UPDATE runs SET status = $2, message = $3, summary = $4, finished_at = $5 \
     WHERE id = $1 AND status IN ('queued', 'running')";

/// The wanted tenants whose schedule was never computed (new ones), by id
/// after `$1`, `$2` at most: the tick takes them before the scheduled ones.
pub(super) const DUE_UNSCHEDULED: &str = "SELECT id, schedule, next_run_at FROM tenants \
     WHERE desired = 'present' AND next_run_at IS NULL AND id > $1 \
     ORDER BY id LIMIT $2";

/// The wanted tenants whose schedule came round by `$1` (ms), after the
/// position (`$2` next run, `$3` id), `$4` at most. The tick reads as many as
/// its call budget can start, through the index on (next_run_at, id), so it
/// costs the tenants it starts, not every due one. Longest due first, so a
/// tenant deferred by the call budget goes before those due after it.
pub(super) const DUE_SCHEDULES: &str = "SELECT id, schedule, next_run_at FROM tenants \
     WHERE desired = 'present' AND next_run_at <= $1 \
       AND (next_run_at > $2 OR (next_run_at = $2 AND id > $3)) \
     ORDER BY next_run_at, id LIMIT $4";

/// How many wanted tenants are due by `$1` without a webhook's mark: what a
/// tick whose budget ran out leaves for later (the marked ones it counts
/// itself).
pub(super) const COUNT_DUE: &str = "SELECT COUNT(*) AS due FROM tenants \
     WHERE desired = 'present' AND sync_requested_at IS NULL \
       AND (next_run_at IS NULL OR next_run_at <= $1)";

pub(super) const SET_NEXT_RUN_AT: &str = "UPDATE tenants SET next_run_at = $2 WHERE id = $1";

pub(super) const CLEAR_SYNC_REQUESTED: &str =
    "UPDATE tenants SET sync_requested_at = NULL WHERE id = $1";

fn run_from_row(row: &AnyRow) -> Result<RunRecord, StoreError> {
    let summary: Option<String> = get(row, "summary")?;
    let summary = summary
        .map(|s| serde_json::from_str(&s))
        .transpose()
        .map_err(|e| StoreError::InvalidData {
            column: "runs.summary",
            reason: e.to_string(),
        })?;
    Ok(RunRecord {
        id: get(row, "id")?,
        tenant: get_parsed(row, "tenant_id")?,
        command: get_parsed(row, "command")?,
        trigger: get_parsed(row, "trigger")?,
        status: get_parsed(row, "status")?,
        job: get(row, "job")?,
        execution_id: get(row, "execution_id")?,
        message: get(row, "message")?,
        summary,
        created_at: get_time(row, "created_at")?,
        started_at: get_time_opt(row, "started_at")?,
        finished_at: get_time_opt(row, "finished_at")?,
    })
}

impl Store {
    /// Records a queued run. `RunActive` when the tenant already has one
    /// queued or running; `TenantNotFound` for an unknown tenant (checked
    /// here: runs keep no foreign key, so that they outlive their tenant).
    pub async fn create_run(
        &self,
        tenant: &TenantId,
        command: RunCommand,
        trigger: RunTrigger,
    ) -> Result<RunRecord, StoreError> {
        let id = format!("run-{}", uuid::Uuid::new_v4().simple());
        let inserted = self
            .execute(
                sqlx::query(CREATE_RUN)
                    .bind(&id)
                    .bind(tenant.as_str())
                    .bind(command.as_str())
                    .bind(trigger.as_str())
                    .bind(now_ms()),
            )
            .await;
        match inserted {
            Ok(0) => return Err(StoreError::TenantNotFound(tenant.clone())),
            Ok(_) => {}
            Err(StoreError::Database(sqlx::Error::Database(db))) if db.is_unique_violation() => {
                let active = self.active_run(tenant).await?;
                return Err(StoreError::RunActive {
                    tenant: tenant.clone(),
                    run: active.map(|r| r.id).unwrap_or_default(),
                });
            }
            Err(e) => return Err(tenant_write_err(tenant, e)),
        }
        self.get_run(&id)
            .await?
            .ok_or_else(|| StoreError::RunNotFound(id))
    }

    pub async fn get_run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.fetch_optional(sqlx::query(GET_RUN).bind(id), run_from_row)
            .await
    }

    /// The tenant's queued or running run, if any.
    pub async fn active_run(&self, tenant: &TenantId) -> Result<Option<RunRecord>, StoreError> {
        self.fetch_optional(sqlx::query(ACTIVE_RUN).bind(tenant.as_str()), run_from_row)
            .await
    }

    /// Every queued or running run (to follow them up).
    pub async fn active_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.fetch_all(sqlx::query(ACTIVE_RUNS), run_from_row).await
    }

    /// The newest runs first, of one tenant or all, at most `limit`.
    pub async fn list_runs(
        &self,
        tenant: Option<&TenantId>,
        limit: u32,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let query = match tenant {
            Some(t) => sqlx::query(TENANT_RUNS).bind(t.as_str()),
            None => sqlx::query(ALL_RUNS),
        };
        self.fetch_all(query.bind(i64::from(limit)), run_from_row)
            .await
    }

    /// Marks a queued run as running on `job`'s execution `execution_id`.
    pub async fn mark_run_running(
        &self,
        id: &str,
        job: &str,
        execution_id: &str,
    ) -> Result<(), StoreError> {
        let updated = self
            .execute(
                sqlx::query(MARK_RUN_RUNNING)
                    .bind(id)
                    .bind(job)
                    .bind(execution_id)
                    .bind(now_ms()),
            )
            .await?;
        if updated == 0 {
            return Err(StoreError::RunNotFound(id.to_owned()));
        }
        Ok(())
    }

    /// Ends an active run. Returns false when it had already ended (another
    /// process recorded the end first), in which case nothing changes.
    pub async fn finish_run(
        &self,
        id: &str,
        status: RunStatus,
        message: Option<&str>,
        summary: Option<&serde_json::Value>,
    ) -> Result<bool, StoreError> {
        let summary = summary.map(serde_json::Value::to_string);
        let updated = self
            .execute(
                sqlx::query(FINISH_RUN)
                    .bind(id)
                    .bind(status.as_str())
                    .bind(message)
                    .bind(summary)
                    .bind(now_ms()),
            )
            .await?;
        Ok(updated > 0)
    }

    /// The tenant's cron schedule (`None`: the deployment's default).
    pub async fn set_schedule(
        &self,
        tenant: &TenantId,
        schedule: Option<&str>,
    ) -> Result<(), StoreError> {
        let updated = self
            .execute(
                sqlx::query(
                    "UPDATE tenants SET schedule = $2, next_run_at = NULL, updated_at = $3 WHERE id = $1",
                )
                .bind(tenant.as_str())
                .bind(schedule)
                .bind(now_ms()),
            )
            .await?;
        if updated == 0 {
            return Err(StoreError::TenantNotFound(tenant.clone()));
        }
        Ok(())
    }

    /// Every tenant's schedule and next due time: (tenant, schedule, next_run_at ms).
    pub async fn schedules(
        &self,
    ) -> Result<Vec<(TenantId, Option<String>, Option<i64>)>, StoreError> {
        self.fetch_all(
            sqlx::query(
                "SELECT id, schedule, next_run_at FROM tenants WHERE desired = 'present' ORDER BY id",
            ),
            |r| {
                Ok((
                    get_parsed(r, "id")?,
                    get(r, "schedule")?,
                    get(r, "next_run_at")?,
                ))
            },
        )
        .await
    }

    /// Up to `limit` wanted tenants due at `now_ms` after `after`: first
    /// those whose schedule was never computed, by id, then the others,
    /// longest due first. What the scheduler tick chooses from, a page at a
    /// time: it reads only the rows it can start.
    pub async fn due_schedules(
        &self,
        now_ms: i64,
        after: &DueCursor,
        limit: u32,
    ) -> Result<DuePage, StoreError> {
        let row = |r: &AnyRow| -> Result<DueTenant, StoreError> {
            Ok(DueTenant {
                tenant: get_parsed(r, "id")?,
                schedule: get(r, "schedule")?,
                next_run_at: get(r, "next_run_at")?,
            })
        };
        let mut tenants = Vec::new();
        if let DueCursor::Start | DueCursor::Unscheduled(_) = after {
            let from = match after {
                DueCursor::Unscheduled(id) => id.as_str(),
                _ => "",
            };
            tenants = self
                .fetch_all(
                    sqlx::query(DUE_UNSCHEDULED)
                        .bind(from)
                        .bind(i64::from(limit)),
                    row,
                )
                .await?;
        }
        let left = limit.saturating_sub(u32::try_from(tenants.len()).unwrap_or(u32::MAX));
        if left > 0 {
            let (at, id) = match after {
                DueCursor::Scheduled(at, id) => (*at, id.as_str()),
                _ => (i64::MIN, ""),
            };
            tenants.extend(
                self.fetch_all(
                    sqlx::query(DUE_SCHEDULES)
                        .bind(now_ms)
                        .bind(at)
                        .bind(id)
                        .bind(i64::from(left)),
                    row,
                )
                .await?,
            );
        }
        let next = match tenants.last() {
            Some(DueTenant {
                tenant,
                next_run_at: Some(at),
                ..
            }) => DueCursor::Scheduled(*at, tenant.clone()),
            Some(DueTenant { tenant, .. }) => DueCursor::Unscheduled(tenant.clone()),
            None => after.clone(),
        };
        Ok(DuePage { tenants, next })
    }

    /// How many wanted tenants are due at `now_ms` and not marked by a
    /// webhook.
    pub async fn count_due(&self, now_ms: i64) -> Result<u64, StoreError> {
        let due = self
            .fetch_optional(sqlx::query(COUNT_DUE).bind(now_ms), |r| {
                get::<i64>(r, "due")
            })
            .await?
            .unwrap_or(0);
        Ok(u64::try_from(due).unwrap_or(0))
    }

    /// Records when the tenant's schedule next wants a run.
    pub async fn set_next_run_at(&self, tenant: &TenantId, at_ms: i64) -> Result<(), StoreError> {
        self.execute(
            sqlx::query(SET_NEXT_RUN_AT)
                .bind(tenant.as_str())
                .bind(at_ms),
        )
        .await?;
        Ok(())
    }

    /// Clears a webhook's sync request once a run that ingests has started.
    pub async fn clear_sync_requested(&self, tenant: &TenantId) -> Result<(), StoreError> {
        self.execute(sqlx::query(CLEAR_SYNC_REQUESTED).bind(tenant.as_str()))
            .await?;
        Ok(())
    }
}
