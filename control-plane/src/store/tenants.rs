//! Tenants: desired state, generation, phase.

use cloud::TenantId;
use sqlx::any::AnyRow;

use super::{get, get_bool, get_parsed, get_time, now_ms, Store, StoreError};
use super::{Desired, Phase, ResourceRecord, TenantRecord, WithoutCells};

/// The columns of a [`TenantRecord`], as a literal for `concat!`.
macro_rules! tenant_columns {
    () => {
        "id, desired, generation, phase, keep_data, message, cell_id, created_at, updated_at"
    };
}
pub(super) use tenant_columns;

const TENANT_COLUMNS: &str = tenant_columns!();

/// One tenant by id (every run start, every pass, every view).
pub(super) const GET_TENANT: &str =
    concat!("SELECT ", tenant_columns!(), " FROM tenants WHERE id = $1");

/// A page of tenants after `$1` in id order, `$2` rows at most: a range of
/// the primary key, however many tenants come before it.
pub(super) const TENANT_PAGE: &str = concat!(
    "SELECT ",
    tenant_columns!(),
    ", needs_consent FROM tenants WHERE id > $1 ORDER BY id LIMIT $2"
);

/// [`TENANT_PAGE`] with each tenant's settled mark: what a pass over all
/// tenants reads.
pub(super) const PASS_PAGE: &str = concat!(
    "SELECT ",
    tenant_columns!(),
    ", settled FROM tenants WHERE id > $1 ORDER BY id LIMIT $2"
);

pub(super) const MARK_SETTLED: &str =
    "UPDATE tenants SET settled = $2 WHERE id = $1 AND (settled IS NULL OR settled <> $2)";

/// A page of tenants as `tenants list` and `GET /v1/tenants` show them: each
/// tenant with its resources and Xero connections, read in three queries
/// whatever the page's size (the tenants, then the resources and the
/// connections of the page's id range).
#[derive(Debug, Clone, PartialEq)]
pub struct TenantPage {
    pub tenants: Vec<ListedTenant>,
    /// The cursor of the next page (the last id of this one); `None` when
    /// this page is the last. Stable: a page starts after an id, so tenants
    /// created or deleted meanwhile shift nothing.
    pub next: Option<TenantId>,
}

/// One tenant of a [`TenantPage`].
#[derive(Debug, Clone, PartialEq)]
pub struct ListedTenant {
    pub tenant: TenantRecord,
    pub resources: Vec<ResourceRecord>,
    /// Connected Xero organisations, by id.
    pub organisations: Vec<String>,
    pub needs_consent: bool,
}

pub(super) fn tenant_from_row(row: &AnyRow) -> Result<TenantRecord, StoreError> {
    Ok(TenantRecord {
        id: get_parsed(row, "id")?,
        desired: get_parsed(row, "desired")?,
        generation: get(row, "generation")?,
        phase: get_parsed(row, "phase")?,
        keep_data: get_bool(row, "keep_data")?,
        message: get(row, "message")?,
        cell: get(row, "cell_id")?,
        created_at: get_time(row, "created_at")?,
        updated_at: get_time(row, "updated_at")?,
    })
}

impl Store {
    /// Records that tenant `id` is wanted. A new tenant starts with desired
    /// `present`, generation 1 and phase `Pending`, and `true` is returned
    /// with it; an existing wanted tenant is returned unchanged with `false`.
    /// A tenant being torn down (desired `absent`) is refused with
    /// [`StoreError::TenantDeleting`]. Safe when several processes race.
    ///
    /// When cells are registered, a tenant without one is placed in a cell
    /// (see [`Store::want_tenant_placed`]); without any, it has none.
    pub async fn want_tenant(&self, id: &TenantId) -> Result<(TenantRecord, bool), StoreError> {
        self.want_tenant_placed(id, WithoutCells::Unplaced).await
    }

