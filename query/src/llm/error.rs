//! What can go wrong asking a model, with what the provider said and the HTTP
//! status. No variant ever holds the API key or a request header: the
//! provider's own messages are scrubbed of the key before they are kept
//! (`http::Http::redact`), and transport errors are kept without their URL.
//! What an error quotes of a reply is bounded by `excerpt`.

use std::time::Duration;

use super::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("LLM configuration")]
    Config(#[from] ConfigError),

    /// A prompt template failed to render or a prompt file is malformed (a
    /// bug of this repository, caught by its tests).
    #[error("the prompt could not be built: {0}")]
    Prompt(String),

    /// An attempt took longer than the configured timeout (not retried: the
    /// user already waited that long once).
    #[error("{provider}: no complete reply within {:.1}s", after.as_secs_f64())]
    Timeout {
        provider: &'static str,
        after: Duration,
    },

    /// The request could not be sent or the connection broke (retried).
    #[error("{provider}: {what}")]
    Transport {
        provider: &'static str,
        what: &'static str,
        /// Without its URL (`reqwest::Error::without_url`).
        #[source]
        source: reqwest::Error,
    },

    /// The provider answered with an error: its HTTP status (for an error
    /// event inside a stream, the status its type stands for), its error type
    /// and message. 408, 429 and 5xx are retried.
    #[error("{provider} answered HTTP {status}{}: {message}", kind.as_deref().map(|k| format!(" ({k})")).unwrap_or_default())]
    Api {
        provider: &'static str,
        status: u16,
        kind: Option<String>,
        message: String,
        /// The provider's `Retry-After`, already capped.
        retry_after: Option<Duration>,
    },

    #[error("{provider}: the reply exceeded {limit} bytes")]
    ReplyTooLarge {
        provider: &'static str,
        limit: usize,
    },

    /// A stream closed before the provider's end marker (retried, like a broken connection).
    #[error("{provider}: the reply stream ended before its end marker")]
    Incomplete { provider: &'static str },

    /// The HTTP reply is not in the provider's documented format.
    #[error("{provider}: the reply is not in the provider's format: {message}")]
    Protocol {
        provider: &'static str,
        message: String,
    },

    /// The model's text is none of `{"plan"}`, `{"sql"}`, `{"decline"}`.
    /// `reply` is all of it, for a correction round ([`super::Correction`]).
    #[error("the model's reply is unusable: {reason} (it began {excerpt:?})")]
    BadReply {
        reason: String,
        excerpt: String,
        reply: String,
    },
}

impl LlmError {
    /// Whether trying the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Transport { .. } | LlmError::Incomplete { .. } => true,
            LlmError::Api { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// How long the provider asked us to wait before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status the provider answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            LlmError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The first `max` characters of `text`, marked when cut: what an error
/// quotes of a reply or an error body.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_cut_on_characters() {
        assert_eq!(excerpt("héllo", 2), "hé…");
        assert_eq!(excerpt("hi", 2), "hi");
    }
}
