-- A run's record outlives its tenant, like the audit log: a teardown that
-- cancels a run in progress leaves its record (failed, "cancelled by
-- teardown"), and the runs of a deleted tenant stay readable. Runs no longer
-- reference tenants; the store checks that a new run's tenant exists.
-- Keep in step with ../sqlite/0005_runs_outlive_tenants.sql.

ALTER TABLE runs DROP CONSTRAINT IF EXISTS runs_tenant_id_fkey;
