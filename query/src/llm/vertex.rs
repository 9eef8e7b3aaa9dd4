//! Gemini on Vertex AI.
//!
//! `POST {base}/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent`
//! (streamed: `:streamGenerateContent?alt=sse`) with a bearer access token,
//! `contents` (roles `user` and `model`), `systemInstruction`, and
//! `generationConfig` with `responseMimeType: "application/json"` and the
//! reply schema as `responseSchema` (Vertex's OpenAPI subset, converted by
//! [`to_vertex_schema`]). A reply is the text of
//! `candidates[0].content.parts`; streamed, each `data:` event is a partial
//! response and the texts add up; the last one has a `finishReason`.
//! Errors are `{"error": {"code", "message", "status"}}`.

use std::fmt;

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use super::config::{ApiKey, LlmConfig};
use super::error::LlmError;
use super::http::{Body, Http, Wire};
use super::reply::{finish, Completion};
use super::{Generated, LlmProvider, LlmRequest, Role};

pub struct VertexProvider {
    http: Http,
    /// Up to the model, without the method.
    model_url: String,
    model: String,
    token: ApiKey,
    max_tokens: u32,
    temperature: Option<f32>,
}

impl fmt::Debug for VertexProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VertexProvider")
            .field("model_url", &self.model_url)
            .field("token", &self.token)
            .field("http", &self.http)
            .finish()
    }
}

impl VertexProvider {
    pub fn new(config: &LlmConfig) -> Result<Self, LlmError> {
        config.check()?;
        let missing = |missing| {
            LlmError::Config(super::ConfigError::Missing {
                provider: config.provider,
                missing,
            })
        };
        // check() made sure these are there and are plain path segments.
        let project = config
            .vertex_project
            .as_deref()
            .ok_or_else(|| missing(super::config::env::VERTEX_PROJECT))?;
        let location = config
            .vertex_location
            .as_deref()
            .ok_or_else(|| missing(super::config::env::VERTEX_LOCATION))?;
        let token = config
            .api_key
            .clone()
            .ok_or_else(|| missing(super::config::env::API_KEY))?;
        let base = config.base_url()?;
        Ok(VertexProvider {
            http: Http::new(config, "vertex")?,
            model_url: format!(
                "{}/v1/projects/{project}/locations/{location}/publishers/google/models/{}",
                base.as_str().trim_end_matches('/'),
                config.model
            ),
            model: config.model.clone(),
            token,
            max_tokens: config.max_tokens,
            temperature: config.temperature,
        })
    }

    /// The URL of one call.
    pub fn url(&self, stream: bool) -> Result<reqwest::Url, LlmError> {
        let text = if stream {
            format!("{}:streamGenerateContent?alt=sse", self.model_url)
        } else {
            format!("{}:generateContent", self.model_url)
        };
        reqwest::Url::parse(&text).map_err(|e| {
            LlmError::Config(super::ConfigError::Invalid {
                name: super::config::env::BASE_URL,
                reason: e.to_string(),
            })
        })
    }

    /// The request body (public for tests of the wire format).
    pub fn body(&self, request: &LlmRequest) -> Value {
        let contents: Vec<Value> = request
            .messages
            .iter()
            .map(|m| {
                json!({
                    "role": match m.role { Role::User => "user", Role::Assistant => "model" },
                    "parts": [{"text": m.content}],
                })
            })
            .collect();
        let mut generation = json!({
            "responseMimeType": "application/json",
            "maxOutputTokens": self.max_tokens,
        });
        if let Some(schema) = &request.schema {
            generation["responseSchema"] = to_vertex_schema(schema);
        }
        if let Some(t) = self.temperature {
            generation["temperature"] = json!(t);
        }
        json!({
            "contents": contents,
            "systemInstruction": {"parts": [{"text": request.system}]},
            "generationConfig": generation,
        })
    }
}

#[async_trait]
impl LlmProvider for VertexProvider {
    fn describe(&self) -> String {
        format!("vertex:{}", self.model)
    }

