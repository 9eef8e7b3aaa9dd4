-- Xero onboarding: single-use OAuth states, connected organisations, webhook
-- events and the tenant flags they set. Keep in step with ../sqlite/0002_onboarding.sql.

CREATE TABLE oauth_states (
    state          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    tenant_id      TEXT COLLATE "C" NOT NULL,
    pkce_verifier  TEXT   NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    consumed_at    BIGINT
);

CREATE INDEX oauth_states_by_expiry ON oauth_states (expires_at);

CREATE TABLE xero_connections (
    tenant_id       TEXT COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    xero_tenant_id  TEXT COLLATE "C" NOT NULL,
    tenant_name     TEXT,
    connected_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, xero_tenant_id)
);

CREATE INDEX xero_connections_by_org ON xero_connections (xero_tenant_id);

CREATE TABLE webhook_events (
    id              BIGSERIAL PRIMARY KEY,
    received_at     BIGINT NOT NULL,
    xero_tenant_id  TEXT   NOT NULL,
    event_category  TEXT   NOT NULL,
    event_type      TEXT   NOT NULL,
    resource_id     TEXT   NOT NULL,
    event_date      TEXT   NOT NULL
);

ALTER TABLE tenants ADD COLUMN sync_requested_at BIGINT;
ALTER TABLE tenants ADD COLUMN needs_consent BOOLEAN NOT NULL DEFAULT FALSE;