    /// [`Store::want_tenant`] for a deployment without cells: the tenant is
    /// recorded with none.
    pub(super) async fn want_unplaced(
        &self,
        id: &TenantId,
    ) -> Result<(TenantRecord, bool), StoreError> {
        // A concurrent teardown may remove the row between our insert and our
        // read; try again a few times before giving up.
        for _ in 0..3 {
            let now = now_ms();
            let inserted = self
                .execute(
                    sqlx::query(
                        "INSERT INTO tenants \
                           (id, desired, generation, phase, keep_data, message, created_at, updated_at) \
                         VALUES ($1, 'present', 1, 'Pending', FALSE, NULL, $2, $2) \
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(id.as_str())
                    .bind(now),
                )
                .await?;
            let created = inserted == 1;
            match self.get_tenant(id).await? {
                Some(t) if t.desired == Desired::Absent => {
                    return Err(StoreError::TenantDeleting(id.clone()))
                }
                Some(t) => return Ok((t, created)),
                None => continue,
            }
        }
        Err(StoreError::TenantDeleting(id.clone()))
    }

    /// Marks tenant `id` for teardown: desired `absent`, phase `Deleting`,
    /// `keep_data` as given, and the generation bumped unless it already was
    /// absent. Calling it again is harmless (and may change `keep_data`, or
    /// restart a teardown that ended `Failed`).
    pub async fn mark_deleting(
        &self,
        id: &TenantId,
        keep_data: bool,
    ) -> Result<TenantRecord, StoreError> {
        // SET expressions all see the row's old values.
        self.execute(
            sqlx::query(
                "UPDATE tenants SET \
                   generation = CASE WHEN desired = 'absent' THEN generation ELSE generation + 1 END, \
                   message = CASE WHEN phase = 'Deleting' THEN message ELSE NULL END, \
                   desired = 'absent', phase = 'Deleting', keep_data = $2, updated_at = $3 \
                 WHERE id = $1 AND (desired <> 'absent' OR phase <> 'Deleting' OR keep_data <> $2)",
            )
            .bind(id.as_str())
            .bind(keep_data)
            .bind(now_ms()),
        )
        .await?;
        self.get_tenant(id)
            .await?
            .ok_or_else(|| StoreError::TenantNotFound(id.clone()))
    }

    pub async fn get_tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        self.fetch_optional(sqlx::query(GET_TENANT).bind(id.as_str()), tenant_from_row)
            .await
    }

    /// Up to `limit` tenants after `after` (from the first without), by id.
    pub async fn list_tenants_page(
        &self,
        after: Option<&TenantId>,
        limit: u32,
    ) -> Result<Vec<TenantRecord>, StoreError> {
        Ok(self
            .tenant_rows_page(after, limit)
            .await?
            .into_iter()
            .map(|(t, _)| t)
            .collect())
    }

    /// Up to `limit` tenants after `after`, by id, each with its settled
    /// mark (see [`Store::mark_settled`]): a page of a pass over all tenants.
    pub async fn pass_page(
        &self,
        after: Option<&TenantId>,
        limit: u32,
    ) -> Result<Vec<(TenantRecord, Option<String>)>, StoreError> {
        let after = after.map(TenantId::as_str).unwrap_or("");
        self.fetch_all(
            sqlx::query(PASS_PAGE).bind(after).bind(i64::from(limit)),
            |row| Ok((tenant_from_row(row)?, get(row, "settled")?)),
        )
        .await
    }

    /// Records what a full pass that left every planned resource Ready
    /// settled the tenant as (the reconciler's "<generation>:<plan digest>").
    /// Writes nothing when the mark is already that.
    pub async fn mark_settled(&self, id: &TenantId, mark: &str) -> Result<(), StoreError> {
        self.execute(sqlx::query(MARK_SETTLED).bind(id.as_str()).bind(mark))
            .await?;
        Ok(())
    }

