-- Connect links: consent starts only from a single-use, expiring link bound to
-- one tenant (stored hashed), and each OAuth state remembers the link it came
-- from.
-- Keep in step with ../postgres/0004_connect_links.sql.

CREATE TABLE connect_links (
    token_hash  TEXT    NOT NULL PRIMARY KEY,
    -- No foreign key: a link may name a tenant that the consent then creates.
    tenant_id   TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
) STRICT;

CREATE INDEX connect_links_by_tenant ON connect_links (tenant_id);
CREATE INDEX connect_links_by_expiry ON connect_links (expires_at);

ALTER TABLE oauth_states ADD COLUMN link_hash TEXT;
CREATE INDEX oauth_states_by_link ON oauth_states (link_hash);

-- Webhook deliveries already recorded (the SHA-256 of the signed body), kept
-- for Xero's delivery window so that an exact replay changes nothing.
CREATE TABLE webhook_deliveries (
    digest       TEXT    NOT NULL PRIMARY KEY,
    received_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX webhook_deliveries_by_age ON webhook_deliveries (received_at);
