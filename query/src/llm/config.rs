//! Which LLM provider to use, and how: from the environment
//! (`LEDGERLAKE_LLM_*`) or built directly (plain public fields, so a CLI can
//! fill them).
//!
//! No provider configured is not an error ([`LlmConfig::from_env`] returns
//! `Ok(None)`: the offline planner answers alone); a half-configured or
//! unknown one is, named precisely, so a typo never silently turns the LLM off.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The environment variables read by [`LlmConfig::from_env`].
pub mod env {
    /// `openai` (also Azure OpenAI, Ollama, vLLM, llama.cpp), `anthropic` or `vertex`.
    pub const PROVIDER: &str = "LEDGERLAKE_LLM_PROVIDER";
    /// The endpoint; defaults per provider (see [`super::LlmConfig::base_url_or_default`]).
    pub const BASE_URL: &str = "LEDGERLAKE_LLM_BASE_URL";
    pub const MODEL: &str = "LEDGERLAKE_LLM_MODEL";
    /// The API key (Vertex: an OAuth 2.0 access token).
    pub const API_KEY: &str = "LEDGERLAKE_LLM_API_KEY";
    pub const VERTEX_PROJECT: &str = "LEDGERLAKE_LLM_VERTEX_PROJECT";
    pub const VERTEX_LOCATION: &str = "LEDGERLAKE_LLM_VERTEX_LOCATION";
    pub const TIMEOUT_SECS: &str = "LEDGERLAKE_LLM_TIMEOUT_SECS";
    /// Azure OpenAI's `api-version` query parameter (default [`super::DEFAULT_AZURE_API_VERSION`]).
    pub const AZURE_API_VERSION: &str = "LEDGERLAKE_LLM_AZURE_API_VERSION";

    /// Every name above: any of them set without a provider is a half-configuration.
    pub const ALL: &[&str] = &[
        PROVIDER,
        BASE_URL,
        MODEL,
        API_KEY,
        VERTEX_PROJECT,
        VERTEX_LOCATION,
        TIMEOUT_SECS,
        AZURE_API_VERSION,
    ];
}

pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
/// The generally available version that has structured outputs (`json_schema`).
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Which wire format to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// OpenAI-compatible chat completions: OpenAI, Azure OpenAI, Ollama, vLLM, llama.cpp server.
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
    /// Gemini on Vertex AI.
    Vertex,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Vertex => "vertex",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "openai" => Ok(ProviderKind::OpenAi),
            "anthropic" => Ok(ProviderKind::Anthropic),
            "vertex" => Ok(ProviderKind::Vertex),
            _ => Err(ConfigError::UnknownProvider {
                value: s.to_owned(),
            }),
        }
    }
}

/// An API key or access token. Its `Debug` prints `[redacted]` and it has no
/// `Display`, so neither a log line nor an error can carry it by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    /// The key itself, for the one header that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for ApiKey {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(ApiKey::new(s))
    }
}

/// A configuration that cannot work, named precisely. It never holds the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{value:?} is not an LLM provider (expected openai, anthropic or vertex)")]
    UnknownProvider { value: String },
    #[error("the {provider} LLM provider needs {missing}")]
    Missing {
        provider: ProviderKind,
        missing: &'static str,
    },
    #[error(
        "{name} is set but {} is not: name a provider or unset it",
        env::PROVIDER
    )]
    NoProvider { name: &'static str },
    #[error("{name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Everything a provider needs.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmConfig {
    pub provider: ProviderKind,
    /// The endpoint; `None`: the provider's public one.
    pub base_url: Option<String>,
    /// The model (Azure: the deployment's model name; Vertex: e.g. `gemini-2.0-flash`).
    pub model: String,
    /// Needed by the hosted services; local OpenAI-compatible servers may go without.
    pub api_key: Option<ApiKey>,
    pub vertex_project: Option<String>,
    pub vertex_location: Option<String>,
    /// Azure OpenAI's `api-version`; `None`: [`DEFAULT_AZURE_API_VERSION`].
    pub azure_api_version: Option<String>,
    /// Per attempt, from sending the request to the end of the reply.
    pub timeout: Duration,
    /// Retries after the first attempt (429, 5xx, transport errors).
    pub max_retries: usize,
    pub retry_min_delay: Duration,
    pub retry_max_delay: Duration,
    /// The longest `Retry-After` honoured; a longer one is cut to this.
    pub max_retry_after: Duration,
    /// The most bytes read of a reply (streamed or not).
    pub max_reply_bytes: usize,
    /// The most tokens the model may generate.
    pub max_tokens: u32,
    /// Sampling temperature; `None`: the model's default (some reasoning models accept no other).
    pub temperature: Option<f32>,
}