    async fn tenant_rows_page(
        &self,
        after: Option<&TenantId>,
        limit: u32,
    ) -> Result<Vec<(TenantRecord, bool)>, StoreError> {
        // No tenant id is empty, so "" comes before every one.
        let after = after.map(TenantId::as_str).unwrap_or("");
        self.fetch_all(
            sqlx::query(TENANT_PAGE).bind(after).bind(i64::from(limit)),
            |row| Ok((tenant_from_row(row)?, get_bool(row, "needs_consent")?)),
        )
        .await
    }

    /// A page of at most `limit` (at least 1) tenants after `after`, with
    /// their resources and connections: see [`TenantPage`].
    pub async fn tenant_page(
        &self,
        after: Option<&TenantId>,
        limit: u32,
    ) -> Result<TenantPage, StoreError> {
        let limit = limit.max(1);
        // One more than asked tells whether another page follows.
        let mut rows = self
            .tenant_rows_page(after, limit.saturating_add(1))
            .await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let (Some((first, _)), Some((last, _))) = (rows.first(), rows.last()) else {
            return Ok(TenantPage {
                tenants: Vec::new(),
                next: None,
            });
        };
        let mut resources = self.resources_in_range(&first.id, &last.id).await?;
        let mut organisations = self.connections_in_range(&first.id, &last.id).await?;
        let next = more.then(|| last.id.clone());
        let tenants = rows
            .into_iter()
            .map(|(tenant, needs_consent)| ListedTenant {
                resources: resources.remove(&tenant.id).unwrap_or_default(),
                organisations: organisations.remove(&tenant.id).unwrap_or_default(),
                needs_consent,
                tenant,
            })
            .collect();
        Ok(TenantPage { tenants, next })
    }

    /// Every tenant, ordered by id.
    pub async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY id");
        self.fetch_all(sqlx::query(&sql), tenant_from_row).await
    }

    /// Sets the tenant's phase and message. Returns whether anything changed;
    /// when nothing would, nothing is written (and `updated_at` stays).
    pub async fn set_phase(
        &self,
        id: &TenantId,
        phase: Phase,
        message: Option<&str>,
    ) -> Result<bool, StoreError> {
        let current = self
            .get_tenant(id)
            .await?
            .ok_or_else(|| StoreError::TenantNotFound(id.clone()))?;
        if current.phase == phase && current.message.as_deref() == message {
            return Ok(false);
        }
        let updated = self
            .execute(
                sqlx::query(
                    "UPDATE tenants SET phase = $2, message = $3, updated_at = $4 WHERE id = $1",
                )
                .bind(id.as_str())
                .bind(phase.as_str())
                .bind(message)
                .bind(now_ms()),
            )
            .await?;
        if updated == 0 {
            return Err(StoreError::TenantNotFound(id.clone()));
        }
        Ok(true)
    }

    /// Removes the tenant record and all its resource rows, atomically.
    /// Returns whether the tenant existed. This is the last step of a
    /// teardown; the store does not check that the resources are gone.
    pub async fn delete_tenant(&self, id: &TenantId) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.db_err(e))?;
        self.execute_in(
            &mut *tx,
            sqlx::query("DELETE FROM resources WHERE tenant_id = $1").bind(id.as_str()),
        )
        .await?;
        let deleted = self
            .execute_in(
                &mut *tx,
                sqlx::query("DELETE FROM tenants WHERE id = $1").bind(id.as_str()),
            )
            .await?;
        tx.commit().await.map_err(|e| self.db_err(e))?;
        Ok(deleted > 0)
    }

    /// How many tenants are in each phase, split by whether they need
    /// consent: `(phase, needs_consent, tenants)`. One grouped read, cheap
    /// enough for every metrics scrape.
    pub async fn count_tenants(&self) -> Result<Vec<(Phase, bool, i64)>, StoreError> {
        self.fetch_all(
            sqlx::query(
                "SELECT phase, needs_consent, COUNT(*) AS tenants FROM tenants \
                 GROUP BY phase, needs_consent",
            ),
            |row| {
                Ok((
                    get_parsed(row, "phase")?,
                    get_bool(row, "needs_consent")?,
                    get(row, "tenants")?,
                ))
            },
        )
        .await
    }
}
