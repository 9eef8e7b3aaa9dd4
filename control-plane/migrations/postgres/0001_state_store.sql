-- ledgerlake state store, PostgreSQL flavour. Keep in step with ../sqlite/0001_state_store.sql.
-- Timestamps are unix milliseconds (BIGINT) so that both backends share one code path.
-- Text keys use the "C" collation so that ordering matches SQLite's byte order.

CREATE TABLE tenants (
    id          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    desired     TEXT    NOT NULL CHECK (desired IN ('present', 'absent')),
    generation  BIGINT  NOT NULL CHECK (generation >= 1),
    phase       TEXT    NOT NULL CHECK (phase IN ('Pending', 'Provisioning', 'Ready', 'Failed', 'Deleting')),
    keep_data   BOOLEAN NOT NULL DEFAULT FALSE,
    message     TEXT,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);

CREATE TABLE resources (
    tenant_id           TEXT COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind                TEXT COLLATE "C" NOT NULL,
    name                TEXT COLLATE "C" NOT NULL,
    status              TEXT   NOT NULL CHECK (status IN ('Pending', 'Ready', 'Failed')),
    message             TEXT,
    observed_generation BIGINT NOT NULL DEFAULT 0,
    attempts            BIGINT NOT NULL DEFAULT 0,
    -- the tenant generation the attempts were counted for
    attempt_generation  BIGINT NOT NULL DEFAULT 0,
    last_error          TEXT,
    last_transition     BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, kind, name)
);

-- No foreign key: the audit trail outlives the tenants it mentions.
CREATE TABLE audit_log (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         BIGINT NOT NULL,
    actor      TEXT   NOT NULL,
    action     TEXT   NOT NULL,
    tenant_id  TEXT COLLATE "C",
    detail     TEXT   NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id, id);

CREATE TABLE leases (
    name        TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    holder      TEXT   NOT NULL,
    expires_at  BIGINT NOT NULL
);
