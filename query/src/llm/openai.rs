//! OpenAI-compatible chat completions: OpenAI itself, Azure OpenAI, and the
//! local servers that speak the same format (Ollama, vLLM, llama.cpp server).
//!
//! `POST {base}/chat/completions` with `Authorization: Bearer <key>` (Azure:
//! an `api-key` header and an `api-version` query parameter), the system
//! prompt as the first message, and the reply schema as
//! `response_format: {type: "json_schema", json_schema: {name, schema, strict: true}}`.
//! A reply is `choices[0].message.content` (or `.refusal`); streamed, it is
//! the `choices[0].delta.content` of each `data:` event until `data: [DONE]`.
//! Errors are `{"error": {"message", "type", "code"}}`.

use std::fmt;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::config::{ApiKey, LlmConfig, DEFAULT_AZURE_API_VERSION};
use super::error::LlmError;
use super::http::{Body, Http, Wire};
use super::prompt::REPLY_SCHEMA_NAME;
use super::reply::{finish, Completion};
use super::{Generated, LlmProvider, LlmRequest, Role};

pub struct OpenAiProvider {
    http: Http,
    url: reqwest::Url,
    model: String,
    azure: bool,
    api_key: Option<ApiKey>,
    /// OpenAI's own service (and Azure) want `max_completion_tokens`; the
    /// local servers know `max_tokens`.
    token_field: &'static str,
    max_tokens: u32,
    temperature: Option<f32>,
}

impl fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("url", &self.url.as_str())
            .field("model", &self.model)
            .field("azure", &self.azure)
            .field("api_key", &self.api_key)
            .field("http", &self.http)
            .finish()
    }
}

impl OpenAiProvider {
    pub fn new(config: &LlmConfig) -> Result<Self, LlmError> {
        config.check()?;
        let azure = config.is_azure();
        let base = config.base_url()?;
        let mut url = reqwest::Url::parse(&format!(
            "{}/chat/completions",
            base.as_str().trim_end_matches('/')
        ))
        .map_err(|e| {
            LlmError::Config(super::ConfigError::Invalid {
                name: super::config::env::BASE_URL,
                reason: e.to_string(),
            })
        })?;
        if azure {
            let version = config
                .azure_api_version
                .as_deref()
                .unwrap_or(DEFAULT_AZURE_API_VERSION);
            url.query_pairs_mut().append_pair("api-version", version);
        }
        let host = base.host_str().unwrap_or_default();
        let token_field = if azure || host == "api.openai.com" {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        Ok(OpenAiProvider {
            http: Http::new(config, if azure { "azure-openai" } else { "openai" })?,
            url,
            model: config.model.clone(),
            azure,
            api_key: config.api_key.clone(),
            token_field,
            max_tokens: config.max_tokens,
            temperature: config.temperature,
        })
    }

    /// The request body (public for tests of the wire format).
    pub fn body(&self, request: &LlmRequest) -> Value {
        let mut messages = vec![json!({"role": "system", "content": request.system})];
        messages.extend(request.messages.iter().map(|m| {
            json!({
                "role": match m.role { Role::User => "user", Role::Assistant => "assistant" },
                "content": m.content,
            })
        }));
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "stream": request.stream,
        });
        body[self.token_field] = json!(self.max_tokens);
        if let Some(t) = self.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(schema) = &request.schema {
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": {"name": REPLY_SCHEMA_NAME, "schema": schema, "strict": true},
            });
        }
        body
    }

    /// One attempt's HTTP request: the endpoint and the key in the header
    /// the service wants.
    fn request(
        &self,
        client: &reqwest::Client,
        body: Vec<u8>,
        stream: bool,
    ) -> reqwest::RequestBuilder {
        let mut builder = client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.api_key {
            builder = if self.azure {
                builder.header("api-key", key.expose())
            } else {
                builder.bearer_auth(key.expose())
            };
        }
        if stream {
            builder = builder.header(reqwest::header::ACCEPT, "text/event-stream");
        }
        builder
    }
}

#[async_trait]
impl LlmProvider for OpenAiProvider {
    fn describe(&self) -> String {
        format!("{}:{}", self.http.provider, self.model)
    }

    async fn complete(&self, request: &LlmRequest) -> Result<Generated, LlmError> {
        let body =
            serde_json::to_vec(&self.body(request)).map_err(|e| LlmError::Prompt(e.to_string()))?;
        let build = |client: &reqwest::Client| self.request(client, body.clone(), request.stream);
        let wire = OpenAiWire { http: &self.http };
        let completion = self.http.exchange(&build, request.stream, &wire).await?;
        finish(completion, self.max_tokens)
    }
}

struct OpenAiWire<'a> {
    http: &'a Http,
}

impl OpenAiWire<'_> {
    fn choice<'v>(&self, body: &'v Value) -> Option<&'v Value> {
        body.get("choices")?.as_array()?.first()
    }

    /// An error event inside a stream: `{"error": {…}}`.
    fn api_error(&self, body: &Value) -> LlmError {
        let (kind, message) =
            error_detail(body).unwrap_or_else(|| (None, "an error without a message".to_owned()));
        // An error inside a 200 stream has no status of its own; 500 makes it retryable,
        // as the same error would be before the stream started.
        let status = body["error"]
            .get("code")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (400..600).contains(c))
            .unwrap_or(500);
        self.http.api_error(status, kind, message, None)
    }
}

