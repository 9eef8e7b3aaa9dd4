//! The LLM providers behind one trait: a question's prompt in, a
//! [`Plan`](crate::plan::Plan), one SQL query or a reasoned decline out.
//!
//! | module | does one thing |
//! | --- | --- |
//! | [`config`] | which provider, model, endpoint and key, from the environment (`LEDGERLAKE_LLM_*`) |
//! | [`prompt`] | the prompt of a question: tera templates of `templates/prompts` over the semantic model, the tables' documented columns and worked examples |
//! | [`tables`] | the transformed tables and their documented columns, from the `-- columns:` headers of `templates/models` |
//! | [`reply`] | the model's reply text into a [`Generated`] (tolerant of code fences, strict about the content) |
//! | [`error`] | [`LlmError`]: what went wrong, with the provider's message and HTTP status, never the key |
//! | `http` | the one HTTP exchange every provider shares: timeout, retries with backoff and `Retry-After`, bounded replies |
//! | `sse` | server-sent events, decoded incrementally from a streamed body |
//! | [`openai`], [`anthropic`], [`vertex`] | each provider's wire format |
//!
//! The model is asked for JSON only: `{"plan": {…}}` (preferred), `{"sql":
//! "…"}` or `{"decline": "reason"}`. What it returns is never trusted: a
//! plan goes through the compiler, SQL through the guard, like any other.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub mod anthropic;
pub mod config;
pub mod error;
mod http;
pub mod openai;
pub mod prompt;
pub mod reply;
mod sse;
pub mod tables;
pub mod vertex;

pub use config::{ApiKey, ConfigError, LlmConfig, ProviderKind};
pub use error::LlmError;
pub use prompt::{build_request, Correction, PromptContext};

/// One provider and model behind one interface, so the engine neither knows
/// nor cares which it talks to.
#[async_trait]
pub trait LlmProvider: Send + Sync {
    /// "openai:gpt-4o-mini" style: provider and model, for the answer and the audit.
    fn describe(&self) -> String;

    /// Asks the model once (retrying transient failures within the provider's
    /// policy) and parses its reply.
    async fn complete(&self, request: &LlmRequest) -> Result<Generated, LlmError>;
}

/// What a model produced for a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generated {
    /// A plan in the semantic model's terms (preferred: it compiles deterministically).
    Plan(crate::plan::Plan),
    /// One SQL query over the transformed tables (still to pass the guard).
    Sql(String),
    /// The question cannot be answered from the books, and why.
    Decline(String),
}

/// Who said a message of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Message {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// What a provider sends: the same for every provider, each puts it into its
/// own wire format.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest {
    /// The instructions: the semantic model, the tables, the rules, the examples.
    pub system: String,
    /// The conversation so far, user and assistant turns alternating,
    /// starting and ending with a user turn.
    pub messages: Vec<Message>,
    /// The JSON schema the reply must follow (`templates/prompts/plan.schema.json`),
    /// sent as the provider's structured-output setting where it has one.
    pub schema: Option<serde_json::Value>,
    /// Ask for the reply as server-sent events (the reply is still returned whole).
    pub stream: bool,
}

/// The provider `config` names, ready to use.
pub fn build_provider(config: &LlmConfig) -> Result<Arc<dyn LlmProvider>, LlmError> {
    config.check()?;
    Ok(match config.provider {
        ProviderKind::OpenAi => Arc::new(openai::OpenAiProvider::new(config)?),
        ProviderKind::Anthropic => Arc::new(anthropic::AnthropicProvider::new(config)?),
        ProviderKind::Vertex => Arc::new(vertex::VertexProvider::new(config)?),
    })
}
