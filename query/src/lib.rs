//! The query service's library (issue 11): answering a tenant's questions
//! about its own books with SQL over its transformed dataset, and nothing else.
//!
//! A question flows through these modules in this order:
//!
//! | module | does one thing |
//! | --- | --- |
//! | [`semantic`] | the semantic model (`templates/semantic/model.yaml`): metrics, their sources, dimensions |
//! | [`vocabulary`] | the tenant's own names (customers, suppliers, accounts, items, currencies), read from its data |
//! | [`timephrase`] | time phrases ("last quarter", "since March") into periods against an as-of date |
//! | [`planner`] | the offline planner: a question (and the previous plan of a conversation) into a [`plan::Plan`] |
//! | [`llm`] | the LLM providers behind one trait (OpenAI-compatible, Vertex AI Gemini, Anthropic), producing a plan, SQL or a decline |
//! | [`compile`] | a plan into SQL, deterministically, in the warehouse's dialect |
//! | [`guard`] | admits one read-only query over the tenant's dataset, with a LIMIT enforced, or refuses it with a stable reason |
//! | [`engine`] | runs a question end to end as the tenant's identity through the warehouse port, into an [`answer::Answer`] |
//!
//! The guard is one of three walls, not the only one: the executor runs as
//! the tenant's own service account (which is granted only its datasets) and
//! the local warehouse opens only the dataset's file, read-only, with external
//! access off. The guard fails closed on anything it does not recognise.
//!
//! The crate depends on `cloud` (the warehouse port, tenant ids and naming)
//! and small crates only; never on DuckDB, the control plane or the tenant job.

pub mod answer;
pub mod compile;
pub mod engine;
pub mod guard;
pub mod llm;
pub mod plan;
pub mod planner;
pub mod semantic;
pub mod timephrase;
pub mod vocabulary;
