//! What the control plane and the tenant job share: the contract between
//! the two binaries, and nothing that needs a database engine.
//!
//! - [`command`]: what a run does (`ingest`, `transform`, `sync`), one
//!   spelling everywhere.
//! - [`env`]: the job's environment, typed; also the allow-list of what a
//!   job receives.
//! - [`plan`]: what a tenant consists of (its resources and job
//!   definitions), which the control plane's reconciler ensures.
//! - [`grants`]: the roles the tenant's service account holds, on what.
//! - [`logging`]: the JSON log format both binaries write (Cloud Logging's).
//! - [`raw`]: the layout of the tenant's bucket, between ingest and transform.
//! - [`summary`]: what a run leaves behind for the control plane.
//! - [`tokens`]: where a tenant's Xero token set lives and the lease its
//!   refreshes take.

pub mod command;
pub mod env;
pub mod grants;
pub mod logging;
pub mod plan;
pub mod raw;
pub mod summary;
pub mod tokens;

pub use command::RunCommand;
pub use env::JobEnvironment;
