//! The reconciler: drives each tenant's cloud resources towards the desired
//! state recorded in the store.
//!
//! Every pass observes before it acts, so a second pass over a Ready tenant
//! writes nothing; a pass interrupted anywhere (a crash, a kill) leaves at most
//! resources that the next pass adopts, because creates are create-or-get on
//! deterministic names. A lease in the store keeps two processes off the same
//! tenant. Teardown is the same machine in reverse, like a finalizer: the
//! tenant record goes only when its resources are gone.

mod ensure;
/// What a tenant consists of: the plan is part of the contract with the job
/// (its job definitions and grants), so it lives in `job_contract`.
pub use job_contract::plan;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde::Serialize;
use tracing::Instrument;

use cloud::error::CloudError;
use cloud::naming::{self, DeploymentPrefix, Labels, TenantId};
use cloud::{Cloud, Clouds};

use crate::store::{
    Desired, Phase, ResourceRecord, ResourceStatus, Store, StoreError, TenantRecord, WithoutCells,
};
pub use ensure::Change;
pub use plan::JobTemplate;
use plan::{Planned, TenantPlan};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("tenant {0} does not exist")]
    UnknownTenant(TenantId),
    #[error("tenant {0} is being reconciled by another process; try again shortly")]
    Busy(TenantId),
    /// The pass lost its lease (it could not renew it in time, and another
    /// holder took it) and stopped, so two processes never act at once.
    #[error("lost the lease on tenant {0} during a pass; the pass stopped")]
    LeaseLost(TenantId),
    /// The tenant's cell has no Cloud (it has no cell where tenants need one).
    #[error(transparent)]
    Cell(#[from] crate::clouds::TenantCloudError),
}

/// Tenants read at a time by [`Reconciler::reconcile_all`].
pub const PASS_PAGE: u32 = 1_000;

/// Cells whose resources a pass lists at once (each cell is a project of
/// its own, so they share no quota).
const CELLS_LISTED_AT_ONCE: usize = 8;

/// How transient cloud errors are retried (the one policy of `cloud::retry`).
pub use cloud::retry::RetryPolicy;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Prefix of globally unique names (bucket names).
    pub prefix: Option<DeploymentPrefix>,
    pub retry: RetryPolicy,
    /// Resources of one tenant ensured at once.
    pub resource_concurrency: usize,
    /// Tenants reconciled at once by `reconcile_all`.
    pub tenant_concurrency: usize,
    /// How long a tenant lease lives without renewal (a crashed holder frees it then).
    pub lease_ttl: Duration,
    /// How long to wait for a tenant another process is reconciling.
    pub lease_wait: Duration,
    /// How each tenant's jobs are defined.
    pub jobs: JobTemplate,
    /// A new tenant's cell when no cell is registered: none locally, refused
    /// on GCP (set from the adapter by `Platform::reconciler`).
    pub without_cells: WithoutCells,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            prefix: None,
            retry: RetryPolicy::default(),
            resource_concurrency: 4,
            tenant_concurrency: 8,
            lease_ttl: Duration::from_secs(30),
            lease_wait: Duration::from_secs(60),
            jobs: JobTemplate::beside_current_exe(),
            without_cells: WithoutCells::Unplaced,
        }
    }
}

/// Progress of a pass, for progress bars and logs.
#[derive(Debug, Clone)]
pub struct Event {
    pub tenant: TenantId,
    pub kind: &'static str,
    pub name: String,
    pub outcome: EventOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    Created,
    Unchanged,
    Deleted,
    Kept,
    Failed,
}

pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

/// One resource that a pass could not bring to its desired state.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceFailure {
    pub kind: &'static str,
    pub name: String,
    pub retryable: bool,
    pub message: String,
}

/// What one pass over one tenant did.
#[derive(Debug, Clone, Serialize)]
pub struct TenantReport {
    pub tenant: TenantId,
    /// The tenant's phase after the pass; `None` once a teardown removed it.
    pub phase: Option<Phase>,
    /// Resources created, repaired or deleted.
    pub changed: usize,
    /// Data resources a `--keep-data` teardown left in place.
    pub kept: Vec<String>,
    pub failures: Vec<ResourceFailure>,
}

