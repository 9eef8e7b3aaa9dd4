//! The query service's library (issue 11): answering a tenant's questions
//! about its own books with SQL over its transformed dataset, and nothing else.
//!
//! Planned modules, in the order a question flows through them:
//!
//! | module | does one thing | state |
//! | --- | --- | --- |
//! | `semantic` | the semantic model: the tables of `transformed_<id>` (`templates/models`), their columns, joins and measures, as the planner and the prompt see them | to come |
//! | `planner` | a question (and the semantic model) into one SQL query, through a provider | to come |
//! | `llm` | the LLM providers behind one trait (hosted, local, a scripted one for tests) | to come |
//! | [`guard`] | admits one read-only query over the tenant's dataset, with a LIMIT enforced, or refuses it with a stable reason | here |
//! | `executor` | runs an admitted query through the warehouse port as the tenant's identity, with a timeout and the row cap | to come |
//!
//! The guard is one of three walls, not the only one: the executor runs as
//! the tenant's own service account (which is granted only its datasets) and
//! the local warehouse opens only the dataset's file, read-only, with external
//! access off. The guard fails closed on anything it does not recognise.
//!
//! The crate depends on `cloud` (tenant ids and naming) and small crates only;
//! never on DuckDB, the control plane or the tenant job.

pub mod guard;
pub mod llm;
