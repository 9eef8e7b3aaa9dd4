//! Cells: the GCP projects (each with a region) that tenants are placed in,
//! so that every project stays within Google's per-project quotas (100
//! service accounts, 1,500 principals per IAM policy). A cell holds at most
//! `capacity` tenants; placement puts a new tenant in the active cell with the
//! most room (ties: the oldest), and a cell that reaches its capacity becomes
//! `full`. A `draining` cell keeps its tenants and gets no new one.
//!
//! Placement is race-safe on both backends without counters that could
//! drift: the tenants table is the one count. A placement locks the chosen
//! cell's row with an update that changes nothing (a row lock on PostgreSQL,
//! the write lock on SQLite), then inserts the tenant only if the cell still
//! has room, counted by a statement that runs after the lock was granted and
//! so sees every placement committed before. A cell found without room is
//! marked full and the next one is tried.

use cloud::TenantId;
use serde::Serialize;
use sqlx::any::AnyRow;
use time::OffsetDateTime;

use super::{get, get_parsed, get_time, now_ms, Store, StoreError};
use super::{CellState, Desired, TenantRecord};

/// What placement does when no cell is registered at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WithoutCells {
    /// The tenant gets no cell (shown as `local`): the local adapter needs none.
    #[default]
    Unplaced,
    /// Refuse with [`StoreError::NoCells`]: on GCP every tenant needs a project.
    Refuse,
}

/// A cell and how full it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CellRecord {
    pub id: String,
    /// The GCP project id.
    pub project: String,
    pub region: String,
    /// Tenants at most.
    pub capacity: i64,
    pub state: CellState,
    /// Tenants placed in it now.
    pub tenants: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl CellRecord {
    /// Tenants it may still take (ignoring its state).
    pub fn room(&self) -> i64 {
        (self.capacity - self.tenants).max(0)
    }
}

/// A cell to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCell {
    pub id: String,
    pub project: String,
    pub region: String,
    pub capacity: i64,
}

/// The number of tenants in the cell `c.id`, as SQL.
const TENANT_COUNT: &str = "(SELECT COUNT(*) FROM tenants t WHERE t.cell_id = c.id)";

fn cell_columns() -> String {
    format!(
        "c.id, c.project, c.region, c.capacity, c.state, {TENANT_COUNT} AS tenants, \
         c.created_at, c.updated_at"
    )
}

fn cell_from_row(row: &AnyRow) -> Result<CellRecord, StoreError> {
    Ok(CellRecord {
        id: get(row, "id")?,
        project: get(row, "project")?,
        region: get(row, "region")?,
        capacity: get(row, "capacity")?,
        state: get_parsed(row, "state")?,
        tenants: get(row, "tenants")?,
        created_at: get_time(row, "created_at")?,
        updated_at: get_time(row, "updated_at")?,
    })
}

/// Attempts at placing one tenant before giving up. Every failed attempt
/// means a cell stopped taking tenants (it filled up or was drained), so this
/// bounds the cells that can fill under one placement, not the retries of a
/// busy database.
const PLACEMENT_ATTEMPTS: usize = 1_000;

impl Store {
    /// Registers a cell, `active`. Registering the same cell again (same
    /// project, region and capacity) changes nothing and returns it with
    /// `false`; a different cell under the same id, or another cell of the
    /// same project, is refused with [`StoreError::CellConflict`].
    pub async fn add_cell(&self, cell: &NewCell) -> Result<(CellRecord, bool), StoreError> {
        let now = now_ms();
        // Without a conflict target this skips a clash on either unique key.
        let inserted = self
            .execute(
                sqlx::query(
                    "INSERT INTO cells (id, project, region, capacity, state, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, 'active', $5, $5) ON CONFLICT DO NOTHING",
                )
                .bind(&cell.id)
                .bind(&cell.project)
                .bind(&cell.region)
                .bind(cell.capacity)
                .bind(now),
            )
            .await?;
        if let Some(existing) = self.get_cell(&cell.id).await? {
            let same = existing.project == cell.project
                && existing.region == cell.region
                && existing.capacity == cell.capacity;
            if inserted == 1 || same {
                return Ok((existing, inserted == 1));
            }
            return Err(StoreError::CellConflict(format!(
                "cell {} exists already, with project {}, region {} and capacity {}",
                existing.id, existing.project, existing.region, existing.capacity
            )));
        }
        let holder = self
            .fetch_optional(
                sqlx::query("SELECT id FROM cells WHERE project = $1").bind(&cell.project),
                |row| get::<String>(row, "id"),
            )
            .await?;
        Err(StoreError::CellConflict(match holder {
            Some(other) => format!(
                "project {} already holds cell {other} (a project's quotas are one cell's)",
                cell.project
            ),
            None => format!("cell {} could not be registered; try again", cell.id),
        }))
    }

