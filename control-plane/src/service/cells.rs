//! Cells: registering the GCP projects tenants are placed in, listing them,
//! and closing or reopening them to new tenants. Placement itself happens
//! where a tenant is first recorded as wanted (`Store::want_tenant_placed`).

use serde::Serialize;
use time::OffsetDateTime;

use cloud::error::{CloudError, CloudResult};
use cloud::naming::{Labels, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use cloud::ports::{Credential, SecretPayload, SecretSpec};
use cloud::{CellLocation, Cloud, Clouds};
use job_contract::plan::XERO_APP_SECRET;
use xero::secret::SecretString;

use super::ServiceError;
use crate::store::{CellRecord, CellState, NewCell, Store, StoreError};

/// Tenants a cell holds unless told otherwise: Google's default quota of
/// service accounts per project (one per tenant).
pub const DEFAULT_CAPACITY: i64 = 100;

/// The most a cell may be given: far beyond any default quota, but a bound
/// on a typo.
pub const MAX_CAPACITY: i64 = 10_000;

/// The name `tenants show` gives a tenant without a cell, so no cell may
/// take it.
pub const NO_CELL: &str = "local";

/// A cell as `cells list|show` and `/v1/cells` present it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CellView {
    pub id: String,
    pub project: String,
    pub region: String,
    pub capacity: i64,
    pub state: CellState,
    /// Tenants placed in it.
    pub tenants: i64,
    /// Tenants it may still take (whatever its state).
    pub room: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Its tenants' ids (`cells show`, `GET /v1/cells/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_ids: Option<Vec<String>>,
}

impl From<CellRecord> for CellView {
    fn from(c: CellRecord) -> Self {
        CellView {
            room: c.room(),
            id: c.id,
            project: c.project,
            region: c.region,
            capacity: c.capacity,
            state: c.state,
            tenants: c.tenants,
            created_at: c.created_at,
            updated_at: c.updated_at,
            tenant_ids: None,
        }
    }
}

/// What registering a cell did.
#[derive(Debug, Clone, Serialize)]
pub struct AddedCell {
    #[serde(flatten)]
    pub cell: CellView,
    /// False when the same cell was registered before (nothing changed).
    pub created: bool,
    /// What writing the Xero app's client secret into the cell did; absent
    /// where tenants have no cells, or when this process has no client
    /// secret (then `cells sync-secret` must run before its tenants sync).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_secret: Option<AppSecretChange>,
}

/// Lowercase letters, digits and hyphens, starting with a letter and not
/// ending with a hyphen, `min..=max` characters long: the shape of cell ids,
/// GCP project ids and regions alike.
fn check_name(what: &str, value: &str, min: usize, max: usize) -> Result<(), String> {
    let ok = (min..=max).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && !value.ends_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        let shown: String = value.chars().take(64).collect();
        Err(format!(
            "invalid {what} {shown:?}: {min} to {max} lowercase letters, digits and hyphens, \
             starting with a letter and not ending with a hyphen"
        ))
    }
}

/// Checks a cell before it is registered: `Invalid` (nothing changed) if any
/// part is malformed.
pub fn validate(cell: &NewCell) -> Result<(), ServiceError> {
    let invalid = |m: String| ServiceError::invalid("invalid_cell", m);
    check_name("cell id", &cell.id, 3, 40).map_err(invalid)?;
    if cell.id == NO_CELL {
        return Err(invalid(format!(
            "the cell id {NO_CELL:?} is reserved: it names tenants without a cell"
        )));
    }
    // Google's rule for project ids: 6 to 30 characters.
    check_name("project id", &cell.project, 6, 30).map_err(invalid)?;
    check_name("region", &cell.region, 2, 63).map_err(invalid)?;
    if !(1..=MAX_CAPACITY).contains(&cell.capacity) {
        return Err(invalid(format!(
            "invalid capacity {}: a cell holds 1 to {MAX_CAPACITY} tenants",
            cell.capacity
        )));
    }
    Ok(())
}

fn cell_not_found(id: &str) -> ServiceError {
    let shown: String = id.chars().take(64).collect();
    ServiceError::not_found("cell_not_found", format!("cell {shown} does not exist"))
}