    async fn complete(&self, request: &LlmRequest) -> Result<Generated, LlmError> {
        let url = self.url(request.stream)?;
        let body =
            serde_json::to_vec(&self.body(request)).map_err(|e| LlmError::Prompt(e.to_string()))?;
        let build = |client: &reqwest::Client| {
            client
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .bearer_auth(self.token.expose())
                .body(body.clone())
        };
        let wire = VertexWire { http: &self.http };
        let completion = self.http.exchange(&build, request.stream, &wire).await?;
        finish(completion, self.max_tokens)
    }
}

/// A JSON schema (as OpenAI's strict mode takes it) in Vertex's OpenAPI 3.0
/// subset: upper-case types, `nullable` instead of a `null` type or branch,
/// and no keywords Vertex does not know (`additionalProperties`, string
/// formats other than `date-time` and `enum`).
pub fn to_vertex_schema(schema: &Value) -> Value {
    let Value::Object(fields) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    let mut nullable = false;
    // `anyOf: [X, {type: null}]` is X, nullable.
    if let Some(Value::Array(branches)) = fields.get("anyOf") {
        let is_null = |b: &Value| b.get("type").and_then(Value::as_str) == Some("null");
        let rest: Vec<&Value> = branches.iter().filter(|b| !is_null(b)).collect();
        nullable = rest.len() < branches.len();
        if let [only] = rest.as_slice() {
            let mut inner = to_vertex_schema(only);
            if let (Value::Object(inner_fields), Some(d)) = (&mut inner, fields.get("description"))
            {
                inner_fields.insert("description".into(), d.clone());
            }
            if nullable {
                inner["nullable"] = json!(true);
            }
            return inner;
        }
        out.insert(
            "anyOf".into(),
            Value::Array(rest.into_iter().map(to_vertex_schema).collect()),
        );
    }
    for (key, value) in fields {
        match key.as_str() {
            "type" => match value {
                Value::String(t) => {
                    out.insert(key.clone(), json!(t.to_ascii_uppercase()));
                }
                // ["string", "null"]: the one type, nullable.
                Value::Array(types) => {
                    for t in types.iter().filter_map(Value::as_str) {
                        if t == "null" {
                            nullable = true;
                        } else {
                            out.insert(key.clone(), json!(t.to_ascii_uppercase()));
                        }
                    }
                }
                _ => {}
            },
            "properties" => {
                if let Value::Object(props) = value {
                    let converted: Map<String, Value> = props
                        .iter()
                        .map(|(k, v)| (k.clone(), to_vertex_schema(v)))
                        .collect();
                    out.insert(key.clone(), Value::Object(converted));
                    // Gemini writes properties in this order (otherwise
                    // alphabetical); `required` keeps the schema's order,
                    // which a JSON object here does not.
                    let order = match fields.get("required") {
                        Some(Value::Array(names)) => names.clone(),
                        _ => props.keys().map(|k| json!(k)).collect(),
                    };
                    out.insert("propertyOrdering".into(), Value::Array(order));
                }
            }
            "items" => {
                out.insert(key.clone(), to_vertex_schema(value));
            }
            "format" => {
                if matches!(value.as_str(), Some("date-time" | "enum")) {
                    out.insert(key.clone(), value.clone());
                }
            }
            "required" | "enum" | "description" | "minItems" | "maxItems" | "minimum"
            | "maximum" => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    if nullable {
        out.insert("nullable".into(), json!(true));
    }
    Value::Object(out)
}

struct VertexWire<'a> {
    http: &'a Http,
}

/// `{"error": {"code", "message", "status"}}`; a stream without `alt=sse`
/// wraps it in an array.
fn error_detail(body: &Value) -> Option<(Option<String>, String)> {
    let body = match body {
        Value::Array(items) => items.first()?,
        other => other,
    };
    let error = body.get("error")?;
    let message = error.get("message")?.as_str()?.to_owned();
    let kind = error
        .get("status")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Some((kind, message))
}

/// finishReasons that mean the reply was withheld, not finished.
const BLOCKED: &[&str] = &[
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
];

impl VertexWire<'_> {
    /// Adds one (possibly partial) response to the completion; true when it
    /// carries the finish reason.
    fn add(&self, response: &Value, completion: &mut Completion) -> Result<bool, LlmError> {
        if response.get("error").is_some() {
            let (kind, message) = error_detail(response)
                .unwrap_or_else(|| (None, "an error without a message".to_owned()));
            let status = response["error"]
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(500);
            return Err(self.http.api_error(status, kind, message, None));
        }
        if let Some(reason) = response
            .get("promptFeedback")
            .and_then(|f| f.get("blockReason"))
            .and_then(Value::as_str)
        {
            completion.refusal = Some(format!("the provider blocked the question ({reason})"));
            return Ok(true);
        }
        let Some(candidate) = response
            .get("candidates")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        else {
            // A partial response may carry only usage metadata.
            return Ok(false);
        };
        if let Some(parts) = candidate
            .get("content")
            .and_then(|c| c.get("parts"))
            .and_then(Value::as_array)
        {
            for part in parts {
                // A thinking model's thoughts are not the reply.
                if part.get("thought").and_then(Value::as_bool) == Some(true) {
                    continue;
                }
                if let Some(text) = part.get("text").and_then(Value::as_str) {
                    completion.text.push_str(text);
                }
            }
        }
        match candidate.get("finishReason").and_then(Value::as_str) {
            None | Some("FINISH_REASON_UNSPECIFIED") => Ok(false),
            Some("MAX_TOKENS") => {
                completion.cut_off = true;
                Ok(true)
            }
            Some(reason) if BLOCKED.contains(&reason) => {
                completion.refusal = Some(format!("the provider withheld the reply ({reason})"));
                completion.text.clear();
                Ok(true)
            }
            Some(_) => Ok(true),
        }
    }
}

