-- A run's record outlives its tenant, like the audit log: a teardown that
-- cancels a run in progress leaves its record (failed, "cancelled by
-- teardown"), and the runs of a deleted tenant stay readable. Runs no longer
-- reference tenants (SQLite drops a foreign key only by rebuilding the
-- table); the store checks that a new run's tenant exists.
-- Keep in step with ../postgres/0005_runs_outlive_tenants.sql.

CREATE TABLE runs_kept (
    id            TEXT    NOT NULL PRIMARY KEY,
    tenant_id     TEXT    NOT NULL,
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

INSERT INTO runs_kept (id, tenant_id, command, trigger, status, job, execution_id, message,
                       summary, created_at, started_at, finished_at)
    SELECT id, tenant_id, command, trigger, status, job, execution_id, message,
           summary, created_at, started_at, finished_at
    FROM runs;

DROP TABLE runs;
ALTER TABLE runs_kept RENAME TO runs;

-- At most one run per tenant at a time: the database refuses a second.
CREATE UNIQUE INDEX runs_one_active_per_tenant ON runs (tenant_id)
    WHERE status IN ('queued', 'running');
CREATE INDEX runs_by_tenant ON runs (tenant_id, created_at);
CREATE INDEX runs_by_status ON runs (status);