impl LlmConfig {
    /// A configuration with the defaults for everything but provider and model.
    pub fn new(provider: ProviderKind, model: impl Into<String>) -> Self {
        LlmConfig {
            provider,
            base_url: None,
            model: model.into(),
            api_key: None,
            vertex_project: None,
            vertex_location: None,
            azure_api_version: None,
            timeout: DEFAULT_TIMEOUT,
            max_retries: 3,
            retry_min_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
            max_reply_bytes: 1 << 20,
            max_tokens: 4096,
            temperature: None,
        }
    }

    /// From the process environment; `Ok(None)` when no provider is configured.
    pub fn from_env() -> Result<Option<LlmConfig>, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// From any lookup of the [`env`] names (tests pass a map, so they never
    /// touch the process environment). Blank values count as unset.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<LlmConfig>, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let Some(provider) = get(env::PROVIDER) else {
            return match env::ALL.iter().find(|name| get(name).is_some()) {
                Some(name) => Err(ConfigError::NoProvider { name }),
                None => Ok(None),
            };
        };
        let provider: ProviderKind = provider.parse()?;
        let model = get(env::MODEL).ok_or(ConfigError::Missing {
            provider,
            missing: env::MODEL,
        })?;
        let mut config = LlmConfig::new(provider, model);
        config.base_url = get(env::BASE_URL);
        config.api_key = get(env::API_KEY).map(ApiKey::new);
        config.vertex_project = get(env::VERTEX_PROJECT);
        config.vertex_location = get(env::VERTEX_LOCATION);
        config.azure_api_version = get(env::AZURE_API_VERSION);
        if let Some(secs) = get(env::TIMEOUT_SECS) {
            let secs: u64 = secs.parse().map_err(|_| ConfigError::Invalid {
                name: env::TIMEOUT_SECS,
                reason: format!("{secs:?} is not a whole number of seconds"),
            })?;
            config.timeout = Duration::from_secs(secs);
        }
        config.check()?;
        Ok(Some(config))
    }

    /// Refuses a configuration that cannot work, before any request is made.
    pub fn check(&self) -> Result<(), ConfigError> {
        let missing = |missing| ConfigError::Missing {
            provider: self.provider,
            missing,
        };
        if self.model.trim().is_empty() {
            return Err(missing(env::MODEL));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::Invalid {
                name: env::TIMEOUT_SECS,
                reason: "the timeout must be positive".to_owned(),
            });
        }
        if self.max_reply_bytes == 0 {
            return Err(ConfigError::Invalid {
                name: "max_reply_bytes",
                reason: "must be positive".to_owned(),
            });
        }
        let base = self.base_url()?;
        let has_key = self
            .api_key
            .as_ref()
            .is_some_and(|k| !k.expose().trim().is_empty());
        match self.provider {
            ProviderKind::OpenAi => {
                // Local servers (Ollama, vLLM, llama.cpp) take no key; the
                // hosted services always do.
                let host = base.host_str().unwrap_or_default();
                if !has_key && (host == "api.openai.com" || is_azure_host(host)) {
                    return Err(missing(env::API_KEY));
                }
            }
            ProviderKind::Anthropic => {
                if !has_key {
                    return Err(missing(env::API_KEY));
                }
            }
            ProviderKind::Vertex => {
                let project = self
                    .vertex_project
                    .as_deref()
                    .ok_or_else(|| missing(env::VERTEX_PROJECT))?;
                path_segment(env::VERTEX_PROJECT, project)?;
                let location = self
                    .vertex_location
                    .as_deref()
                    .ok_or_else(|| missing(env::VERTEX_LOCATION))?;
                path_segment(env::VERTEX_LOCATION, location)?;
                // The model is a path segment of the URL too.
                path_segment(env::MODEL, &self.model)?;
                if !has_key {
                    return Err(missing(env::API_KEY));
                }
            }
        }
        Ok(())
    }

    /// The endpoint: the configured one, or the provider's public one.
    pub fn base_url_or_default(&self) -> String {
        if let Some(url) = &self.base_url {
            return url.trim_end_matches('/').to_owned();
        }
        match self.provider {
            ProviderKind::OpenAi => DEFAULT_OPENAI_BASE_URL.to_owned(),
            ProviderKind::Anthropic => DEFAULT_ANTHROPIC_BASE_URL.to_owned(),
            ProviderKind::Vertex => match self.vertex_location.as_deref() {
                // The global endpoint has no region in its host.
                Some("global") | None => "https://aiplatform.googleapis.com".to_owned(),
                Some(location) => format!("https://{location}-aiplatform.googleapis.com"),
            },
        }
    }

    /// The endpoint, parsed (http or https only).
    pub fn base_url(&self) -> Result<reqwest::Url, ConfigError> {
        let text = self.base_url_or_default();
        let invalid = |reason: String| ConfigError::Invalid {
            name: env::BASE_URL,
            reason,
        };
        // The parse error alone, not the text: a URL may carry credentials.
        let url = reqwest::Url::parse(&text).map_err(|e| invalid(format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("must be an http or https URL".to_owned()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("must have no query or fragment".to_owned()));
        }
        Ok(url)
    }

    /// Whether the OpenAI-compatible endpoint is Azure OpenAI (`api-key`
    /// header and an `api-version` parameter instead of a bearer token).
    pub fn is_azure(&self) -> bool {
        self.provider == ProviderKind::OpenAi
            && self
                .base_url()
                .ok()
                .is_some_and(|u| is_azure_host(u.host_str().unwrap_or_default()))
    }
}