impl TenantReport {
    pub fn is_success(&self) -> bool {
        self.failures.is_empty()
    }

    /// One line naming the tenant, each failed resource and its cause.
    pub fn failure_summary(&self) -> String {
        let parts: Vec<String> = self
            .failures
            .iter()
            .map(|f| format!("{} {}: {}", f.kind, f.name, f.message))
            .collect();
        format!("tenant {}: {}", self.tenant, parts.join("; "))
    }
}

#[derive(Clone)]
pub struct Reconciler {
    clouds: Clouds,
    store: Store,
    settings: Settings,
    holder: String,
    events: Option<EventSink>,
}

impl Reconciler {
    /// `cloud`: one shared Cloud, or a Cloud per cell.
    pub fn new(cloud: impl Into<Clouds>, store: Store, settings: Settings) -> Self {
        Reconciler {
            clouds: cloud.into(),
            store,
            settings,
            holder: format!("pid{}-{}", std::process::id(), uuid::Uuid::new_v4()),
            events: None,
        }
    }

    pub fn with_events(mut self, sink: EventSink) -> Self {
        self.events = Some(sink);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// What placement does when no cell is registered.
    pub fn without_cells(&self) -> WithoutCells {
        self.settings.without_cells
    }

    /// The deployment prefix of globally unique names (bucket names).
    pub fn prefix(&self) -> Option<&DeploymentPrefix> {
        self.settings.prefix.as_ref()
    }

    /// The adapters of each cell.
    pub fn clouds(&self) -> &Clouds {
        &self.clouds
    }

    /// The plan of a tenant on `cloud` (its cell's) under these settings.
    pub fn plan(&self, cloud: &Cloud, id: &TenantId) -> TenantPlan {
        let email = cloud.identity.email_for(&naming::service_account_id(id));
        TenantPlan::new(
            id,
            self.settings.prefix.as_ref(),
            email,
            &self.settings.jobs,
        )
    }

    /// How many resources a tenant consists of (the same in every cell).
    pub fn plan_size(&self, id: &TenantId) -> usize {
        TenantPlan::new(
            id,
            self.settings.prefix.as_ref(),
            String::new(),
            &self.settings.jobs,
        )
        .resources()
        .count()
    }

    /// Records the tenant as wanted (a no-op when it already is), placed in
    /// a cell, and reconciles it.
    pub async fn provision(
        &self,
        id: &TenantId,
        actor: &str,
    ) -> Result<TenantReport, ReconcileError> {
        let (tenant, created) = self
            .store
            .want_tenant_placed(id, self.settings.without_cells)
            .await?;
        if created {
            self.store
                .audit(
                    actor,
                    "tenant.provision",
                    Some(id),
                    &serde_json::json!({ "cell": tenant.cell }),
                )
                .await?;
        }
        self.reconcile(id).await
    }

    /// Marks the tenant for deletion and reconciles it away.
    pub async fn teardown(
        &self,
        id: &TenantId,
        keep_data: bool,
        actor: &str,
    ) -> Result<TenantReport, ReconcileError> {
        match self.store.mark_deleting(id, keep_data).await {
            Ok(_) => {}
            Err(StoreError::TenantNotFound(_)) => {
                return Err(ReconcileError::UnknownTenant(id.clone()))
            }
            Err(e) => return Err(e.into()),
        }
        self.store
            .audit(
                actor,
                "tenant.teardown",
                Some(id),
                &serde_json::json!({ "keep_data": keep_data }),
            )
            .await?;
        self.reconcile(id).await
    }

    /// One pass over every tenant; a tenant's failure does not stop the others.
    /// Tenants are read a page at a time ([`PASS_PAGE`], by id), so memory and
    /// every query stay bounded by the page, not by the number of tenants. A
    /// page's resource rows (one query over its id range) are read only when
    /// one of its Ready tenants has no settled mark for its generation: a
    /// tenant a full pass left settled at its generation and plan is taken
    /// as recorded in place by its mark ([`Store::mark_settled`]), and only
    /// the cloud is checked.
    pub async fn reconcile_all(
        &self,
    ) -> Result<Vec<Result<TenantReport, ReconcileError>>, ReconcileError> {
        let mut reports = Vec::new();
        let mut after: Option<TenantId> = None;
        // Each cell's cloud, listed once per pass (by the first page that
        // has a tenant there); `None` when a listing failed.
        let mut observed: HashMap<Option<String>, Option<Arc<Observed>>> = HashMap::new();
        loop {
            let tenants = self.store.pass_page(after.as_ref(), PASS_PAGE).await?;
            let (Some((first, _)), Some((last, _))) = (tenants.first(), tenants.last()) else {
                break;
            };
            let unmarked = tenants.iter().any(|(t, mark)| {
                t.desired == Desired::Present
                    && t.phase == Phase::Ready
                    && !mark
                        .as_deref()
                        .is_some_and(|m| m.starts_with(&format!("{}:", t.generation)))
            });
            let resources = if unmarked {
                self.store.resources_in_range(&first.id, &last.id).await?
            } else {
                HashMap::new()
            };
            let last_page = tenants.len() < PASS_PAGE as usize;
            after = Some(last.id.clone());
            // The page's cells not listed yet, several at once: each is its
            // own project with its own quotas, and on Google a cell's
            // listings are round trips, so 100 cells one after another
            // would dominate the pass.
            let mut new_cells: HashMap<Option<String>, &TenantRecord> = HashMap::new();
            for (t, _) in &tenants {
                if !observed.contains_key(&t.cell) {
                    new_cells.entry(t.cell.clone()).or_insert(t);
                }
            }
            let listed: Vec<(Option<String>, Option<Arc<Observed>>)> = stream::iter(new_cells)
                .map(|(cell, t)| async move { (cell, self.observe_cell(t).await) })
                .buffer_unordered(CELLS_LISTED_AT_ONCE)
                .collect()
                .await;
            observed.extend(listed);
            reports.extend(self.reconcile_page(tenants, &resources, &observed).await);
            if last_page {
                break;
            }
        }
        Ok(reports)
    }

    async fn reconcile_page(
        &self,
        tenants: Vec<(TenantRecord, Option<String>)>,
        resources: &HashMap<TenantId, Vec<ResourceRecord>>,
        observed: &HashMap<Option<String>, Option<Arc<Observed>>>,
    ) -> Vec<Result<TenantReport, ReconcileError>> {
        let none = Vec::new();
        stream::iter(tenants)
            .map(|(t, mark)| {
                let rows = resources.get(&t.id).unwrap_or(&none);
                let seen = observed.get(&t.cell).cloned().flatten();
                async move {
                    let known = Known {
                        mark: mark.as_deref(),
                        rows,
                        observed: seen.as_deref(),
                    };
                    if self.is_settled(&t, known).await {
                        return Ok(TenantReport {
                            tenant: t.id.clone(),
                            phase: Some(t.phase),
                            changed: 0,
                            kept: Vec::new(),
                            failures: Vec::new(),
                        });
                    }
                    self.reconcile(&t.id).await
                }
            })
            .buffer_unordered(self.settings.tenant_concurrency.max(1))
            .collect()
            .await
    }

    /// Lists what the deployment manages in the tenant's cell, once for a
    /// whole pass; `None` (and a warning) when the cloud could not be read,
    /// and the cell's tenants are then observed one read per resource.
    async fn observe_cell(&self, tenant: &TenantRecord) -> Option<Arc<Observed>> {
        let cloud = crate::clouds::of_tenant(&self.clouds, &self.store, tenant)
            .await
            .ok()?;
        match Observed::list(&cloud).await {
            Ok(seen) => Some(Arc::new(seen)),
            Err(e) => {
                tracing::warn!(cell = ?tenant.cell, error = %e, "could not list the cell's resources; observing each tenant's instead");
                None
            }
        }
    }

    /// Whether a pass over the tenant would change nothing: it is wanted and
    /// Ready, every planned resource is recorded Ready at the current
    /// generation, and the cloud has each one in place. Such a tenant needs
    /// neither the lease nor a single write, which keeps a periodic pass over
    /// thousands of settled tenants cheap. Anything else (drift, an error
    /// reading) gets a full pass under the lease.
    ///
    /// "Recorded" is the tenant's settled mark when it matches its
    /// generation and plan, else its resource rows. With the cell's listings
    /// of this pass, "in place" is looked up there, so the check reads
    /// nothing per tenant; see [`Observed`] for what that covers. Without,
    /// each resource is read.
    async fn is_settled(&self, tenant: &TenantRecord, known: Known<'_>) -> bool {
        let Known {
            mark,
            rows,
            observed,
        } = known;
        if tenant.desired != Desired::Present
            || tenant.phase != Phase::Ready
            || tenant.message.is_some()
        {
            return false;
        }
        let Ok(cloud) = crate::clouds::of_tenant(&self.clouds, &self.store, tenant).await else {
            return false;
        };
        let plan = self.plan(&cloud, &tenant.id);
        let expected = settled_mark(tenant.generation, &plan);
        let marked = mark == Some(expected.as_str());
        let recorded = marked
            || plan.resources().all(|p| {
                find(rows, p).is_some_and(|r| {
                    r.status == ResourceStatus::Ready
                        && r.observed_generation == tenant.generation
                        && r.message.is_none()
                })
            });
        if !recorded {
            return false;
        }
        let labels = naming::tenant_labels(&tenant.id);
        let in_place = match observed {
            Some(seen) => match plan.resources().find(|p| !seen.has(p, &labels)) {
                Some(p) => {
                    tracing::info!(tenant = %tenant.id, kind = %p.kind(), name = %p.name(), "drift: not in place");
                    false
                }
                None => true,
            },
            None => self.observe_each(&cloud, tenant, &plan, &labels).await,
        };
        if !in_place {
            return false;
        }
        if !marked {
            // Settled before marks existed (or its mark is stale): one write,
            // once, and the next pass needs none of its rows.
            if let Err(e) = self.store.mark_settled(&tenant.id, &expected).await {
                tracing::warn!(tenant = %tenant.id, error = %e, "could not record the tenant as settled");
            }
        }
        if self.events.is_some() {
            for p in plan.resources() {
                self.emit(
                    &tenant.id,
                    p.kind().as_str(),
                    &p.name(),
                    EventOutcome::Unchanged,
                );
            }
        }
        true
    }

    /// Reads each planned resource of the tenant: whether all are in place.
    async fn observe_each(
        &self,
        cloud: &Cloud,
        tenant: &TenantRecord,
        plan: &TenantPlan,
        labels: &Labels,
    ) -> bool {
        let checks: Vec<_> = plan
            .resources()
            .map(|p| self.check_in_place(cloud, p, labels))
            .collect();
        let observed: Vec<(&Planned, Result<bool, CloudError>)> = stream::iter(checks)
            .buffer_unordered(self.settings.resource_concurrency.max(1))
            .collect()
            .await;
        let mut settled = true;
        for (p, result) in &observed {
            match result {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(tenant = %tenant.id, kind = %p.kind(), name = %p.name(), "drift: not in place");
                    settled = false;
                }
                Err(e) => {
                    tracing::debug!(tenant = %tenant.id, kind = %p.kind(), name = %p.name(), error = %e, "could not observe");
                    settled = false;
                }
            }
        }
        settled
    }

