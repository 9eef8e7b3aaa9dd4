-- The scheduler tick reads the due tenants a page at a time, as many as its
-- Xero call budget can start, in (next_run_at, id) order: at the top of the
-- hour every tenant shares one next_run_at, and an index on next_run_at
-- alone would make each page sort all of them by id.
-- Keep in step with ../sqlite/0010_due_by_next_run.sql.

DROP INDEX tenants_by_next_run;
CREATE INDEX tenants_by_next_run ON tenants (next_run_at, id);
