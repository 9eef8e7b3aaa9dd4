-- What a tenant was last settled as: "<generation>:<digest of its plan>",
-- written when a full pass leaves every planned resource Ready. A pass over
-- all tenants takes a Ready tenant whose mark matches its generation and
-- plan as recorded in place, without reading its resource rows (it still
-- checks the cloud). NULL until a full pass ends Ready.
-- Keep in step with ../sqlite/0009_settled.sql.

ALTER TABLE tenants ADD COLUMN settled TEXT;