    /// One pass over one tenant, under its lease.
    pub async fn reconcile(&self, id: &TenantId) -> Result<TenantReport, ReconcileError> {
        let lease = format!("tenant:{id}");
        let acquired = self
            .store
            .acquire_lease_waiting(
                &lease,
                &self.holder,
                self.settings.lease_ttl,
                self.settings.lease_wait,
            )
            .await?;
        if !acquired {
            return Err(ReconcileError::Busy(id.clone()));
        }
        let (lost_tx, lost_rx) = tokio::sync::oneshot::channel();
        let renewal = self.spawn_lease_renewal(lease.clone(), lost_tx);
        // Losing the lease stops the pass at its next await: dropping the
        // pass's future cancels whatever it was about to do next.
        let result = tokio::select! {
            result = self.reconcile_held(id) => result,
            Ok(()) = lost_rx => Err(ReconcileError::LeaseLost(id.clone())),
        };
        drop(renewal);
        // A failed release only delays the next holder until the lease expires.
        if let Err(e) = self.store.release_lease(&lease, &self.holder).await {
            tracing::warn!(tenant = %id, error = %e, "could not release the tenant lease");
        }
        result
    }

    /// Keeps the lease alive while the pass runs, and says so on `lost` if
    /// another holder took it; dropping the guard (the pass ended, or its
    /// future was dropped) stops the renewal.
    fn spawn_lease_renewal(
        &self,
        lease: String,
        lost: tokio::sync::oneshot::Sender<()>,
    ) -> AbortOnDrop {
        let store = self.store.clone();
        let holder = self.holder.clone();
        let ttl = self.settings.lease_ttl;
        AbortOnDrop(tokio::spawn(async move {
            let mut renewed = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(ttl / 3).await;
                match store.try_acquire_lease(&lease, &holder, ttl).await {
                    Ok(true) => renewed = tokio::time::Instant::now(),
                    Ok(false) => {
                        tracing::error!(%lease, "lost the tenant lease to another process; stopping the pass");
                        let _ = lost.send(());
                        return;
                    }
                    // Unrenewed for a whole lifetime, the lease may be
                    // someone else's by now: stop rather than guess.
                    Err(e) if renewed.elapsed() >= ttl => {
                        tracing::error!(%lease, error = %e, "could not renew the tenant lease before it expired; stopping the pass");
                        let _ = lost.send(());
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(%lease, error = %e, "could not renew the tenant lease")
                    }
                }
            }
        }))
    }

    async fn reconcile_held(&self, id: &TenantId) -> Result<TenantReport, ReconcileError> {
        let tenant = self
            .store
            .get_tenant(id)
            .await?
            .ok_or_else(|| ReconcileError::UnknownTenant(id.clone()))?;
        let cloud = crate::clouds::of_tenant(&self.clouds, &self.store, &tenant).await?;
        match tenant.desired {
            Desired::Present => {
                let span =
                    tracing::info_span!("provision", tenant = %id, generation = tenant.generation);
                self.provision_pass(&cloud, &tenant).instrument(span).await
            }
            Desired::Absent => {
                let span =
                    tracing::info_span!("teardown", tenant = %id, keep_data = tenant.keep_data);
                self.teardown_pass(&cloud, &tenant).instrument(span).await
            }
        }
    }

    async fn provision_pass(
        &self,
        cloud: &Cloud,
        tenant: &TenantRecord,
    ) -> Result<TenantReport, ReconcileError> {
        let id = &tenant.id;
        if matches!(tenant.phase, Phase::Pending | Phase::Failed) {
            self.store.set_phase(id, Phase::Provisioning, None).await?;
        }
        let plan = self.plan(cloud, id);
        let labels = naming::tenant_labels(id);
        let rows = self.store.list_resources(id).await?;
        let mut report = TenantReport {
            tenant: id.clone(),
            phase: None,
            changed: 0,
            kept: Vec::new(),
            failures: Vec::new(),
        };

        // Show the whole plan as Pending from the first pass on.
        for p in plan.resources() {
            if find(&rows, p).is_none() {
                self.store
                    .set_resource_status(
                        id,
                        p.kind().as_str(),
                        &p.name(),
                        ResourceStatus::Pending,
                        None,
                        None,
                        tenant.generation,
                    )
                    .await?;
            }
        }

        let mut blocked_by: Option<String> = None;
        for level in &plan.levels {
            if let Some(cause) = &blocked_by {
                let message = format!("waiting for {cause}");
                for p in level {
                    self.store
                        .set_resource_status(
                            id,
                            p.kind().as_str(),
                            &p.name(),
                            ResourceStatus::Pending,
                            Some(&message),
                            None,
                            tenant.generation,
                        )
                        .await?;
                }
                continue;
            }
            let pending: Vec<_> = level
                .iter()
                .map(|p| self.ensure_planned(cloud, p, &labels))
                .collect();
            let results: Vec<(&Planned, Result<Change, CloudError>)> = stream::iter(pending)
                .buffer_unordered(self.settings.resource_concurrency.max(1))
                .collect()
                .await;
            for (p, result) in results {
                let (kind, name) = (p.kind().as_str(), p.name());
                let row = find(&rows, p);
                match result {
                    Ok(change) => {
                        if change == Change::Created {
                            report.changed += 1;
                            self.store
                                .record_attempt(id, kind, &name, tenant.generation)
                                .await?;
                        }
                        let current = row.is_some_and(|r| {
                            r.status == ResourceStatus::Ready
                                && r.observed_generation == tenant.generation
                                && r.message.is_none()
                        });
                        if change == Change::Created || !current {
                            self.store
                                .set_resource_status(
                                    id,
                                    kind,
                                    &name,
                                    ResourceStatus::Ready,
                                    None,
                                    None,
                                    tenant.generation,
                                )
                                .await?;
                        }
                        self.emit(
                            id,
                            kind,
                            &name,
                            match change {
                                Change::Created => EventOutcome::Created,
                                Change::Unchanged => EventOutcome::Unchanged,
                            },
                        );
                    }
                    Err(e) => {
                        let message = e.to_string();
                        tracing::warn!(kind, name = %name, error = %message, "resource failed");
                        self.store
                            .record_attempt(id, kind, &name, tenant.generation)
                            .await?;
                        self.store
                            .set_resource_status(
                                id,
                                kind,
                                &name,
                                ResourceStatus::Failed,
                                Some(&message),
                                Some(&message),
                                tenant.generation,
                            )
                            .await?;
                        self.emit(id, kind, &name, EventOutcome::Failed);
                        blocked_by.get_or_insert_with(|| format!("{kind} {name}"));
                        report.failures.push(ResourceFailure {
                            kind,
                            name,
                            retryable: e.is_retryable(),
                            message,
                        });
                    }
                }
            }
        }

        let phase = if report.failures.is_empty() {
            self.store.set_phase(id, Phase::Ready, None).await?;
            self.store
                .mark_settled(id, &settled_mark(tenant.generation, &plan))
                .await?;
            Phase::Ready
        } else {
            self.store
                .set_phase(id, Phase::Failed, Some(&report.failure_summary()))
                .await?;
            Phase::Failed
        };
        report.phase = Some(phase);
        tracing::info!(phase = %phase, changed = report.changed, "provision pass done");
        Ok(report)
    }

    async fn teardown_pass(
        &self,
        cloud: &Cloud,
        tenant: &TenantRecord,
    ) -> Result<TenantReport, ReconcileError> {
        let id = &tenant.id;
        let plan = self.plan(cloud, id);
        let mut report = TenantReport {
            tenant: id.clone(),
            phase: Some(Phase::Deleting),
            changed: 0,
            kept: Vec::new(),
            failures: Vec::new(),
        };
        for level in plan.levels.iter().rev() {
            let (kept, to_remove): (Vec<&Planned>, Vec<&Planned>) =
                level.iter().partition(|p| tenant.keep_data && p.is_data());
            for p in kept {
                report.kept.push(format!("{} {}", p.kind(), p.name()));
                self.store
                    .delete_resource(id, p.kind().as_str(), &p.name())
                    .await?;
                self.emit(id, p.kind().as_str(), &p.name(), EventOutcome::Kept);
            }
            let pending: Vec<_> = to_remove
                .into_iter()
                .map(|p| self.remove_planned(cloud, p))
                .collect();
            let results: Vec<(&Planned, Result<(), CloudError>)> = stream::iter(pending)
                .buffer_unordered(self.settings.resource_concurrency.max(1))
                .collect()
                .await;
            for (p, result) in results {
                let (kind, name) = (p.kind().as_str(), p.name());
                match result {
                    Ok(()) => {
                        report.changed += 1;
                        self.store.delete_resource(id, kind, &name).await?;
                        self.emit(id, kind, &name, EventOutcome::Deleted);
                    }
                    Err(e) => {
                        let message = e.to_string();
                        self.store
                            .record_attempt(id, kind, &name, tenant.generation)
                            .await?;
                        self.store
                            .set_resource_status(
                                id,
                                kind,
                                &name,
                                ResourceStatus::Failed,
                                Some(&message),
                                Some(&message),
                                tenant.generation,
                            )
                            .await?;
                        self.emit(id, kind, &name, EventOutcome::Failed);
                        report.failures.push(ResourceFailure {
                            kind,
                            name,
                            retryable: e.is_retryable(),
                            message,
                        });
                    }
                }
            }
            // Dependents (bindings) must be gone before what they bind is deleted.
            if !report.failures.is_empty() {
                break;
            }
        }
        if report.failures.is_empty() {
            if let Err(e) = self
                .sweep_orphans(cloud, id, tenant.keep_data, &mut report)
                .await
            {
                report.failures.push(ResourceFailure {
                    kind: "tenant",
                    name: id.to_string(),
                    retryable: e.is_retryable(),
                    message: format!("sweeping labelled leftovers: {e}"),
                });
            }
        }
        if report.failures.is_empty() {
            self.store.delete_tenant(id).await?;
            self.store
                .audit(
                    "reconciler",
                    "tenant.deleted",
                    Some(id),
                    &serde_json::json!({ "kept": report.kept }),
                )
                .await?;
            report.phase = None;
        } else {
            self.store
                .set_phase(id, Phase::Deleting, Some(&report.failure_summary()))
                .await?;
        }
        Ok(report)
    }

    /// Deletes anything still labelled with the tenant that the plan did not name
    /// (left by an older plan or another prefix), so teardown leaves no orphan.
    async fn sweep_orphans(
        &self,
        cloud: &Cloud,
        id: &TenantId,
        keep_data: bool,
        report: &mut TenantReport,
    ) -> Result<(), CloudError> {
        let labels: Labels = naming::tenant_labels(id);
        let mut leftovers: Vec<Planned> = Vec::new();
        for s in cloud.secrets.list_secrets(&labels).await? {
            leftovers.push(Planned::Secret { name: s.name });
        }
        if !keep_data {
            for b in cloud.objects.list_buckets(&labels).await? {
                leftovers.push(Planned::Bucket { name: b.name });
            }
            for d in cloud.warehouse.list_datasets(&labels).await? {
                leftovers.push(Planned::Dataset { name: d.name });
            }
        }
        for job in cloud.jobs.list_jobs(&labels).await? {
            leftovers.push(Planned::Job { spec: job.spec });
        }
        for sa in cloud.identity.list_service_accounts(&labels).await? {
            leftovers.push(Planned::ServiceAccount {
                account_id: String::new(),
                email: sa.email,
            });
        }
        for p in &leftovers {
            self.with_retry(|| ensure::remove(cloud, p)).await?;
            report.changed += 1;
            self.emit(id, p.kind().as_str(), &p.name(), EventOutcome::Deleted);
        }
        Ok(())
    }

    // Named async fns (not closures returning async blocks) keep these
    // futures Send for any lifetime, so a pass can run on a spawned task.
    async fn ensure_planned<'p>(
        &self,
        cloud: &Cloud,
        p: &'p Planned,
        labels: &Labels,
    ) -> (&'p Planned, Result<Change, CloudError>) {
        (
            p,
            self.with_retry(|| ensure::ensure(cloud, p, labels)).await,
        )
    }

    async fn check_in_place<'p>(
        &self,
        cloud: &Cloud,
        p: &'p Planned,
        labels: &Labels,
    ) -> (&'p Planned, Result<bool, CloudError>) {
        (p, ensure::is_in_place(cloud, p, labels).await)
    }

    async fn remove_planned<'p>(
        &self,
        cloud: &Cloud,
        p: &'p Planned,
    ) -> (&'p Planned, Result<(), CloudError>) {
        (p, self.with_retry(|| ensure::remove(cloud, p)).await)
    }

    async fn with_retry<T, F, Fut>(&self, op: F) -> Result<T, CloudError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, CloudError>>,
    {
        cloud::retry::retry(&self.settings.retry, op).await
    }

    fn emit(&self, tenant: &TenantId, kind: &'static str, name: &str, outcome: EventOutcome) {
        if let Some(sink) = &self.events {
            sink(&Event {
                tenant: tenant.clone(),
                kind,
                name: name.to_owned(),
                outcome,
            });
        }
    }
}

