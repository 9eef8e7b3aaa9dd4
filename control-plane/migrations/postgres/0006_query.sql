-- The query service's credentials and its record of questions.
-- Keep in step with ../sqlite/0006_query.sql.

-- Tenant API tokens: a question is answered from the tenant its token names.
-- Only the SHA-256 of the secret is stored; the secret is shown once. A token
-- is a credential of its tenant and goes with it (a tenant created again
-- under the same id gets none of the old tokens).
CREATE TABLE api_tokens (
    id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    tenant_id     TEXT COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          TEXT   NOT NULL,
    token_hash    TEXT COLLATE "C" NOT NULL,
    created_by    TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    revoked_at    BIGINT,
    last_used_at  BIGINT
);

CREATE UNIQUE INDEX api_tokens_by_hash ON api_tokens (token_hash);
CREATE INDEX api_tokens_by_tenant ON api_tokens (tenant_id, created_at);

-- Every question asked, with what answered it. No foreign key: like the audit
-- log and the runs, it outlives the tenant (and the token) it names, and no
-- retention setting prunes it.
CREATE TABLE query_audit (
    id                TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    tenant_id         TEXT COLLATE "C" NOT NULL,
    -- None for an operator's question.
    token_id          TEXT COLLATE "C",
    actor             TEXT    NOT NULL,
    conversation_id   TEXT COLLATE "C" NOT NULL,
    question          TEXT    NOT NULL,
    plan              TEXT,
    sql               TEXT,
    generator         TEXT    NOT NULL,
    row_count         BIGINT  NOT NULL DEFAULT 0,
    duration_ms       BIGINT  NOT NULL DEFAULT 0,
    outcome           TEXT    NOT NULL CHECK (outcome IN ('answered', 'declined', 'refused', 'failed')),
    refusal_reason    TEXT,
    feedback_helpful  BOOLEAN,
    feedback_comment  TEXT,
    feedback_at       BIGINT,
    created_at        BIGINT  NOT NULL
);

CREATE INDEX query_audit_by_conversation ON query_audit (conversation_id, created_at);
CREATE INDEX query_audit_by_tenant ON query_audit (tenant_id, created_at);
