//! Cells: registering the GCP projects tenants are placed in, listing them,
//! and closing or reopening them to new tenants. Placement itself happens
//! where a tenant is first recorded as wanted (`Store::want_tenant_placed`).

use serde::Serialize;
use time::OffsetDateTime;

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

/// Registers a cell, active (audited by `actor`). The same cell again is a
/// no-op; another cell under its id or its project is a conflict.
pub async fn add(store: &Store, cell: NewCell, actor: &str) -> Result<AddedCell, ServiceError> {
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
    Ok(AddedCell {
        cell: record.into(),
        created,
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