/// What a pass over all tenants knows of one tenant before it looks.
struct Known<'a> {
    /// Its settled mark.
    mark: Option<&'a str>,
    /// Its resource rows (empty when its page's were not read).
    rows: &'a [ResourceRecord],
    /// Its cell's listings, when they could be read.
    observed: Option<&'a Observed>,
}

/// What a full pass that leaves every resource Ready records: the tenant's
/// generation and a digest of its plan (each resource's kind and name), so
/// that a new plan (a deployment that adds a grant, a new prefix) is not
/// taken as settled by an old mark.
fn settled_mark(generation: i64, plan: &TenantPlan) -> String {
    use sha2::Digest;
    let mut digest = sha2::Sha256::new();
    for p in plan.resources() {
        digest.update(p.kind().as_str());
        digest.update([0]);
        digest.update(p.name());
        digest.update([b'\n']);
    }
    let hex = hex::encode(digest.finalize());
    format!("{generation}:{}", &hex[..16])
}

/// What a pass over all tenants sees of one cell's cloud, read once: every
/// service account, bucket, dataset, secret and job definition the
/// deployment manages (one listing each, by the managed-by label), and the
/// project's IAM policy, which holds every tenant's project grants. A
/// settled tenant is then checked against these without a read of its own:
/// 10,000 tenants cost five listings and one policy per cell instead of
/// 130,000 reads.
///
/// A grant on a tenant's own bucket, datasets or secret is not re-read here
/// (that is a policy read per resource): it is trusted as recorded, Ready at
/// the tenant's generation. `tenants reconcile <id>` reads every grant.
pub struct Observed {
    accounts: HashMap<String, Labels>,
    buckets: HashMap<String, Labels>,
    datasets: HashMap<String, Labels>,
    secrets: HashMap<String, Labels>,
    jobs: HashMap<String, cloud::ports::JobSpec>,
    project: cloud::ports::Policy,
}