/// Registers a cell, active (audited by `actor`), and, where tenants live in
/// cells, writes the Xero app's `client_secret` (when this process has it)
/// into it for its tenants' jobs. The same cell again is a no-op but for the
/// secret, which is written again if it differs (so a failed write is mended
/// by repeating the call); another cell under its id or its project is a
/// conflict.
pub async fn add(
    store: &Store,
    clouds: &Clouds,
    cell: NewCell,
    client_secret: Option<&SecretString>,
    actor: &str,
) -> Result<AddedCell, ServiceError> {
    validate(&cell)?;
    let (record, created) = store.add_cell(&cell).await.map_err(|e| match e {
        StoreError::CellConflict(message) => ServiceError::conflict("cell_conflict", message),
        e => e.into(),
    })?;
    if created {
        store
            .audit(
                actor,
                "cell.add",
                None,
                &serde_json::json!({
                    "cell": record.id,
                    "project": record.project,
                    "region": record.region,
                    "capacity": record.capacity,
                }),
            )
            .await?;
    }
    let app_secret = match client_secret {
        Some(secret) if clouds.needs_cells() => {
            let synced = sync_app_secret(store, clouds, Some(&record.id), secret, actor).await?;
            synced.first().map(|s| s.change)
        }
        _ => None,
    };
    Ok(AddedCell {
        cell: record.into(),
        created,
        app_secret,
    })
}

/// Every cell, oldest first.
pub async fn list(store: &Store) -> Result<Vec<CellView>, ServiceError> {
    Ok(store
        .list_cells()
        .await?
        .into_iter()
        .map(CellView::from)
        .collect())
}

/// One cell with its tenants.
pub async fn show(store: &Store, id: &str) -> Result<CellView, ServiceError> {
    let record = store
        .get_cell(id)
        .await?
        .ok_or_else(|| cell_not_found(id))?;
    let tenants = store.tenants_in_cell(id).await?;
    let mut view = CellView::from(record);
    view.tenant_ids = Some(tenants.iter().map(|t| t.to_string()).collect());
    Ok(view)
}

/// Closes a cell to new tenants; its tenants stay (audited by `actor`).
pub async fn drain(store: &Store, id: &str, actor: &str) -> Result<CellView, ServiceError> {
    let record = store
        .drain_cell(id)
        .await?
        .ok_or_else(|| cell_not_found(id))?;
    store
        .audit(
            actor,
            "cell.drain",
            None,
            &serde_json::json!({ "cell": record.id }),
        )
        .await?;
    Ok(record.into())
}

/// Opens a cell to new tenants again (audited by `actor`); one without room
/// stays `full`.
pub async fn activate(store: &Store, id: &str, actor: &str) -> Result<CellView, ServiceError> {
    let record = store
        .activate_cell(id)
        .await?
        .ok_or_else(|| cell_not_found(id))?;
    store
        .audit(
            actor,
            "cell.activate",
            None,
            &serde_json::json!({ "cell": record.id, "state": record.state }),
        )
        .await?;
    Ok(record.into())
}

/// What writing the Xero app's client secret into one cell did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppSecretChange {
    /// The secret was made, with its first version.
    Created,
    /// A new version was added (a rotated client secret).
    Rotated,
    /// Its newest version already held the value.
    Unchanged,
}

impl std::fmt::Display for AppSecretChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AppSecretChange::Created => "written (first version)",
            AppSecretChange::Rotated => "rotated (a new version)",
            AppSecretChange::Unchanged => "unchanged",
        })
    }
}

/// One cell's outcome of [`sync_app_secret`].
#[derive(Debug, Clone, Serialize)]
pub struct AppSecretSync {
    pub cell: String,
    pub project: String,
    pub change: AppSecretChange,
}

/// Versions of the app's secret kept after a rotation: the new one, and the
/// one before it while runs that started on it finish.
const APP_SECRET_VERSIONS_KEPT: usize = 2;