/// `{"error": {"message", "type", "code"}}`, or an older server's `{"error": "text"}`.
fn error_detail(body: &Value) -> Option<(Option<String>, String)> {
    let error = body.get("error")?;
    if let Some(text) = error.as_str() {
        return Some((None, text.to_owned()));
    }
    let message = error.get("message")?.as_str()?.to_owned();
    let kind = error
        .get("type")
        .and_then(Value::as_str)
        .or_else(|| error.get("code").and_then(Value::as_str))
        .map(str::to_owned);
    Some((kind, message))
}

impl Wire for OpenAiWire<'_> {
    fn error_detail(&self, body: &Value) -> Option<(Option<String>, String)> {
        error_detail(body)
    }

    fn completion(&self, body: Body) -> Result<Completion, LlmError> {
        match body {
            Body::Whole(bytes) => {
                let body: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| self.http.protocol(format!("not JSON: {e}")))?;
                let choice = self
                    .choice(&body)
                    .ok_or_else(|| self.http.protocol("no choices"))?;
                let message = choice
                    .get("message")
                    .ok_or_else(|| self.http.protocol("a choice without a message"))?;
                let mut completion = Completion {
                    text: text_of(message.get("content")),
                    refusal: message
                        .get("refusal")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    cut_off: false,
                };
                finished(
                    &mut completion,
                    choice.get("finish_reason").and_then(Value::as_str),
                );
                Ok(completion)
            }
            Body::Events(events) => {
                let mut completion = Completion::default();
                let mut refusal = String::new();
                let mut ended = false;
                for event in events {
                    let data = event.data.trim();
                    if data == "[DONE]" {
                        ended = true;
                        break;
                    }
                    let chunk: Value = serde_json::from_str(data).map_err(|e| {
                        self.http
                            .protocol(format!("a stream event is not JSON: {e}"))
                    })?;
                    if chunk.get("error").is_some() {
                        return Err(self.api_error(&chunk));
                    }
                    // A chunk without choices (usage) carries no text.
                    let Some(choice) = self.choice(&chunk) else {
                        continue;
                    };
                    if let Some(delta) = choice.get("delta") {
                        completion.text.push_str(&text_of(delta.get("content")));
                        if let Some(r) = delta.get("refusal").and_then(Value::as_str) {
                            refusal.push_str(r);
                        }
                    }
                    if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                        finished(&mut completion, Some(reason));
                    }
                }
                if !ended {
                    return Err(LlmError::Incomplete {
                        provider: self.http.provider,
                    });
                }
                if !refusal.is_empty() {
                    completion.refusal = Some(refusal);
                }
                Ok(completion)
            }
        }
    }
}

/// What `finish_reason` says about the reply: `length` cut it off;
/// `content_filter` (Azure's filter, mostly) withheld it.
fn finished(completion: &mut Completion, reason: Option<&str>) {
    match reason {
        Some("length") => completion.cut_off = true,
        Some("content_filter") => {
            completion.text.clear();
            completion.refusal = Some("the provider's content filter withheld the reply".into());
        }
        _ => {}
    }
}

/// Content as a string, or as the newer list of `{type: "text", text}` parts.
fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{ApiKey, ProviderKind};

    fn built(config: &LlmConfig) -> (OpenAiProvider, reqwest::Request) {
        let provider = OpenAiProvider::new(config).expect("provider");
        let request = provider
            .request(&reqwest::Client::new(), b"{}".to_vec(), true)
            .build()
            .expect("request");
        (provider, request)
    }

    #[test]
    fn azure_gets_its_api_key_header_and_api_version() {
        let mut config = LlmConfig::new(ProviderKind::OpenAi, "gpt-4o");
        config.base_url = Some("https://acme.openai.azure.com/openai/deployments/gpt-4o/".into());
        config.api_key = Some(ApiKey::new("azure-key"));
        let (provider, request) = built(&config);
        assert_eq!(
            request.url().as_str(),
            "https://acme.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(request.headers()["api-key"], "azure-key");
        assert!(request.headers().get("authorization").is_none());
        assert_eq!(request.headers()["accept"], "text/event-stream");
        assert_eq!(provider.describe(), "azure-openai:gpt-4o");
        let body = provider.body(&LlmRequest {
            system: "s".into(),
            messages: vec![],
            schema: None,
            stream: false,
        });
        assert_eq!(body["max_completion_tokens"], 4096);
        assert!(body.get("max_tokens").is_none());
        config.azure_api_version = Some("2025-04-01-preview".into());
        let (_, request) = built(&config);
        assert_eq!(
            request.url().query(),
            Some("api-version=2025-04-01-preview")
        );
    }

    #[test]
    fn openai_gets_a_bearer_token_and_a_local_server_none() {
        let mut config = LlmConfig::new(ProviderKind::OpenAi, "gpt-4o-mini");
        config.api_key = Some(ApiKey::new("sk-openai"));
        let (provider, request) = built(&config);
        assert_eq!(
            request.url().as_str(),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(request.headers()["authorization"], "Bearer sk-openai");
        assert_eq!(provider.describe(), "openai:gpt-4o-mini");
        let mut local = LlmConfig::new(ProviderKind::OpenAi, "llama3.1");
        local.base_url = Some("http://127.0.0.1:11434/v1".into());
        let (provider, request) = built(&local);
        assert!(request.headers().get("authorization").is_none());
        let body = provider.body(&LlmRequest {
            system: "s".into(),
            messages: vec![],
            schema: None,
            stream: false,
        });
        assert_eq!(body["max_tokens"], 4096);
        assert!(body.get("response_format").is_none());
    }
}
