-- Xero onboarding: single-use OAuth states, connected organisations, webhook
-- events and the tenant flags they set. Keep in step with ../postgres/0002_onboarding.sql.

CREATE TABLE oauth_states (
    state          TEXT    NOT NULL PRIMARY KEY,
    tenant_id      TEXT    NOT NULL,
    pkce_verifier  TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    consumed_at    INTEGER
) STRICT;

CREATE INDEX oauth_states_by_expiry ON oauth_states (expires_at);

CREATE TABLE xero_connections (
    tenant_id       TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    xero_tenant_id  TEXT    NOT NULL,
    tenant_name     TEXT,
    connected_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, xero_tenant_id)
) STRICT;

CREATE INDEX xero_connections_by_org ON xero_connections (xero_tenant_id);

CREATE TABLE webhook_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at     INTEGER NOT NULL,
    xero_tenant_id  TEXT    NOT NULL,
    event_category  TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    resource_id     TEXT    NOT NULL,
    event_date      TEXT    NOT NULL
) STRICT;

ALTER TABLE tenants ADD COLUMN sync_requested_at INTEGER;
ALTER TABLE tenants ADD COLUMN needs_consent INTEGER NOT NULL DEFAULT 0 CHECK (needs_consent IN (0, 1));