/// Writes the Xero app's client secret into `cloud`'s secret
/// [`XERO_APP_SECRET`] (created if absent, labelled as the platform's), as a
/// new version only when it differs from the newest; older versions but the
/// one before are destroyed. Tenant jobs read it by reference, each with
/// its own read-only grant. Safe to repeat.
pub async fn write_app_secret(
    cloud: &Cloud,
    client_secret: &SecretString,
) -> CloudResult<AppSecretChange> {
    let spec = SecretSpec {
        name: XERO_APP_SECRET.to_owned(),
        labels: app_secret_labels(),
    };
    let info = cloud.secrets.ensure_secret(&spec).await?;
    let wanted = client_secret.expose_secret().as_bytes();
    let change = match info.latest_version {
        None => AppSecretChange::Created,
        Some(_) => match cloud
            .secrets
            .access_latest(&Credential::Platform, XERO_APP_SECRET)
            .await
        {
            Ok((_, current)) if current.expose() == wanted => {
                return Ok(AppSecretChange::Unchanged)
            }
            Ok(_) => AppSecretChange::Rotated,
            // Its versions were all destroyed or disabled: write one again.
            Err(CloudError::NotFound { .. }) => AppSecretChange::Created,
            Err(e) => return Err(e),
        },
    };
    cloud
        .secrets
        .add_version(
            &Credential::Platform,
            XERO_APP_SECRET,
            &SecretPayload::new(wanted.to_vec()),
        )
        .await?;
    if change == AppSecretChange::Rotated {
        cloud
            .secrets
            .destroy_old_versions(
                XERO_APP_SECRET,
                APP_SECRET_VERSIONS_KEPT,
                OffsetDateTime::now_utc(),
            )
            .await?;
    }
    Ok(change)
}

/// The labels of the app's secret: the platform's, no tenant's, so that no
/// tenant's teardown or label listing ever counts it as the tenant's.
pub fn app_secret_labels() -> Labels {
    Labels::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
        ("purpose".to_owned(), "xero-app".to_owned()),
    ])
}

/// Writes the Xero app's client secret into one cell (`only`) or every
/// cell, for tenant jobs to read by reference (audited by `actor` when
/// something changed). A cell that fails does not stop the others; the
/// first failure is returned after all were tried.
pub async fn sync_app_secret(
    store: &Store,
    clouds: &Clouds,
    only: Option<&str>,
    client_secret: &SecretString,
    actor: &str,
) -> Result<Vec<AppSecretSync>, ServiceError> {
    let cells = match only {
        Some(id) => vec![store
            .get_cell(id)
            .await?
            .ok_or_else(|| cell_not_found(id))?],
        None => store.list_cells().await?,
    };
    let mut done = Vec::with_capacity(cells.len());
    let mut failed = None;
    for cell in cells {
        let location = CellLocation {
            project: cell.project.clone(),
            region: cell.region.clone(),
        };
        let written = match clouds.for_cell(Some(&location)) {
            Ok(cloud) => write_app_secret(&cloud, client_secret).await,
            Err(e) => Err(e),
        };
        match written {
            Ok(change) => {
                if change != AppSecretChange::Unchanged {
                    store
                        .audit(
                            actor,
                            "cell.app_secret",
                            None,
                            &serde_json::json!({ "cell": cell.id, "change": change }),
                        )
                        .await?;
                }
                done.push(AppSecretSync {
                    cell: cell.id,
                    project: cell.project,
                    change,
                });
            }
            Err(e) => {
                tracing::warn!(cell = %cell.id, error = %e, "could not write the Xero app's client secret");
                failed.get_or_insert_with(|| ServiceError::Unavailable {
                    code: "cloud_unavailable",
                    message: format!(
                        "cell {}: could not write the Xero app's client secret: {e}",
                        cell.id
                    ),
                });
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(id: &str, project: &str, region: &str, capacity: i64) -> NewCell {
        NewCell {
            id: id.to_owned(),
            project: project.to_owned(),
            region: region.to_owned(),
            capacity,
        }
    }

    #[test]
    fn cells_are_checked_before_they_are_registered() {
        assert!(validate(&cell(
            "cell-eu1-001",
            "ll-cell-eu1-001",
            "europe-west1",
            100
        ))
        .is_ok());
        for bad in [
            cell("Cell-1", "ll-project", "europe-west1", 100),
            cell("c1", "ll-project", "europe-west1", 100),
            cell("cell-", "ll-project", "europe-west1", 100),
            cell("local", "ll-project", "europe-west1", 100),
            cell("cell-1", "short", "europe-west1", 100),
            cell("cell-1", "ll_project", "europe-west1", 100),
            cell("cell-1", "ll-project", "Europe", 100),
            cell("cell-1", "ll-project", "europe-west1", 0),
            cell("cell-1", "ll-project", "europe-west1", MAX_CAPACITY + 1),
        ] {
            assert!(
                matches!(validate(&bad), Err(ServiceError::Invalid { .. })),
                "{bad:?}"
            );
        }
    }
}