impl Observed {
    async fn list(cloud: &Cloud) -> Result<Observed, CloudError> {
        let managed = Labels::from([(
            naming::MANAGED_BY_LABEL.to_owned(),
            naming::MANAGED_BY_VALUE.to_owned(),
        )]);
        let (accounts, buckets, datasets, secrets, jobs, project) = tokio::join!(
            cloud.identity.list_service_accounts(&managed),
            cloud.objects.list_buckets(&managed),
            cloud.warehouse.list_datasets(&managed),
            cloud.secrets.list_secrets(&managed),
            cloud.jobs.list_jobs(&managed),
            cloud
                .identity
                .get_iam_policy(&cloud::ports::ResourceRef::Project),
        );
        Ok(Observed {
            accounts: accounts?.into_iter().map(|a| (a.email, a.labels)).collect(),
            buckets: buckets?.into_iter().map(|b| (b.name, b.labels)).collect(),
            datasets: datasets?.into_iter().map(|d| (d.name, d.labels)).collect(),
            secrets: secrets?.into_iter().map(|s| (s.name, s.labels)).collect(),
            jobs: jobs?
                .into_iter()
                .map(|j| (j.spec.name.clone(), j.spec))
                .collect(),
            project: project?,
        })
    }

    /// Whether the listings show `p` in place, owned by the tenant of `labels`.
    fn has(&self, p: &Planned, labels: &Labels) -> bool {
        let owned = |found: Option<&Labels>| found.is_some_and(|f| naming::has_labels(f, labels));
        match p {
            Planned::ServiceAccount { email, .. } => owned(self.accounts.get(email)),
            Planned::Bucket { name } => owned(self.buckets.get(name)),
            Planned::Dataset { name } => owned(self.datasets.get(name)),
            Planned::Secret { name } => owned(self.secrets.get(name)),
            Planned::Job { spec } => self.jobs.get(&spec.name) == Some(spec),
            Planned::Binding {
                resource: cloud::ports::ResourceRef::Project,
                role,
                member,
            } => self.project.has(role, member),
            Planned::Binding { .. } => true,
        }
    }
}

/// Aborts the task when dropped (a background loop that must not outlive
/// whatever owns it).
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn find<'a>(rows: &'a [ResourceRecord], p: &Planned) -> Option<&'a ResourceRecord> {
    let (kind, name) = (p.kind().as_str(), p.name());
    rows.iter().find(|r| r.kind == kind && r.name == name)
}
