//! `tenant-job`: what every tenant's ingestion and transformation runs as.
//!
//! It acts only as the tenant's own identity. `ingest` pages the tenant's
//! Xero organisation into raw NDJSON in the tenant's bucket; `transform`
//! loads that into the raw dataset and builds the transformed dataset from
//! the SQL models in `templates/models/`; `sync` does both.
//!
//! What it shares with the control plane (the bucket's layout, run
//! summaries, token-set storage, its environment) is the `job-contract`
//! crate.

pub mod ingest;
pub mod job;
pub mod transform;
