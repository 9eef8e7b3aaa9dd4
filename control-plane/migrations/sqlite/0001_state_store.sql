-- ledgerlake state store, SQLite flavour. Keep in step with ../postgres/0001_state_store.sql.
-- Timestamps are unix milliseconds (INTEGER); booleans are 0/1.

CREATE TABLE tenants (
    id          TEXT    NOT NULL PRIMARY KEY,
    desired     TEXT    NOT NULL CHECK (desired IN ('present', 'absent')),
    generation  INTEGER NOT NULL CHECK (generation >= 1),
    phase       TEXT    NOT NULL CHECK (phase IN ('Pending', 'Provisioning', 'Ready', 'Failed', 'Deleting')),
    keep_data   INTEGER NOT NULL DEFAULT 0 CHECK (keep_data IN (0, 1)),
    message     TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE resources (
    tenant_id           TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind                TEXT    NOT NULL,
    name                TEXT    NOT NULL,
    status              TEXT    NOT NULL CHECK (status IN ('Pending', 'Ready', 'Failed')),
    message             TEXT,
    observed_generation INTEGER NOT NULL DEFAULT 0,
    attempts            INTEGER NOT NULL DEFAULT 0,
    -- the tenant generation the attempts were counted for
    attempt_generation  INTEGER NOT NULL DEFAULT 0,
    last_error          TEXT,
    last_transition     INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, kind, name)
) STRICT;

-- No foreign key: the audit trail outlives the tenants it mentions.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    tenant_id  TEXT,
    detail     TEXT    NOT NULL DEFAULT '{}'
) STRICT;

CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id, id);

CREATE TABLE leases (
    name        TEXT    NOT NULL PRIMARY KEY,
    holder      TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;
