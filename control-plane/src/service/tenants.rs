//! Tenant operations: view, list, provision, tear down, schedule.

use std::collections::BTreeSet;
use std::time::Duration;

use cloud::error::CloudError;
use cloud::naming::{DeploymentPrefix, TenantId};
use cloud::ports::Credential;
use cloud::Cloud;
use serde::Serialize;
use xero::oauth::OAuthClient;

use super::ServiceError;
use crate::output::{TenantView, XeroView};
use crate::reconciler::{Reconciler, TenantReport};
use crate::runs::Runs;
use crate::store::{RunRecord, Store, StoreError};
use crate::tokens::{read_token_set, refresh_tenant_tokens, TokenLeaseSettings};

/// The message of a run a teardown cancelled.
pub const CANCELLED_BY_TEARDOWN: &str = "cancelled by teardown";

/// How long a teardown waits for the runs it cancels to stop.
const CANCEL_WAIT: Duration = Duration::from_secs(60);

/// An access token this close to its expiry is refreshed before telling Xero.
const ACCESS_TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// The tenant as `tenants show` and `GET /v1/tenants/{id}` present it.
pub async fn view(store: &Store, id: &TenantId) -> Result<TenantView, ServiceError> {
    TenantView::load(store, id)
        .await?
        .ok_or_else(|| ServiceError::tenant_not_found(id))
}

/// Tenants a page holds when the caller does not say.
pub const PAGE_DEFAULT: u32 = 100;
/// Tenants a page holds at most.
pub const PAGE_MAX: u32 = 1_000;

/// A page of tenants by id, and the cursor of the next one.
#[derive(Debug, Clone, Serialize)]
pub struct TenantListPage {
    pub tenants: Vec<TenantView>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next: Option<TenantId>,
}

/// Up to `limit` (1 to [`PAGE_MAX`]) tenants after `after`, by id: three
/// queries, whatever the page's size and however many tenants there are.
pub async fn list_page(
    store: &Store,
    after: Option<&TenantId>,
    limit: u32,
) -> Result<TenantListPage, ServiceError> {
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(ServiceError::invalid(
            "invalid_limit",
            format!("a page holds 1 to {PAGE_MAX} tenants, not {limit}"),
        ));
    }
    let page = store.tenant_page(after, limit).await?;
    Ok(TenantListPage {
        tenants: page
            .tenants
            .iter()
            .map(|t| {
                let xero = XeroView {
                    organisations: t.organisations.clone(),
                    needs_consent: t.needs_consent,
                };
                TenantView::new(&t.tenant, &t.resources, xero)
            })
            .collect(),
        next: page.next,
    })
}

/// Every tenant, by id, read a page at a time.
pub async fn list(store: &Store) -> Result<Vec<TenantView>, ServiceError> {
    let mut views = Vec::new();
    let mut after: Option<TenantId> = None;
    loop {
        let page = list_page(store, after.as_ref(), PAGE_MAX).await?;
        views.extend(page.tenants);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(views),
        }
    }
}

/// Records the tenant as wanted (audited by `actor`) and runs one pass.
pub async fn provision(
    reconciler: &Reconciler,
    id: &TenantId,
    actor: &str,
) -> Result<TenantReport, ServiceError> {
    Ok(reconciler.provision(id, actor).await?)
}

/// What a teardown did.
#[derive(Debug, Clone, Serialize)]
pub struct TeardownOutcome {
    /// The pass that removed the resources.
    pub report: TenantReport,
    /// The runs in progress it cancelled (with force), as recorded after.
    pub cancelled: Vec<RunRecord>,
    /// Whether Xero was told.
    pub xero: XeroDisconnect,
}

/// Telling Xero that the tenant is gone: its connections deleted and its
/// refresh token revoked. Never holds a token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct XeroDisconnect {
    /// Xero was told: the refresh token is revoked and no step failed.
    pub told: bool,
    /// Why it was not tried (no Xero app configured, no token set).
    pub skipped: Option<String>,
    pub connections_deleted: usize,
    /// Organisations whose connection stays, because another tenant of this
    /// deployment is connected to them too.
    pub connections_kept: Vec<String>,
    pub refresh_token_revoked: bool,
    /// What failed; the teardown went on regardless.
    pub problems: Vec<String>,
}