impl Wire for VertexWire<'_> {
    fn error_detail(&self, body: &Value) -> Option<(Option<String>, String)> {
        error_detail(body)
    }

    fn completion(&self, body: Body) -> Result<Completion, LlmError> {
        let mut completion = Completion::default();
        match body {
            Body::Whole(bytes) => {
                let body: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| self.http.protocol(format!("not JSON: {e}")))?;
                let finished = self.add(&body, &mut completion)?;
                if !finished && completion.text.is_empty() {
                    return Err(self.http.protocol("no candidates"));
                }
                Ok(completion)
            }
            Body::Events(events) => {
                let mut finished = false;
                for event in events {
                    let response: Value = serde_json::from_str(&event.data).map_err(|e| {
                        self.http
                            .protocol(format!("a stream event is not JSON: {e}"))
                    })?;
                    finished |= self.add(&response, &mut completion)?;
                }
                if !finished {
                    return Err(LlmError::Incomplete {
                        provider: self.http.provider,
                    });
                }
                Ok(completion)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::prompt::reply_schema;

    #[test]
    fn the_reply_schema_in_vertex_terms() {
        let schema = to_vertex_schema(&reply_schema().expect("schema"));
        assert_eq!(schema["type"], "OBJECT");
        assert_eq!(
            schema["propertyOrdering"],
            json!(["plan", "sql", "decline"])
        );
        let plan = &schema["properties"]["plan"];
        assert_eq!(plan["type"], "OBJECT");
        assert_eq!(plan["nullable"], true);
        assert_eq!(plan["properties"]["metrics"]["items"]["type"], "STRING");
        assert_eq!(plan["properties"]["period"]["nullable"], true);
        assert_eq!(
            plan["properties"]["period"]["properties"]["start"]["type"],
            "STRING"
        );
        assert!(plan["properties"]["period"]["properties"]["start"]
            .get("format")
            .is_none());
        assert_eq!(
            plan["properties"]["compare"]["enum"],
            json!(["previous_period", "previous_year"])
        );
        assert_eq!(schema["properties"]["sql"]["type"], "STRING");
        assert_eq!(schema["properties"]["sql"]["nullable"], true);
        let text = schema.to_string();
        for gone in ["additionalProperties", "anyOf", "\"null\""] {
            assert!(!text.contains(gone), "{gone} left in {text}");
        }
    }
}
