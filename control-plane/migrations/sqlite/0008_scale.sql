-- 10,000 tenants and millions of runs: an index behind every query the
-- control plane makes per scheduler tick, reconcile pass or listed page, and
-- behind each retention prune, so that none of them reads runs or resources
-- (or the audit logs) from end to end. tests/explain.rs checks the plans.
-- Keep in step with ../postgres/0008_scale.sql.

-- The newest runs first across all tenants (`runs list`, GET /v1/runs).
CREATE INDEX runs_by_created ON runs (created_at, id);
-- The runs in progress, oldest first (every tick follows them): a handful of
-- rows among millions.
CREATE INDEX runs_active_by_created ON runs (created_at)
    WHERE status IN ('queued', 'running');
-- Pruning finished runs past their retention.
CREATE INDEX runs_by_finished ON runs (finished_at);

-- Pruning the audit logs past their retention.
CREATE INDEX audit_log_by_time ON audit_log (at);
CREATE INDEX query_audit_by_time ON query_audit (created_at);

-- The tick reads only the tenants that are due: those whose schedule came
-- round (or was never computed) and those a webhook marked.
CREATE INDEX tenants_by_next_run ON tenants (next_run_at);
CREATE INDEX tenants_sync_requested ON tenants (sync_requested_at)
    WHERE sync_requested_at IS NOT NULL;
