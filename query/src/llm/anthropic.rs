//! Anthropic's Messages API.
//!
//! `POST {base}/v1/messages` with `x-api-key`, `anthropic-version: 2023-06-01`,
//! and a body of `model`, `max_tokens`, `system`, `messages` (user and
//! assistant turns). The Messages API has no schema setting, so the reply
//! schema is appended to the system prompt. A reply is the `text` of its
//! `content` blocks; streamed, the `delta.text` of each `content_block_delta`
//! event between `message_start` and `message_stop` (an `error` event ends
//! it). Errors are `{"type": "error", "error": {"type", "message"}}`.

use std::fmt;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::config::{ApiKey, LlmConfig};
use super::error::LlmError;
use super::http::{Body, Http, Wire};
use super::reply::{finish, Completion};
use super::{Generated, LlmProvider, LlmRequest, Role};

pub const ANTHROPIC_VERSION: &str = "2023-06-01";

pub struct AnthropicProvider {
    http: Http,
    url: reqwest::Url,
    model: String,
    api_key: ApiKey,
    max_tokens: u32,
    temperature: Option<f32>,
}

impl fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicProvider")
            .field("url", &self.url.as_str())
            .field("model", &self.model)
            .field("api_key", &self.api_key)
            .field("http", &self.http)
            .finish()
    }
}

impl AnthropicProvider {
    pub fn new(config: &LlmConfig) -> Result<Self, LlmError> {
        config.check()?;
        let base = config.base_url()?;
        let url = reqwest::Url::parse(&format!(
            "{}/v1/messages",
            base.as_str().trim_end_matches('/')
        ))
        .map_err(|e| {
            LlmError::Config(super::ConfigError::Invalid {
                name: super::config::env::BASE_URL,
                reason: e.to_string(),
            })
        })?;
        // check() refused a configuration without a key.
        let api_key = config.api_key.clone().ok_or_else(|| {
            LlmError::Config(super::ConfigError::Missing {
                provider: config.provider,
                missing: super::config::env::API_KEY,
            })
        })?;
        Ok(AnthropicProvider {
            http: Http::new(config, "anthropic")?,
            url,
            model: config.model.clone(),
            api_key,
            max_tokens: config.max_tokens,
            temperature: config.temperature,
        })
    }

    /// The request body (public for tests of the wire format).
    pub fn body(&self, request: &LlmRequest) -> Value {
        let system = match &request.schema {
            Some(schema) => format!(
                "{}\n\n# The reply's JSON schema\n\n{}",
                request.system, schema
            ),
            None => request.system.clone(),
        };
        let messages: Vec<Value> = request
            .messages
            .iter()
            .map(|m| {
                json!({
                    "role": match m.role { Role::User => "user", Role::Assistant => "assistant" },
                    "content": m.content,
                })
            })
            .collect();
        let mut body = json!({
            "model": self.model,
            "max_tokens": self.max_tokens,
            "system": system,
            "messages": messages,
        });
        if request.stream {
            body["stream"] = json!(true);
        }
        if let Some(t) = self.temperature {
            body["temperature"] = json!(t);
        }
        body
    }
}

#[async_trait]
impl LlmProvider for AnthropicProvider {
    fn describe(&self) -> String {
        format!("anthropic:{}", self.model)
    }

    async fn complete(&self, request: &LlmRequest) -> Result<Generated, LlmError> {
        let body =
            serde_json::to_vec(&self.body(request)).map_err(|e| LlmError::Prompt(e.to_string()))?;
        let build = |client: &reqwest::Client| {
            let builder = client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("x-api-key", self.api_key.expose())
                .header("anthropic-version", ANTHROPIC_VERSION)
                .body(body.clone());
            if request.stream {
                builder.header(reqwest::header::ACCEPT, "text/event-stream")
            } else {
                builder
            }
        };
        let wire = AnthropicWire { http: &self.http };
        let completion = self.http.exchange(&build, request.stream, &wire).await?;
        finish(completion, self.max_tokens)
    }
}

