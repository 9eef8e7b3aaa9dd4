-- Runs of tenant-job (ingest, transform, sync) and each tenant's schedule.
-- Keep in step with ../postgres/0003_runs.sql.

CREATE TABLE runs (
    id            TEXT    NOT NULL PRIMARY KEY,
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    command       TEXT    NOT NULL CHECK (command IN ('ingest', 'transform', 'sync')),
    trigger       TEXT    NOT NULL CHECK (trigger IN ('operator', 'api', 'schedule', 'webhook')),
    status        TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'partial', 'failed')),
    job           TEXT,
    execution_id  TEXT,
    message       TEXT,
    summary       TEXT,
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER
) STRICT;

-- At most one run per tenant at a time: the database refuses a second.
CREATE UNIQUE INDEX runs_one_active_per_tenant ON runs (tenant_id)
    WHERE status IN ('queued', 'running');
CREATE INDEX runs_by_tenant ON runs (tenant_id, created_at);
CREATE INDEX runs_by_status ON runs (status);

-- A cron expression (UTC); NULL means the deployment's default.
ALTER TABLE tenants ADD COLUMN schedule TEXT;
-- When the schedule next wants a sync (ms since the epoch); NULL until computed.
ALTER TABLE tenants ADD COLUMN next_run_at INTEGER;