fn is_azure_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    host == "openai.azure.com"
        || host.ends_with(".openai.azure.com")
        || host.ends_with(".cognitiveservices.azure.com")
}

/// A value that goes into a URL path must be one plain segment.
fn path_segment(name: &'static str, value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        && value != "."
        && value != "..";
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            name,
            reason: format!("{value:?} must be letters, digits, '-', '_', '.' or '@'"),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn nothing_configured_is_no_provider() {
        assert_eq!(LlmConfig::from_lookup(lookup(&[])), Ok(None));
        assert_eq!(
            LlmConfig::from_lookup(lookup(&[(env::PROVIDER, "  ")])),
            Ok(None)
        );
    }

    #[test]
    fn a_setting_without_a_provider_is_refused() {
        let err = LlmConfig::from_lookup(lookup(&[(env::MODEL, "gpt-4o-mini")]))
            .expect_err("half-configured");
        assert_eq!(err, ConfigError::NoProvider { name: env::MODEL });
        assert!(err.to_string().contains(env::PROVIDER), "{err}");
    }

    #[test]
    fn an_unknown_provider_is_refused() {
        let err = LlmConfig::from_lookup(lookup(&[(env::PROVIDER, "openia"), (env::MODEL, "m")]))
            .expect_err("unknown");
        assert!(matches!(err, ConfigError::UnknownProvider { .. }));
        assert!(err.to_string().contains("openia"), "{err}");
    }

    #[test]
    fn openai_defaults_and_needs_a_key_for_the_hosted_service() {
        let err = LlmConfig::from_lookup(lookup(&[
            (env::PROVIDER, "openai"),
            (env::MODEL, "gpt-4o-mini"),
        ]))
        .expect_err("no key");
        assert_eq!(
            err,
            ConfigError::Missing {
                provider: ProviderKind::OpenAi,
                missing: env::API_KEY
            }
        );
        let config = LlmConfig::from_lookup(lookup(&[
            (env::PROVIDER, "OpenAI"),
            (env::MODEL, "gpt-4o-mini"),
            (env::API_KEY, "sk-test"),
            (env::TIMEOUT_SECS, "12"),
        ]))
        .expect("valid")
        .expect("configured");
        assert_eq!(config.base_url_or_default(), DEFAULT_OPENAI_BASE_URL);
        assert_eq!(config.timeout, Duration::from_secs(12));
        assert!(!config.is_azure());
        // A local server (Ollama) needs no key.
        let local = LlmConfig::from_lookup(lookup(&[
            (env::PROVIDER, "openai"),
            (env::MODEL, "llama3.1"),
            (env::BASE_URL, "http://127.0.0.1:11434/v1/"),
        ]))
        .expect("valid")
        .expect("configured");
        assert_eq!(local.base_url_or_default(), "http://127.0.0.1:11434/v1");
    }

    #[test]
    fn azure_is_recognised_by_its_host_and_needs_a_key() {
        let mut config = LlmConfig::new(ProviderKind::OpenAi, "gpt-4o");
        config.base_url = Some("https://acme.openai.azure.com/openai/deployments/gpt-4o".into());
        assert!(config.is_azure());
        assert!(matches!(
            config.check(),
            Err(ConfigError::Missing {
                missing: env::API_KEY,
                ..
            })
        ));
    }

    #[test]
    fn vertex_needs_project_location_and_token() {
        let base = [(env::PROVIDER, "vertex"), (env::MODEL, "gemini-2.0-flash")];
        let err = LlmConfig::from_lookup(lookup(&base)).expect_err("no project");
        assert_eq!(
            err,
            ConfigError::Missing {
                provider: ProviderKind::Vertex,
                missing: env::VERTEX_PROJECT
            }
        );
        let mut with = base.to_vec();
        with.push((env::VERTEX_PROJECT, "acme-prod"));
        let err = LlmConfig::from_lookup(lookup(&with)).expect_err("no location");
        assert!(err.to_string().contains(env::VERTEX_LOCATION), "{err}");
        with.push((env::VERTEX_LOCATION, "europe-west2"));
        let err = LlmConfig::from_lookup(lookup(&with)).expect_err("no token");
        assert!(err.to_string().contains(env::API_KEY), "{err}");
        with.push((env::API_KEY, "ya29.token"));
        let config = LlmConfig::from_lookup(lookup(&with))
            .expect("valid")
            .expect("configured");
        assert_eq!(
            config.base_url_or_default(),
            "https://europe-west2-aiplatform.googleapis.com"
        );
        let mut bad = config.clone();
        bad.vertex_project = Some("acme/../other".into());
        assert!(matches!(bad.check(), Err(ConfigError::Invalid { .. })));
    }

    #[test]
    fn a_bad_timeout_or_url_is_refused() {
        let err = LlmConfig::from_lookup(lookup(&[
            (env::PROVIDER, "anthropic"),
            (env::MODEL, "claude-sonnet-4-5"),
            (env::API_KEY, "k"),
            (env::TIMEOUT_SECS, "soon"),
        ]))
        .expect_err("bad timeout");
        assert!(err.to_string().contains(env::TIMEOUT_SECS), "{err}");
        let err = LlmConfig::from_lookup(lookup(&[
            (env::PROVIDER, "anthropic"),
            (env::MODEL, "claude-sonnet-4-5"),
            (env::API_KEY, "k"),
            (env::BASE_URL, "ftp://example.com"),
        ]))
        .expect_err("bad url");
        assert!(err.to_string().contains(env::BASE_URL), "{err}");
    }

    #[test]
    fn the_key_is_redacted_in_debug() {
        let mut config = LlmConfig::new(ProviderKind::Anthropic, "claude");
        config.api_key = Some(ApiKey::new("sk-ant-secret-value"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("sk-ant-secret-value"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }
}