struct AnthropicWire<'a> {
    http: &'a Http,
}

fn error_detail(body: &Value) -> Option<(Option<String>, String)> {
    let error = body.get("error")?;
    let message = error.get("message")?.as_str()?.to_owned();
    let kind = error.get("type").and_then(Value::as_str).map(str::to_owned);
    Some((kind, message))
}

/// The HTTP status an error type stands for (Anthropic's documented pairs),
/// for an error event inside a stream that already answered 200.
fn status_of(kind: Option<&str>) -> u16 {
    match kind {
        Some("invalid_request_error") => 400,
        Some("authentication_error") => 401,
        Some("permission_error") => 403,
        Some("not_found_error") => 404,
        Some("request_too_large") => 413,
        Some("rate_limit_error") => 429,
        Some("overloaded_error") => 529,
        _ => 500,
    }
}

/// What `stop_reason` says about the reply.
fn stopped(completion: &mut Completion, reason: Option<&str>) {
    match reason {
        Some("max_tokens") => completion.cut_off = true,
        Some("refusal") => {
            // What was streamed before the refusal is not a reply.
            completion.text.clear();
            completion.refusal = Some("the model declined to answer (refusal)".to_owned());
        }
        _ => {}
    }
}

impl Wire for AnthropicWire<'_> {
    fn error_detail(&self, body: &Value) -> Option<(Option<String>, String)> {
        error_detail(body)
    }

    fn completion(&self, body: Body) -> Result<Completion, LlmError> {
        match body {
            Body::Whole(bytes) => {
                let body: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| self.http.protocol(format!("not JSON: {e}")))?;
                let content = body
                    .get("content")
                    .and_then(Value::as_array)
                    .ok_or_else(|| self.http.protocol("no content"))?;
                let mut completion = Completion {
                    text: content
                        .iter()
                        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                        .filter_map(|b| b.get("text").and_then(Value::as_str))
                        .collect(),
                    ..Completion::default()
                };
                stopped(
                    &mut completion,
                    body.get("stop_reason").and_then(Value::as_str),
                );
                Ok(completion)
            }
            Body::Events(events) => {
                let mut completion = Completion::default();
                let mut started = false;
                for event in events {
                    let data: Value = serde_json::from_str(&event.data).map_err(|e| {
                        self.http
                            .protocol(format!("a stream event is not JSON: {e}"))
                    })?;
                    // The `event:` line and the data's `type` agree; the data is authoritative.
                    let kind = data
                        .get("type")
                        .and_then(Value::as_str)
                        .or(event.event.as_deref())
                        .unwrap_or_default();
                    match kind {
                        "message_start" => started = true,
                        "content_block_delta" => {
                            let delta = &data["delta"];
                            if delta.get("type").and_then(Value::as_str) == Some("text_delta") {
                                if let Some(text) = delta.get("text").and_then(Value::as_str) {
                                    completion.text.push_str(text);
                                }
                            }
                        }
                        "message_delta" => stopped(
                            &mut completion,
                            data["delta"].get("stop_reason").and_then(Value::as_str),
                        ),
                        "message_stop" => {
                            if !started {
                                return Err(self
                                    .http
                                    .protocol("message_stop before message_start"));
                            }
                            return Ok(completion);
                        }
                        "error" => {
                            let (kind, message) = error_detail(&data).unwrap_or_else(|| {
                                (None, "an error event without a message".to_owned())
                            });
                            // The status from the type as sent; both are redacted after.
                            let status = status_of(kind.as_deref());
                            return Err(self.http.api_error(status, kind, message, None));
                        }
                        // content_block_start/stop, ping, and event types added later.
                        _ => {}
                    }
                }
                Err(LlmError::Incomplete {
                    provider: self.http.provider,
                })
            }
        }
    }
}
