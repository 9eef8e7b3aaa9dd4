//! Every query the control plane makes per scheduler tick, per reconcile
//! pass, per listed page, per token keep-alive scan and per prune, in one
//! list: `tests/explain.rs` plans each on PostgreSQL at 10,000 tenants and
//! 1,000,000 runs and fails on a sequential scan of runs, resources or the
//! audit logs. A new query on one of those paths is added here, with values
//! for its parameters, so that it is checked too.

use super::{onboarding, resources, retention, runs, tenants};

/// A parameter's value for planning, by what it stands for; the test picks
/// a value of the seeded data for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    /// An existing tenant's id (text).
    Tenant,
    /// A tenant id further on than [`Sample::Tenant`]: the end of a page.
    LaterTenant,
    /// Before every tenant id: the first page's cursor.
    FirstCursor,
    /// An existing run's id (text).
    Run,
    /// A resource kind and name of [`Sample::Tenant`] (text).
    ResourceKind,
    ResourceName,
    /// Now, in ms since the epoch (bigint).
    Now,
    /// A retention cutoff: 90 days before now (bigint).
    Cutoff,
    /// A page or batch size (bigint).
    Limit,
    /// Any text.
    Text(&'static str),
}

impl Sample {
    /// The parameter's SQL type.
    pub fn sql_type(self) -> &'static str {
        match self {
            Sample::Now | Sample::Cutoff | Sample::Limit => "bigint",
            _ => "text",
        }
    }
}

/// One hot query as the store runs it.
#[derive(Debug, Clone, Copy)]
pub struct HotQuery {
    pub name: &'static str,
    /// Where the control plane runs it.
    pub path: &'static str,
    pub sql: &'static str,
    /// One sample per `$n`, in order.
    pub params: &'static [Sample],
}

const fn q(
    name: &'static str,
    path: &'static str,
    sql: &'static str,
    params: &'static [Sample],
) -> HotQuery {
    HotQuery {
        name,
        path,
        sql,
        params,
    }
}

use Sample::*;

/// The list. Paths: `tick` (the scheduler tick and the runs it follows and
/// starts), `pass` (`reconcile --all` and one tenant's pass), `page`
/// (`tenants list`, `GET /v1/tenants`, runs lists), `keepalive`, `prune`.
pub const HOT_QUERIES: &[HotQuery] = &[
    // --- tick
    q("active runs", "tick", runs::ACTIVE_RUNS, &[]),
    q(
        "tenants a webhook marked",
        "tick",
        onboarding::SYNC_REQUESTED,
        &[],
    ),
    q(
        "due tenants never scheduled, a page",
        "tick",
        runs::DUE_UNSCHEDULED,
        &[FirstCursor, Limit],
    ),
    q(
        "due schedules, a page",
        "tick",
        runs::DUE_SCHEDULES,
        &[Now, Cutoff, FirstCursor, Limit],
    ),
    q("due tenants left", "tick", runs::COUNT_DUE, &[Now]),
    q("a tenant", "tick", tenants::GET_TENANT, &[Tenant]),
    q(
        "needs consent",
        "tick",
        onboarding::NEEDS_CONSENT,
        &[Tenant],
    ),
    q(
        "record a run",
        "tick",
        runs::CREATE_RUN,
        &[
            Text("run-explain"),
            Tenant,
            Text("sync"),
            Text("schedule"),
            Now,
        ],
    ),
    q("a tenant's active run", "tick", runs::ACTIVE_RUN, &[Tenant]),
    q("a run", "tick", runs::GET_RUN, &[Run]),
    q(
        "mark a run running",
        "tick",
        runs::MARK_RUN_RUNNING,
        &[Run, Text("job"), Text("execution"), Now],
    ),
    q(
        "finish a run",
        "tick",
        runs::FINISH_RUN,
        &[Run, Text("succeeded"), Text("done"), Text("{}"), Now],
    ),
    q(
        "move a schedule on",
        "tick",
        runs::SET_NEXT_RUN_AT,
        &[Tenant, Now],
    ),
    q(
        "clear a sync request",
        "tick",
        runs::CLEAR_SYNC_REQUESTED,
        &[Tenant],
    ),
    // --- pass
    q(
        "a page of tenants",
        "pass",
        tenants::TENANT_PAGE,
        &[FirstCursor, Limit],
    ),
    q(
        "a page of a pass, with settled marks",
        "pass",
        tenants::PASS_PAGE,
        &[Tenant, Limit],
    ),
    q(
        "mark a tenant settled",
        "pass",
        tenants::MARK_SETTLED,
        &[Tenant, Text("1:digest")],
    ),
    q(
        "a page's resources",
        "pass",
        resources::RESOURCES_IN_RANGE,
        &[Tenant, LaterTenant],
    ),
    q(
        "a tenant's resources",
        "pass",
        resources::LIST_RESOURCES,
        &[Tenant],
    ),
    q(
        "a resource",
        "pass",
        resources::GET_RESOURCE,
        &[Tenant, ResourceKind, ResourceName],
    ),
    q(
        "failed tenants' resources (resync)",
        "pass",
        resources::RESOURCES_OF_FAILED,
        &[],
    ),
    // --- page
    q(
        "a page of tenants after a cursor",
        "page",
        tenants::TENANT_PAGE,
        &[Tenant, Limit],
    ),
    q(
        "a page's connections",
        "page",
        onboarding::CONNECTIONS_IN_RANGE,
        &[Tenant, LaterTenant],
    ),
    q(
        "a tenant's newest runs",
        "page",
        runs::TENANT_RUNS,
        &[Tenant, Limit],
    ),
    q("the newest runs", "page", runs::ALL_RUNS, &[Limit]),
    // --- token keep-alive
    q(
        "connected tenants",
        "keepalive",
        onboarding::KEEPALIVE_TENANTS,
        &[],
    ),
    // --- retention
    q("ended runs", "prune", retention::PRUNE_RUNS, &[Cutoff]),
    q("audit log", "prune", retention::PRUNE_AUDIT, &[Cutoff]),
    q(
        "query audit",
        "prune",
        retention::PRUNE_QUERY_AUDIT,
        &[Cutoff],
    ),
];
