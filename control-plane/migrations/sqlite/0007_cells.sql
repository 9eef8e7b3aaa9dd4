-- Cells: the GCP projects (each with a region) that tenants live in, so that
-- 10,000 tenants fit Google's per-project quotas (100 service accounts, one
-- IAM policy's principals). Keep in step with ../postgres/0007_cells.sql.

-- One project holds one cell at most: its quotas are the cell's.
CREATE TABLE cells (
    id          TEXT    NOT NULL PRIMARY KEY,
    project     TEXT    NOT NULL,
    region      TEXT    NOT NULL,
    -- tenants at most
    capacity    INTEGER NOT NULL DEFAULT 100 CHECK (capacity >= 1),
    state       TEXT    NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining', 'full')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX cells_by_project ON cells (project);

-- Set when the tenant is first placed, never changed by placement after;
-- NULL for tenants of a deployment without cells (the local adapter's) and
-- for those recorded before cells existed.
ALTER TABLE tenants ADD COLUMN cell_id TEXT REFERENCES cells (id);

CREATE INDEX tenants_by_cell ON tenants (cell_id);