    pub async fn get_cell(&self, id: &str) -> Result<Option<CellRecord>, StoreError> {
        let sql = format!("SELECT {} FROM cells c WHERE c.id = $1", cell_columns());
        self.fetch_optional(sqlx::query(&sql).bind(id), cell_from_row)
            .await
    }

    /// Every cell, oldest first.
    pub async fn list_cells(&self) -> Result<Vec<CellRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM cells c ORDER BY c.created_at, c.id",
            cell_columns()
        );
        self.fetch_all(sqlx::query(&sql), cell_from_row).await
    }

    /// The ids of the tenants placed in cell `id`, in order.
    pub async fn tenants_in_cell(&self, id: &str) -> Result<Vec<TenantId>, StoreError> {
        self.fetch_all(
            sqlx::query("SELECT id FROM tenants WHERE cell_id = $1 ORDER BY id").bind(id),
            |row| get_parsed(row, "id"),
        )
        .await
    }

    /// Closes cell `id` to new tenants; its tenants stay. `None` when there
    /// is no such cell.
    pub async fn drain_cell(&self, id: &str) -> Result<Option<CellRecord>, StoreError> {
        self.execute(
            sqlx::query(
                "UPDATE cells SET state = 'draining', updated_at = $2 \
                 WHERE id = $1 AND state <> 'draining'",
            )
            .bind(id)
            .bind(now_ms()),
        )
        .await?;
        self.get_cell(id).await
    }

    /// Opens cell `id` to new tenants again: `active`, or `full` when it has
    /// no room. `None` when there is no such cell.
    pub async fn activate_cell(&self, id: &str) -> Result<Option<CellRecord>, StoreError> {
        let sql = "UPDATE cells SET \
                     state = CASE WHEN (SELECT COUNT(*) FROM tenants t WHERE t.cell_id = cells.id) \
                       >= capacity THEN 'full' ELSE 'active' END, \
                     updated_at = $2 \
                   WHERE id = $1";
        self.execute(sqlx::query(sql).bind(id).bind(now_ms()))
            .await?;
        self.get_cell(id).await
    }

    /// Records that tenant `id` is wanted, as [`Store::want_tenant`] does,
    /// and places it in a cell if it has none: the active cell with the most
    /// room, the oldest of equals. A cell it fills becomes `full`. A tenant
    /// keeps the cell it has; a refused placement records nothing.
    ///
    /// Refused with [`StoreError::NoCellRoom`] when cells are registered but
    /// none is active with room, and when none is registered, as `without`
    /// says: the tenant gets no cell, or [`StoreError::NoCells`].
    pub async fn want_tenant_placed(
        &self,
        id: &TenantId,
        without: WithoutCells,
    ) -> Result<(TenantRecord, bool), StoreError> {
        for _ in 0..PLACEMENT_ATTEMPTS {
            let existing = self.get_tenant(id).await?;
            match &existing {
                Some(t) if t.desired == Desired::Absent => {
                    return Err(StoreError::TenantDeleting(id.clone()))
                }
                Some(t) if t.cell.is_some() => return Ok((t.clone(), false)),
                _ => {}
            }
            let Some(cell) = self.roomiest_cell().await? else {
                return match (self.count_cells().await?, without, existing) {
                    // Recorded before cells were registered: it stays as it is.
                    (_, WithoutCells::Unplaced, Some(t)) => Ok((t, false)),
                    (0, WithoutCells::Unplaced, None) => self.want_unplaced(id).await,
                    (0, WithoutCells::Refuse, _) => Err(StoreError::NoCells(id.clone())),
                    _ => Err(StoreError::NoCellRoom(id.clone())),
                };
            };
            if let Some(created) = self.place_in(id, &cell).await? {
                let placed = self
                    .get_tenant(id)
                    .await?
                    .ok_or_else(|| StoreError::TenantNotFound(id.clone()))?;
                return Ok((placed, created));
            }
        }
        Err(StoreError::NoCellRoom(id.clone()))
    }

    /// Whether [`Store::want_tenant_placed`] would place tenant `id` now:
    /// `Ok` when it has a cell, needs none, or a cell has room; otherwise
    /// the error placement would give. It reserves nothing (placement checks
    /// again): it lets a consent be refused before the client is sent to
    /// Xero, or its connect link is used up.
    pub async fn check_placement(
        &self,
        id: &TenantId,
        without: WithoutCells,
    ) -> Result<(), StoreError> {
        let existing = self.get_tenant(id).await?;
        match &existing {
            Some(t) if t.desired == Desired::Absent => {
                return Err(StoreError::TenantDeleting(id.clone()))
            }
            Some(t) if t.cell.is_some() => return Ok(()),
            Some(_) if without == WithoutCells::Unplaced => return Ok(()),
            _ => {}
        }
        if self.roomiest_cell().await?.is_some() {
            return Ok(());
        }
        match (self.count_cells().await?, without) {
            (0, WithoutCells::Unplaced) => Ok(()),
            (0, WithoutCells::Refuse) => Err(StoreError::NoCells(id.clone())),
            _ => Err(StoreError::NoCellRoom(id.clone())),
        }
    }

    /// The active cell with the most room (the oldest of equals), if any
    /// has room. Unlocked: [`Store::place_in`] checks again.
    async fn roomiest_cell(&self) -> Result<Option<String>, StoreError> {
        let sql = format!(
            "SELECT c.id FROM cells c \
             WHERE c.state = 'active' AND {TENANT_COUNT} < c.capacity \
             ORDER BY c.capacity - {TENANT_COUNT} DESC, c.created_at, c.id \
             LIMIT 1"
        );
        self.fetch_optional(sqlx::query(&sql), |row| get(row, "id"))
            .await
    }

    async fn count_cells(&self) -> Result<i64, StoreError> {
        Ok(self
            .fetch_optional(sqlx::query("SELECT COUNT(*) AS n FROM cells"), |row| {
                get::<i64>(row, "n")
            })
            .await?
            .unwrap_or(0))
    }

    /// One attempt at placing tenant `id` in `cell`, in a transaction that
    /// holds the cell's row. `Some(created)` when the tenant is now placed
    /// there (`created`: its record is new); `None` when the cell stopped
    /// taking tenants, or the tenant changed meanwhile: the caller looks again.
    async fn place_in(&self, id: &TenantId, cell: &str) -> Result<Option<bool>, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(|e| self.db_err(e))?;
        // The lock: an update that changes nothing. Later statements of this
        // transaction start after it was granted, so they count every
        // placement committed before (READ COMMITTED on PostgreSQL; SQLite
        // has one writer at a time).
        let locked = self
            .execute_in(
                &mut *tx,
                sqlx::query("UPDATE cells SET state = state WHERE id = $1 AND state = 'active'")
                    .bind(cell),
            )
            .await?;
        if locked == 0 {
            tx.rollback().await.map_err(|e| self.db_err(e))?;
            return Ok(None);
        }
        let has_room = "(SELECT COUNT(*) FROM tenants WHERE cell_id = $2) \
                        < (SELECT capacity FROM cells WHERE id = $2)";
        // A new tenant, or one recorded before it could have a cell.
        let inserted = self
            .execute_in(
                &mut *tx,
                sqlx::query(&format!(
                    "INSERT INTO tenants \
                       (id, desired, generation, phase, keep_data, message, cell_id, created_at, updated_at) \
                     SELECT $1, 'present', 1, 'Pending', FALSE, NULL, $2, $3, $3 WHERE {has_room} \
                     ON CONFLICT (id) DO NOTHING"
                ))
                .bind(id.as_str())
                .bind(cell)
                .bind(now),
            )
            .await?;
        let placed = inserted == 1
            || self
                .execute_in(
                    &mut *tx,
                    sqlx::query(&format!(
                        "UPDATE tenants SET cell_id = $2, updated_at = $3 \
                         WHERE id = $1 AND cell_id IS NULL AND desired = 'present' AND {has_room}"
                    ))
                    .bind(id.as_str())
                    .bind(cell)
                    .bind(now),
                )
                .await?
                == 1;
        // Full now (by this placement, or found so): no longer a candidate.
        self.execute_in(
            &mut *tx,
            sqlx::query(
                "UPDATE cells SET state = 'full', updated_at = $2 \
                 WHERE id = $1 AND state = 'active' \
                   AND (SELECT COUNT(*) FROM tenants WHERE cell_id = $1) >= capacity",
            )
            .bind(cell)
            .bind(now),
        )
        .await?;
        tx.commit().await.map_err(|e| self.db_err(e))?;
        Ok(placed.then_some(inserted == 1))
    }
}