/// Tears the tenant down (audited by `actor`). A tenant with a run in
/// progress is refused (`run_in_progress`) unless `force`, which cancels the
/// run first and waits for it to stop. Then, with a Xero app (`xero`), the
/// tenant's Xero connections are deleted and its refresh token revoked while
/// its secret still holds them; a failure there is reported and audited but
/// does not stop the teardown (a dead token must not make a tenant
/// undeletable). Last, the tenant is marked for deletion and reconciled away.
pub async fn teardown(
    reconciler: &Reconciler,
    runs: &Runs,
    xero: Option<&OAuthClient>,
    id: &TenantId,
    keep_data: bool,
    force: bool,
    actor: &str,
) -> Result<TeardownOutcome, ServiceError> {
    let store = reconciler.store();
    if store.get_tenant(id).await?.is_none() {
        return Err(ServiceError::tenant_not_found(id));
    }
    if let Some(run) = store.active_run(id).await? {
        if !force {
            return Err(ServiceError::conflict(
                "run_in_progress",
                format!(
                    "tenant {id} has a run in progress ({}); nothing was changed. \
                     Tear it down with force to cancel the run first",
                    run.id
                ),
            ));
        }
    }
    let cancelled = runs
        .cancel_active(id, CANCELLED_BY_TEARDOWN, CANCEL_WAIT)
        .await?;
    if !cancelled.is_empty() {
        let detail: Vec<serde_json::Value> = cancelled
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id,
                    "command": r.command.as_str(),
                    "execution": r.execution_id,
                    "status": r.status.as_str(),
                })
            })
            .collect();
        store
            .audit(
                actor,
                "tenant.runs_cancelled",
                Some(id),
                &serde_json::json!({ "runs": detail }),
            )
            .await?;
    }
    let told = match runs.cloud_of(id).await {
        Ok(cloud) => disconnect_xero(&cloud, store, xero, id, reconciler.prefix()).await?,
        Err(e) => XeroDisconnect {
            problems: vec![format!("finding the tenant's cell: {e}")],
            ..XeroDisconnect::default()
        },
    };
    if !told.problems.is_empty() {
        tracing::warn!(tenant = %id, problems = ?told.problems, "Xero was not wholly told of the teardown");
    }
    let detail = serde_json::to_value(&told)
        .map_err(|e| ServiceError::internal("recording the Xero disconnect", e))?;
    store
        .audit(actor, "tenant.xero_disconnect", Some(id), &detail)
        .await?;
    let report = reconciler.teardown(id, keep_data, actor).await?;
    Ok(TeardownOutcome {
        report,
        cancelled,
        xero: told,
    })
}

/// Deletes the tenant's Xero connections and revokes its refresh token,
/// refreshing the token set first when its access token has expired. Only a
/// store error is returned; what Xero (or the secret) refused is in
/// `problems`.
async fn disconnect_xero(
    cloud: &Cloud,
    store: &Store,
    xero: Option<&OAuthClient>,
    id: &TenantId,
    prefix: Option<&DeploymentPrefix>,
) -> Result<XeroDisconnect, StoreError> {
    let mut outcome = XeroDisconnect::default();
    let Some(oauth) = xero else {
        outcome.skipped = Some("no Xero app is configured".to_owned());
        return Ok(outcome);
    };
    let tokens = match read_token_set(cloud, &Credential::Platform, id).await {
        Ok((_, tokens)) => tokens,
        Err(CloudError::NotFound { .. }) => {
            outcome.skipped = Some("the tenant has no Xero token set".to_owned());
            return Ok(outcome);
        }
        Err(e) => {
            outcome
                .problems
                .push(format!("reading the tenant's token set: {e}"));
            return Ok(outcome);
        }
    };
    let tokens = if tokens.is_expiring_within(ACCESS_TOKEN_MARGIN) {
        let settings = TokenLeaseSettings::default();
        match refresh_tenant_tokens(cloud, store, oauth, id, prefix, settings).await {
            Ok(fresh) => fresh,
            Err(e) => {
                // Revoking the old refresh token is still worth a try.
                outcome.problems.push(e.to_string());
                tokens
            }
        }
    } else {
        tokens
    };

    // The tenant's own organisations, but not one another tenant shares.
    let mut organisations: BTreeSet<String> = tokens.tenant_ids.iter().cloned().collect();
    organisations.extend(store.connections_of(id).await?);
    match oauth.connections(&tokens.access_token).await {
        Ok(connections) => {
            for connection in connections {
                if !organisations.contains(&connection.tenant_id) {
                    continue;
                }
                let shared = store
                    .tenants_of_organisation(&connection.tenant_id)
                    .await?
                    .iter()
                    .any(|t| t != id);
                if shared {
                    outcome.connections_kept.push(connection.tenant_id);
                    continue;
                }
                match oauth.disconnect(&tokens.access_token, &connection.id).await {
                    Ok(()) => outcome.connections_deleted += 1,
                    Err(e) => outcome.problems.push(format!(
                        "deleting the connection to organisation {}: {e}",
                        connection.tenant_id
                    )),
                }
            }
        }
        Err(e) => outcome
            .problems
            .push(format!("listing the Xero connections: {e}")),
    }
    match oauth.revoke(&tokens.refresh_token).await {
        Ok(()) => outcome.refresh_token_revoked = true,
        Err(e) => outcome
            .problems
            .push(format!("revoking the refresh token: {e}")),
    }
    outcome.told = outcome.refresh_token_revoked && outcome.problems.is_empty();
    Ok(outcome)
}

/// Sets (or, with `None`, resets to the default) when the tenant syncs.
pub async fn set_schedule(
    store: &Store,
    id: &TenantId,
    schedule: Option<&str>,
    actor: &str,
) -> Result<(), ServiceError> {
    if let Some(s) = schedule {
        crate::scheduler::parse_schedule(s)
            .map_err(|e| ServiceError::invalid("invalid_schedule", e.to_string()))?;
    }
    match store.set_schedule(id, schedule).await {
        Err(StoreError::TenantNotFound(_)) => return Err(ServiceError::tenant_not_found(id)),
        other => other?,
    }
    store
        .audit(
            actor,
            "tenant.schedule",
            Some(id),
            &serde_json::json!({ "schedule": schedule }),
        )
        .await?;
    Ok(())
}
