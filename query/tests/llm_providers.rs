//! The LLM providers against local wire-format servers: for each of OpenAI
//! chat completions, Anthropic Messages and Vertex AI Gemini, an axum server
//! on 127.0.0.1 checks each request the way the real service does (path,
//! headers, body fields, the reply schema), refusing a wrong one with that
//! service's own error body, and answers from a script in that service's
//! format: plain, streamed in awkward chunks, 429 and 500 then success, 401
//! and 400 errors, too slow, malformed. No test here talks to a real service.

use std::collections::VecDeque;
use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use futures::StreamExt;
use query::llm::anthropic::AnthropicProvider;
use query::llm::openai::OpenAiProvider;
use query::llm::prompt::reply_schema;
use query::llm::vertex::{to_vertex_schema, VertexProvider};
use query::llm::{
    build_provider, build_request, ApiKey, Generated, LlmConfig, LlmError, LlmProvider, LlmRequest,
    PromptContext, ProviderKind,
};
use query::plan::Plan;
use query::semantic::SemanticModel;
use serde_json::{json, Value};
use time::macros::date;

/// The key the servers accept; no error may ever show it.
const KEY: &str = "sk-test-4f9c2e7a-SECRET-9b1d";
/// A key the servers refuse (and echo back, as OpenAI does).
const WRONG_KEY: &str = "sk-wrong-77aa31-SECRET-0c5e";

/// The reply a model gives in these tests: a plan, with a name whose "é"
/// is two bytes in UTF-8.
const PLAN_REPLY: &str = r#"{"plan": {"metrics": ["revenue"], "dimensions": ["customer"], "filters": [{"dimension": "customer", "values": ["Café Ltd"]}], "period": {"start": "2026-07-01", "end": "2026-09-30", "label": "this quarter"}}}"#;

fn expected_plan() -> Plan {
    match query::llm::reply::parse(PLAN_REPLY).expect("the test reply parses") {
        Generated::Plan(plan) => plan,
        other => panic!("not a plan: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// A scripted server

/// What the server answers to one request.
#[derive(Clone)]
enum Canned {
    Json {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// `text/event-stream`, written chunk by chunk with a pause between.
    Stream(Vec<Vec<u8>>),
    /// Answers only after this long.
    Slow(Duration),
}

fn json_reply(status: u16, body: Value) -> Canned {
    Canned::Json {
        status,
        headers: Vec::new(),
        body: body.to_string(),
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

struct Server {
    flavour: &'static Flavour,
    script: Mutex<VecDeque<Canned>>,
    seen: Mutex<Vec<Seen>>,
}

impl Server {
    fn hits(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    fn last(&self) -> Seen {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a request")
    }
}

async fn handle(
    State(server): State<Arc<Server>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = Seen {
        method,
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let verdict = (server.flavour.check)(&seen);
    server.seen.lock().expect("lock").push(seen);
    let canned = match verdict {
        Err(refusal) => refusal,
        Ok(()) => server
            .script
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or_else(|| json_reply(500, json!({"script": "exhausted"}))),
    };
    respond(canned).await
}

async fn respond(canned: Canned) -> Response {
    match canned {
        Canned::Json {
            status,
            headers,
            body,
        } => {
            let mut response = Response::builder()
                .status(StatusCode::from_u16(status).expect("status"))
                .header("content-type", "application/json");
            for (name, value) in headers {
                response = response.header(name, value);
            }
            response.body(Body::from(body)).expect("response")
        }
        Canned::Stream(chunks) => {
            let stream = futures::stream::iter(chunks).then(|chunk| async move {
                // Separate writes, so the client really sees separate chunks.
                tokio::time::sleep(Duration::from_millis(15)).await;
                Ok::<_, std::io::Error>(Bytes::from(chunk))
            });
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(stream))
                .expect("response")
        }
        Canned::Slow(delay) => {
            tokio::time::sleep(delay).await;
            Response::builder()
                .status(StatusCode::OK)
                .body(Body::from("{}"))
                .expect("response")
        }
    }
}

/// Starts a server for `flavour` that answers `script` in order; returns it
/// and its base URL.
async fn start(flavour: &'static Flavour, script: Vec<Canned>) -> (Arc<Server>, String) {
    let server = Arc::new(Server {
        flavour,
        script: Mutex::new(script.into()),
        seen: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let app = Router::new()
        .fallback(handle)
        .with_state(Arc::clone(&server));
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (server, base)
}

/// Cuts an event-stream body into chunks: inside the two bytes of "é",
/// inside JSON strings, and at a few other places.
fn awkward_chunks(body: &[u8]) -> Vec<Vec<u8>> {
    let e_acute = body
        .windows(2)
        .position(|w| w == "é".as_bytes())
        .expect("the body has an é");
    let string_inside = body
        .windows(5)
        .position(|w| w == b"reven")
        .expect("the body names revenue")
        + 3;
    let mut cuts = vec![
        e_acute + 1,
        string_inside,
        body.len() / 5,
        body.len() / 2,
        body.len() - 3,
    ];
    cuts.sort_unstable();
    cuts.dedup();
    let mut chunks = Vec::new();
    let mut from = 0;
    for cut in cuts {
        chunks.push(body[from..cut].to_vec());
        from = cut;
    }
    chunks.push(body[from..].to_vec());
    chunks
}

/// The model's reply in pieces as a model streams it: one cut inside "Café",
/// one inside a key.
fn reply_pieces() -> Vec<String> {
    let at_e = PLAN_REPLY.find('é').expect("é");
    let at_key = PLAN_REPLY.find("dimensions").expect("dimensions") + 4;
    vec![
        PLAN_REPLY[..at_key].to_owned(),
        PLAN_REPLY[at_key..at_e].to_owned(),
        PLAN_REPLY[at_e..].to_owned(),
    ]
}

// ---------------------------------------------------------------------------
// The three wire formats

/// One provider's side of the wire, as its service has it.
struct Flavour {
    kind: ProviderKind,
    config: fn(&str) -> LlmConfig,
    /// Refuses a request the real service would refuse, with its error body.
    check: fn(&Seen) -> Result<(), Canned>,
    /// A complete, non-streamed reply whose text is `text`.
    reply: fn(&str) -> Canned,
    /// The event-stream body of a reply streamed in `pieces`.
    stream_body: fn(&[String]) -> Vec<u8>,
    /// The service's error body for `status` with `message`.
    error: fn(u16, &str) -> Canned,
    /// The error type the service gives a 400.
    bad_request_kind: &'static str,
    /// The service's way of saying the model refused (or its filter withheld the reply).
    refusal: fn() -> Canned,
    /// A reply stopped at the output token limit, its text so far `text`.
    cut_off: fn(&str) -> Canned,
}

fn fast_retries(mut config: LlmConfig) -> LlmConfig {
    config.timeout = Duration::from_secs(5);
    config.retry_min_delay = Duration::from_millis(10);
    config.retry_max_delay = Duration::from_millis(40);
    config.max_retries = 2;
    config
}

fn sse(events: &[(Option<&str>, String)]) -> Vec<u8> {
    let mut out = String::new();
    for (event, data) in events {
        if let Some(event) = event {
            out.push_str(&format!("event: {event}\n"));
        }
        out.push_str(&format!("data: {data}\n\n"));
    }
    out.into_bytes()
}

fn bearer_ok(seen: &Seen) -> bool {
    seen.header("authorization") == Some(&format!("Bearer {KEY}"))
}

// OpenAI chat completions ---------------------------------------------------

static OPENAI: Flavour = Flavour {
    kind: ProviderKind::OpenAi,
    config: |base| {
        let mut config = LlmConfig::new(ProviderKind::OpenAi, "gpt-4o-mini");
        config.base_url = Some(format!("{base}/v1"));
        config.api_key = Some(ApiKey::new(KEY));
        fast_retries(config)
    },
    check: openai_check,
    reply: |text| {
        json_reply(
            200,
            json!({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1_790_000_000,
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": text, "refusal": null}}],
                "usage": {"prompt_tokens": 900, "completion_tokens": 60, "total_tokens": 960},
            }),
        )
    },
    stream_body: |pieces| {
        let chunk = |delta: Value, finish: Value| {
            (
                None,
                json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_790_000_000,
                    "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                .to_string(),
            )
        };
        let mut events = vec![chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )];
        for piece in pieces {
            events.push(chunk(json!({"content": piece}), Value::Null));
        }
        events.push(chunk(json!({}), json!("stop")));
        events.push((None, "[DONE]".to_owned()));
        sse(&events)
    },
    error: |status, message| {
        let (kind, code) = match status {
            401 => ("invalid_request_error", "invalid_api_key"),
            429 => ("requests", "rate_limit_exceeded"),
            400 => ("invalid_request_error", "context_length_exceeded"),
            _ => ("server_error", "server_error"),
        };
        json_reply(
            status,
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
        )
    },
    bad_request_kind: "invalid_request_error",
    refusal: || {
        json_reply(
            200,
            json!({"id": "chatcmpl-2", "object": "chat.completion", "model": "gpt-4o-mini",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
                    "content": null, "refusal": "I'm sorry, I can't help with that."}}]}),
        )
    },
    cut_off: |text| {
        json_reply(
            200,
            json!({"id": "chatcmpl-3", "object": "chat.completion", "model": "gpt-4o-mini",
                "choices": [{"index": 0, "finish_reason": "length",
                    "message": {"role": "assistant", "content": text, "refusal": null}}]}),
        )
    },
};

fn openai_check(seen: &Seen) -> Result<(), Canned> {
    let refuse = |status: u16, message: String| Err((OPENAI.error)(status, &message));
    if seen.method != Method::POST || seen.path != "/v1/chat/completions" {
        return refuse(404, format!("Invalid URL ({} {})", seen.method, seen.path));
    }
    if !bearer_ok(seen) {
        let presented = seen
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or("");
        // OpenAI quotes the key it refused.
        return refuse(
            401,
            format!("Incorrect API key provided: {presented}. You can find your API key at https://platform.openai.com/account/api-keys."),
        );
    }
    let body = &seen.body;
    if seen.header("content-type") != Some("application/json") || !body.is_object() {
        return refuse(
            400,
            "We could not parse the JSON body of your request.".into(),
        );
    }
    if body["model"] != "gpt-4o-mini" {
        return refuse(400, "model: unexpected".into());
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let roles: Vec<&str> = messages.iter().filter_map(|m| m["role"].as_str()).collect();
    if roles.first() != Some(&"system")
        || roles.len() < 2
        || roles[1..]
            .iter()
            .any(|r| !matches!(*r, "user" | "assistant"))
        || messages.iter().any(|m| !m["content"].is_string())
    {
        return refuse(400, format!("Invalid messages: roles {roles:?}"));
    }
    let format = &body["response_format"];
    if format["type"] != "json_schema"
        || format["json_schema"]["name"] != "ledgerlake_reply"
        || format["json_schema"]["strict"] != true
        || format["json_schema"]["schema"] != reply_schema().expect("schema")
    {
        return refuse(400, format!("Invalid response_format: {format}"));
    }
    if !body["max_tokens"].is_u64() || !body["stream"].is_boolean() {
        return refuse(400, "max_tokens and stream are expected".into());
    }
    Ok(())
}

// Anthropic Messages ----------------------------------------------------------

static ANTHROPIC: Flavour = Flavour {
    kind: ProviderKind::Anthropic,
    config: |base| {
        let mut config = LlmConfig::new(ProviderKind::Anthropic, "claude-sonnet-4-5");
        config.base_url = Some(base.to_owned());
        config.api_key = Some(ApiKey::new(KEY));
        fast_retries(config)
    },
    check: anthropic_check,
    reply: |text| {
        json_reply(
            200,
            json!({
                "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 900, "output_tokens": 60},
            }),
        )
    },
    stream_body: |pieces| {
        let event = |name: &'static str, data: Value| (Some(name), data.to_string());
        let mut events = vec![
            event(
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_01", "type": "message",
                "role": "assistant", "content": [], "model": "claude-sonnet-4-5", "stop_reason": null,
                "usage": {"input_tokens": 900, "output_tokens": 1}}}),
            ),
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
            ),
            event("ping", json!({"type": "ping"})),
        ];
        for piece in pieces {
            events.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": piece}}),
            ));
        }
        events.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
        events.push(event(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"output_tokens": 60}}),
        ));
        events.push(event("message_stop", json!({"type": "message_stop"})));
        sse(&events)
    },
    error: |status, message| {
        let kind = match status {
            400 => "invalid_request_error",
            401 => "authentication_error",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            _ => "api_error",
        };
        json_reply(
            status,
            json!({"type": "error", "error": {"type": kind, "message": message}}),
        )
    },
    bad_request_kind: "invalid_request_error",
    refusal: || {
        json_reply(
            200,
            json!({"id": "msg_02", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                "content": [{"type": "text", "text": "{\"pl"}], "stop_reason": "refusal",
                "stop_sequence": null, "usage": {"input_tokens": 900, "output_tokens": 2}}),
        )
    },
    cut_off: |text| {
        json_reply(
            200,
            json!({"id": "msg_03", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                "content": [{"type": "text", "text": text}], "stop_reason": "max_tokens",
                "stop_sequence": null, "usage": {"input_tokens": 900, "output_tokens": 4096}}),
        )
    },
};

fn anthropic_check(seen: &Seen) -> Result<(), Canned> {
    let refuse = |status: u16, message: String| Err((ANTHROPIC.error)(status, &message));
    if seen.method != Method::POST || seen.path != "/v1/messages" {
        return refuse(404, format!("Not found: {}", seen.path));
    }
    if seen.header("x-api-key") != Some(KEY) {
        return refuse(401, "invalid x-api-key".into());
    }
    if seen.header("anthropic-version") != Some("2023-06-01") {
        return refuse(400, "anthropic-version: header is required".into());
    }
    if seen.headers.contains_key("authorization") {
        return refuse(400, "unexpected authorization header".into());
    }
    let body = &seen.body;
    if body["model"] != "claude-sonnet-4-5" || body["max_tokens"].as_u64().is_none_or(|n| n == 0) {
        return refuse(400, "model and max_tokens: Field required".into());
    }
    let system = body["system"].as_str().unwrap_or("");
    // No schema setting in the Messages API: the schema rides in the system prompt.
    if !system.contains("The as-of date is") || !system.contains("\"additionalProperties\"") {
        return refuse(400, "system: expected the prompt and its schema".into());
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    for (i, message) in messages.iter().enumerate() {
        let expected = if i % 2 == 0 { "user" } else { "assistant" };
        if message["role"] != expected || !message["content"].is_string() {
            return refuse(
                400,
                format!("messages.{i}: roles must alternate between \"user\" and \"assistant\""),
            );
        }
    }
    if messages.is_empty() || messages.len() % 2 == 0 {
        return refuse(
            400,
            "messages: the last message must be from the user".into(),
        );
    }
    if body.get("response_format").is_some() {
        return refuse(
            400,
            "response_format: Extra inputs are not permitted".into(),
        );
    }
    Ok(())
}

// Vertex AI Gemini ------------------------------------------------------------

const VERTEX_MODEL_PATH: &str =
    "/v1/projects/acme-prod/locations/europe-west2/publishers/google/models/gemini-2.0-flash";

static VERTEX: Flavour = Flavour {
    kind: ProviderKind::Vertex,
    config: |base| {
        let mut config = LlmConfig::new(ProviderKind::Vertex, "gemini-2.0-flash");
        config.base_url = Some(base.to_owned());
        config.vertex_project = Some("acme-prod".into());
        config.vertex_location = Some("europe-west2".into());
        config.api_key = Some(ApiKey::new(KEY));
        fast_retries(config)
    },
    check: vertex_check,
    reply: |text| json_reply(200, vertex_response(text, Some("STOP"))),
    stream_body: |pieces| {
        let mut events: Vec<(Option<&str>, String)> = pieces
            .iter()
            .map(|p| (None, vertex_response(p, None).to_string()))
            .collect();
        events.push((None, vertex_response("", Some("STOP")).to_string()));
        // Vertex ends each event with CRLF CRLF.
        String::from_utf8(sse(&events))
            .expect("utf-8")
            .replace('\n', "\r\n")
            .into_bytes()
    },
    error: |status, message| {
        let kind = match status {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            429 => "RESOURCE_EXHAUSTED",
            503 => "UNAVAILABLE",
            _ => "INTERNAL",
        };
        json_reply(
            status,
            json!({"error": {"code": status, "message": message, "status": kind}}),
        )
    },
    bad_request_kind: "INVALID_ARGUMENT",
    refusal: || {
        json_reply(
            200,
            json!({"promptFeedback": {"blockReason": "SAFETY"},
                "usageMetadata": {"promptTokenCount": 900}}),
        )
    },
    cut_off: |text| json_reply(200, vertex_response(text, Some("MAX_TOKENS"))),
};

fn vertex_response(text: &str, finish: Option<&str>) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": [{"text": text}]}});
    if let Some(finish) = finish {
        candidate["finishReason"] = json!(finish);
    }
    json!({"candidates": [candidate], "modelVersion": "gemini-2.0-flash-001",
        "usageMetadata": {"promptTokenCount": 900, "candidatesTokenCount": 60}})
}

fn vertex_check(seen: &Seen) -> Result<(), Canned> {
    let refuse = |status: u16, message: String| Err((VERTEX.error)(status, &message));
    let plain = format!("{VERTEX_MODEL_PATH}:generateContent");
    let streamed = format!("{VERTEX_MODEL_PATH}:streamGenerateContent");
    let path_ok = seen.path == plain && seen.query.is_none()
        || seen.path == streamed && seen.query.as_deref() == Some("alt=sse");
    if seen.method != Method::POST || !path_ok {
        return refuse(
            404,
            format!("The requested URL {} was not found.", seen.path),
        );
    }
    if !bearer_ok(seen) {
        return refuse(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token.".into(),
        );
    }
    let body = &seen.body;
    let contents = body["contents"].as_array().cloned().unwrap_or_default();
    let roles_ok = !contents.is_empty()
        && contents.iter().enumerate().all(|(i, c)| {
            c["role"] == if i % 2 == 0 { "user" } else { "model" }
                && c["parts"][0]["text"].is_string()
        });
    if !roles_ok {
        return refuse(
            400,
            "Please ensure that multiturn requests alternate between user and model.".into(),
        );
    }
    if !body["systemInstruction"]["parts"][0]["text"]
        .as_str()
        .is_some_and(|s| s.contains("The as-of date is"))
    {
        return refuse(400, "systemInstruction: expected the prompt".into());
    }
    let generation = &body["generationConfig"];
    let schema = &generation["responseSchema"];
    if generation["responseMimeType"] != "application/json"
        || !generation["maxOutputTokens"].is_u64()
        || schema.to_string().contains("additionalProperties")
        || *schema != to_vertex_schema(&reply_schema().expect("schema"))
    {
        return refuse(
            400,
            "Invalid JSON payload received. Unknown name \"additionalProperties\" at 'generation_config.response_schema'".into(),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Scenarios, run for every flavour

fn request(stream: bool) -> LlmRequest {
    let model = SemanticModel::builtin().expect("the builtin semantic model");
    let ctx = PromptContext {
        as_of: date!(2026 - 09 - 30),
        question: "Revenue from Café Ltd this quarter, by customer".into(),
        history: vec![(
            "Revenue this quarter".into(),
            Plan {
                metrics: vec!["revenue".into()],
                ..Plan::default()
            },
        )],
        correction: None,
    };
    build_request(&model, &ctx, stream).expect("the prompt builds")
}

fn provider(flavour: &Flavour, config: &LlmConfig) -> Arc<dyn LlmProvider> {
    assert_eq!(config.provider, flavour.kind);
    build_provider(config).expect("provider builds")
}

async fn plain_reply(flavour: &'static Flavour) {
    let (server, base) = start(flavour, vec![(flavour.reply)(PLAN_REPLY)]).await;
    let llm = provider(flavour, &(flavour.config)(&base));
    let generated = llm.complete(&request(false)).await.expect("a reply");
    assert_eq!(generated, Generated::Plan(expected_plan()));
    assert_eq!(server.hits(), 1);
}

async fn streamed_reply(flavour: &'static Flavour) {
    let body = (flavour.stream_body)(&reply_pieces());
    let chunks = awkward_chunks(&body);
    assert!(chunks.len() >= 5);
    let (server, base) = start(flavour, vec![Canned::Stream(chunks)]).await;
    let llm = provider(flavour, &(flavour.config)(&base));
    let generated = llm
        .complete(&request(true))
        .await
        .expect("a streamed reply");
    assert_eq!(generated, Generated::Plan(expected_plan()));
    assert_eq!(server.hits(), 1);
    let seen = server.last();
    match flavour.kind {
        ProviderKind::Vertex => assert!(seen.path.ends_with(":streamGenerateContent")),
        _ => assert_eq!(seen.body["stream"], true),
    }
}

async fn rate_limited_then_ok(flavour: &'static Flavour) {
    let Canned::Json { status, body, .. } = (flavour.error)(429, "Rate limit reached") else {
        panic!("an error is JSON")
    };
    let limited = Canned::Json {
        status,
        headers: vec![("retry-after", "1".to_owned())],
        body,
    };
    let (server, base) = start(flavour, vec![limited, (flavour.reply)(PLAN_REPLY)]).await;
    let llm = provider(flavour, &(flavour.config)(&base));
    let started = Instant::now();
    let generated = llm
        .complete(&request(false))
        .await
        .expect("a reply after the 429");
    assert_eq!(generated, Generated::Plan(expected_plan()));
    assert_eq!(server.hits(), 2, "one retry");
    // The schedule would have waited at most 40 ms: Retry-After won.
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited only {:?}",
        started.elapsed()
    );
}

async fn server_error_then_ok(flavour: &'static Flavour) {
    let (server, base) = start(
        flavour,
        vec![
            (flavour.error)(
                500,
                "The server had an error while processing your request.",
            ),
            (flavour.reply)(PLAN_REPLY),
        ],
    )
    .await;
    let llm = provider(flavour, &(flavour.config)(&base));
    let generated = llm
        .complete(&request(false))
        .await
        .expect("a reply after the 500");
    assert_eq!(generated, Generated::Plan(expected_plan()));
    assert_eq!(server.hits(), 2, "one retry");
}

async fn client_errors_are_surfaced_not_retried(flavour: &'static Flavour) {
    // A wrong key: the server's own refusal.
    let (server, base) = start(flavour, vec![]).await;
    let mut config = (flavour.config)(&base);
    config.api_key = Some(ApiKey::new(WRONG_KEY));
    let err = provider(flavour, &config)
        .complete(&request(false))
        .await
        .expect_err("401");
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(server.hits(), 1, "a 401 is not retried");
    let shown = err.to_string();
    assert!(
        shown.contains("401")
            && (shown.contains("API key")
                || shown.contains("x-api-key")
                || shown.contains("credentials")),
        "{shown}"
    );
    assert_no_secret(&err, WRONG_KEY);

    // A request the service cannot serve: its message, its error type.
    let message = "This model's maximum context length is 128000 tokens.";
    let (server, base) = start(flavour, vec![(flavour.error)(400, message)]).await;
    let err = provider(flavour, &(flavour.config)(&base))
        .complete(&request(false))
        .await
        .expect_err("400");
    match &err {
        LlmError::Api {
            status,
            kind,
            message: said,
            ..
        } => {
            assert_eq!(*status, 400);
            assert_eq!(kind.as_deref(), Some(flavour.bad_request_kind));
            assert_eq!(said, message);
        }
        other => panic!("not an API error: {other:?}"),
    }
    assert!(err.to_string().contains(message), "{err}");
    assert_eq!(server.hits(), 1, "a 400 is not retried");
}

async fn too_slow_is_a_timeout(flavour: &'static Flavour) {
    let (server, base) = start(flavour, vec![Canned::Slow(Duration::from_secs(10))]).await;
    let mut config = (flavour.config)(&base);
    config.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = provider(flavour, &config)
        .complete(&request(false))
        .await
        .expect_err("too slow");
    assert!(matches!(err, LlmError::Timeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(server.hits(), 1, "a timeout is not retried");
}

async fn malformed_replies(flavour: &'static Flavour) {
    // The model wrote prose, not JSON.
    let (_, base) = start(
        flavour,
        vec![(flavour.reply)(
            "Revenue was strong this quarter, mostly from Café Ltd.",
        )],
    )
    .await;
    let llm = provider(flavour, &(flavour.config)(&base));
    match llm.complete(&request(false)).await {
        Err(LlmError::BadReply {
            reason, excerpt, ..
        }) => {
            assert!(reason.contains("not JSON"), "{reason}");
            assert!(excerpt.starts_with("Revenue was strong"), "{excerpt}");
        }
        other => panic!("{other:?}"),
    }
    // JSON, but not a reply of ours.
    let (_, base) = start(flavour, vec![(flavour.reply)(r#"{"answer": 42}"#)]).await;
    let llm = provider(flavour, &(flavour.config)(&base));
    match llm.complete(&request(false)).await {
        Err(LlmError::BadReply { reason, .. }) => assert!(reason.contains("answer"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // The service's envelope itself is broken.
    let (server, base) = start(
        flavour,
        vec![Canned::Json {
            status: 200,
            headers: vec![],
            body: "<html>502 Bad Gateway</html>".into(),
        }],
    )
    .await;
    let llm = provider(flavour, &(flavour.config)(&base));
    let err = llm.complete(&request(false)).await.expect_err("not JSON");
    assert!(matches!(err, LlmError::Protocol { .. }), "{err:?}");
    assert_eq!(server.hits(), 1);
    // A stream that stops before its end marker is retried, then reported.
    let mut body = (flavour.stream_body)(&reply_pieces());
    body.truncate(body.len() / 2);
    // At the end of the last whole event (LF LF, or CRLF CRLF for Vertex).
    let cut = body
        .windows(2)
        .rposition(|w| w == b"\n\n")
        .map(|p| p + 2)
        .into_iter()
        .chain(
            body.windows(4)
                .rposition(|w| w == b"\r\n\r\n")
                .map(|p| p + 4),
        )
        .max()
        .expect("a whole event in the first half");
    body.truncate(cut);
    let (server, base) = start(
        flavour,
        vec![
            Canned::Stream(vec![body.clone()]),
            Canned::Stream(vec![body.clone()]),
            Canned::Stream(vec![body]),
        ],
    )
    .await;
    let llm = provider(flavour, &(flavour.config)(&base));
    let err = llm.complete(&request(true)).await.expect_err("incomplete");
    assert!(matches!(err, LlmError::Incomplete { .. }), "{err:?}");
    assert_eq!(server.hits(), 3, "the first try and two retries");
}

/// Neither the error nor any of its causes shows `key`, in Display or Debug.
fn assert_no_secret(err: &LlmError, key: &str) {
    let mut texts = vec![err.to_string(), format!("{err:?}")];
    let mut cause = err.source();
    while let Some(c) = cause {
        texts.push(c.to_string());
        texts.push(format!("{c:?}"));
        cause = c.source();
    }
    for text in texts {
        assert!(!text.contains(key), "the key leaked: {text}");
    }
}

// ---------------------------------------------------------------------------
// The tests

macro_rules! scenarios {
    ($flavour:ident, $plain:ident, $stream:ident, $limited:ident, $five_hundred:ident, $client:ident, $slow:ident, $malformed:ident) => {
        #[tokio::test]
        async fn $plain() {
            plain_reply(&$flavour).await;
        }
        #[tokio::test]
        async fn $stream() {
            streamed_reply(&$flavour).await;
        }
        #[tokio::test]
        async fn $limited() {
            rate_limited_then_ok(&$flavour).await;
        }
        #[tokio::test]
        async fn $five_hundred() {
            server_error_then_ok(&$flavour).await;
        }
        #[tokio::test]
        async fn $client() {
            client_errors_are_surfaced_not_retried(&$flavour).await;
        }
        #[tokio::test]
        async fn $slow() {
            too_slow_is_a_timeout(&$flavour).await;
        }
        #[tokio::test]
        async fn $malformed() {
            malformed_replies(&$flavour).await;
        }
    };
}

scenarios!(
    OPENAI,
    local_openai_wire_server_plain_reply,
    local_openai_wire_server_streamed_reply_in_awkward_chunks,
    local_openai_wire_server_429_with_retry_after_then_success,
    local_openai_wire_server_500_then_success,
    local_openai_wire_server_401_and_400_surfaced_without_retry,
    local_openai_wire_server_slower_than_the_timeout,
    local_openai_wire_server_malformed_replies
);

scenarios!(
    ANTHROPIC,
    local_anthropic_wire_server_plain_reply,
    local_anthropic_wire_server_streamed_reply_in_awkward_chunks,
    local_anthropic_wire_server_429_with_retry_after_then_success,
    local_anthropic_wire_server_500_then_success,
    local_anthropic_wire_server_401_and_400_surfaced_without_retry,
    local_anthropic_wire_server_slower_than_the_timeout,
    local_anthropic_wire_server_malformed_replies
);

scenarios!(
    VERTEX,
    local_vertex_wire_server_plain_reply,
    local_vertex_wire_server_streamed_reply_in_awkward_chunks,
    local_vertex_wire_server_429_with_retry_after_then_success,
    local_vertex_wire_server_500_then_success,
    local_vertex_wire_server_401_and_400_surfaced_without_retry,
    local_vertex_wire_server_slower_than_the_timeout,
    local_vertex_wire_server_malformed_replies
);

#[tokio::test]
async fn local_wire_servers_never_see_the_key_in_errors_or_debug() {
    for flavour in [&OPENAI, &ANTHROPIC, &VERTEX] {
        let mut errors = Vec::new();
        // The service quotes the key back in its message.
        let (_, base) = start(
            flavour,
            vec![
                (flavour.error)(403, &format!("key {KEY} is not allowed here")),
                (flavour.error)(500, "failing"),
                (flavour.error)(500, "still failing"),
                (flavour.error)(500, &format!("internal error for {KEY}")),
                Canned::Slow(Duration::from_secs(10)),
                (flavour.reply)("not json"),
                Canned::Json {
                    status: 200,
                    headers: vec![],
                    body: "garbage".into(),
                },
            ],
        )
        .await;
        let mut config = (flavour.config)(&base);
        config.timeout = Duration::from_millis(300);
        let llm = provider(flavour, &config);
        for _ in 0..5 {
            errors.push(llm.complete(&request(false)).await.expect_err("an error"));
        }
        // Nothing listening: a transport error.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let dead = format!("http://{}", closed.local_addr().expect("address"));
        drop(closed);
        let mut config = (flavour.config)(&dead);
        config.max_retries = 0;
        let err = provider(flavour, &config)
            .complete(&request(false))
            .await
            .expect_err("no server");
        assert!(matches!(err, LlmError::Transport { .. }), "{err:?}");
        assert!(err.is_retryable());
        errors.push(err);
        // A half configuration.
        let mut config = (flavour.config)(&base);
        config.model = String::new();
        errors.push(build_provider(&config).map(|_| ()).expect_err("no model"));

        let kinds: Vec<String> = errors
            .iter()
            .map(|e| {
                format!("{e:?}")
                    .split([' ', '{', '('])
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "Api",
                "Api",
                "Timeout",
                "BadReply",
                "Protocol",
                "Transport",
                "Config"
            ],
            "{:?}",
            flavour.kind
        );
        assert!(
            errors[0].to_string().contains("[redacted]"),
            "{}",
            errors[0]
        );
        for err in &errors {
            assert_no_secret(err, KEY);
        }

        // Nor does the provider's own Debug, nor its configuration's.
        let config = (flavour.config)(&base);
        let shown = match flavour.kind {
            ProviderKind::OpenAi => {
                format!("{:?}", OpenAiProvider::new(&config).expect("provider"))
            }
            ProviderKind::Anthropic => {
                format!("{:?}", AnthropicProvider::new(&config).expect("provider"))
            }
            ProviderKind::Vertex => {
                format!("{:?}", VertexProvider::new(&config).expect("provider"))
            }
        };
        assert!(!shown.contains(KEY), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
        assert!(!format!("{config:?}").contains(KEY));
    }
}

#[tokio::test]
async fn a_key_quoted_where_a_plain_error_body_is_cut_leaks_no_part_of_itself() {
    // A proxy's page, not the provider's JSON: the message quotes its first
    // 200 characters, and the key sits across that cut.
    for flavour in [&OPENAI, &ANTHROPIC, &VERTEX] {
        for before in [185, 190, 195, 199] {
            let body = format!(
                "{}{KEY} is not a key this gateway knows",
                "x".repeat(before)
            );
            let (server, base) = start(
                flavour,
                vec![Canned::Json {
                    status: 400,
                    headers: vec![],
                    body,
                }],
            )
            .await;
            let err = provider(flavour, &(flavour.config)(&base))
                .complete(&request(false))
                .await
                .expect_err("400");
            assert_eq!(server.hits(), 1);
            let LlmError::Api { message, .. } = &err else {
                panic!("not an API error: {err:?}");
            };
            assert!(message.starts_with(&"x".repeat(before)), "{message}");
            assert!(message.ends_with('…'), "cut: {message}");
            let shown = [err.to_string(), format!("{err:?}")];
            for part in KEY.as_bytes().windows(8) {
                let part = std::str::from_utf8(part).expect("ASCII");
                for text in &shown {
                    assert!(
                        !text.contains(part),
                        "{:?}, key at {before}: {part:?} leaked in {text}",
                        flavour.kind
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn local_wire_servers_refusals_are_declines_and_cut_off_replies_bad() {
    for flavour in [&OPENAI, &ANTHROPIC, &VERTEX] {
        let half = &PLAN_REPLY[..PLAN_REPLY.len() / 2];
        let (server, base) =
            start(flavour, vec![(flavour.refusal)(), (flavour.cut_off)(half)]).await;
        let llm = provider(flavour, &(flavour.config)(&base));
        match llm.complete(&request(false)).await {
            Ok(Generated::Decline(reason)) => assert!(!reason.is_empty()),
            other => panic!("{:?}: {other:?}", flavour.kind),
        }
        match llm.complete(&request(false)).await {
            Err(LlmError::BadReply {
                reason, excerpt, ..
            }) => {
                assert!(reason.contains("cut off"), "{reason}");
                assert!(excerpt.starts_with("{\"plan\""), "{excerpt}");
            }
            other => panic!("{:?}: {other:?}", flavour.kind),
        }
        assert_eq!(server.hits(), 2, "neither is retried");
    }
}

#[tokio::test]
async fn local_anthropic_wire_server_error_event_mid_stream_is_retried_by_its_type() {
    let overloaded = sse(&[
        (
            Some("message_start"),
            json!({"type": "message_start", "message": {"id": "msg_04", "type": "message",
                "role": "assistant", "content": [], "model": "claude-sonnet-4-5"}})
            .to_string(),
        ),
        (
            Some("error"),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                .to_string(),
        ),
    ]);
    let invalid = sse(&[(
        Some("error"),
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long"}})
            .to_string(),
    )]);
    let good = (ANTHROPIC.stream_body)(&reply_pieces());
    let (server, base) = start(
        &ANTHROPIC,
        vec![
            Canned::Stream(vec![overloaded]),
            Canned::Stream(vec![good]),
            Canned::Stream(vec![invalid]),
        ],
    )
    .await;
    let llm = provider(&ANTHROPIC, &(ANTHROPIC.config)(&base));
    let generated = llm
        .complete(&request(true))
        .await
        .expect("a reply after the overload");
    assert_eq!(generated, Generated::Plan(expected_plan()));
    assert_eq!(server.hits(), 2, "overloaded_error (529) is retried");
    let err = llm
        .complete(&request(true))
        .await
        .expect_err("invalid request");
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("prompt is too long"), "{err}");
    assert_eq!(server.hits(), 3, "invalid_request_error is not retried");
}

#[tokio::test]
async fn an_error_mid_stream_whose_type_echoes_the_key_leaks_no_part_of_it() {
    // The key where each service puts the error's type; the message is plain,
    // so only the type can leak it.
    let kind = format!("invalid_api_key:{KEY}");
    for flavour in [&OPENAI, &ANTHROPIC, &VERTEX] {
        let error = match flavour.kind {
            ProviderKind::OpenAi => (
                None,
                json!({"error": {"message": "bad key", "type": kind, "param": null, "code": 401}}),
            ),
            ProviderKind::Anthropic => (
                Some("error"),
                json!({"type": "error", "error": {"type": kind, "message": "bad key"}}),
            ),
            ProviderKind::Vertex => (
                None,
                json!({"error": {"code": 401, "message": "bad key", "status": kind}}),
            ),
        };
        // A first piece of the reply, then the error: mid-stream, after the 200.
        let mut body = (flavour.stream_body)(&reply_pieces()[..1]);
        // The end of its first event (LF LF, or CRLF CRLF for Vertex).
        let end = body
            .windows(2)
            .position(|w| w == b"\n\n")
            .map(|p| p + 2)
            .into_iter()
            .chain(
                body.windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|p| p + 4),
            )
            .min()
            .expect("a first event");
        body.truncate(end);
        body.extend(sse(&[(error.0, error.1.to_string())]));
        let (server, base) = start(flavour, vec![Canned::Stream(vec![body])]).await;
        let mut config = (flavour.config)(&base);
        config.max_retries = 0;
        let err = provider(flavour, &config)
            .complete(&request(true))
            .await
            .expect_err("an error event");
        assert_eq!(server.hits(), 1);
        // No assertion here prints the error: it may hold the key.
        let LlmError::Api { kind, .. } = &err else {
            panic!("{:?}: not an API error", flavour.kind);
        };
        assert!(
            kind.as_deref().is_some_and(|k| k.contains("[redacted]")),
            "{:?}: the type is not redacted in place",
            flavour.kind
        );
        let shown = [err.to_string(), format!("{err:?}")];
        for (at, part) in KEY.as_bytes().windows(8).enumerate() {
            let part = std::str::from_utf8(part).expect("ASCII");
            assert!(
                shown.iter().all(|text| !text.contains(part)),
                "{:?}: the key's characters from {at} leaked",
                flavour.kind
            );
        }
    }
}

#[tokio::test]
async fn local_wire_servers_replies_are_read_only_up_to_the_bound() {
    for flavour in [&OPENAI, &ANTHROPIC, &VERTEX] {
        let padded = format!("{PLAN_REPLY}{}", " ".repeat(4096));
        let pieces: Vec<String> = padded
            .as_bytes()
            .chunks(512)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        let (server, base) = start(
            flavour,
            vec![
                (flavour.reply)(&padded),
                Canned::Stream(vec![(flavour.stream_body)(&pieces)]),
                (flavour.reply)(PLAN_REPLY),
            ],
        )
        .await;
        let mut config = (flavour.config)(&base);
        config.max_reply_bytes = 2048;
        let llm = provider(flavour, &config);
        for stream in [false, true] {
            let err = llm.complete(&request(stream)).await.expect_err("too large");
            assert!(
                matches!(err, LlmError::ReplyTooLarge { limit: 2048, .. }),
                "{err:?}"
            );
        }
        assert_eq!(server.hits(), 2, "too large is not retried");
        // Within the bound, the same provider answers.
        assert_eq!(
            llm.complete(&request(false)).await.expect("a reply"),
            Generated::Plan(expected_plan())
        );
    }
}

#[tokio::test]
async fn local_wire_servers_describe_provider_and_model() {
    for (flavour, expected) in [
        (&OPENAI, "openai:gpt-4o-mini"),
        (&ANTHROPIC, "anthropic:claude-sonnet-4-5"),
        (&VERTEX, "vertex:gemini-2.0-flash"),
    ] {
        let llm = provider(flavour, &(flavour.config)("http://127.0.0.1:9"));
        assert_eq!(llm.describe(), expected);
    }
}

#[tokio::test]
async fn local_wire_servers_see_a_decline_and_sql() {
    for flavour in [&OPENAI, &ANTHROPIC, &VERTEX] {
        let (_, base) = start(
            flavour,
            vec![
                (flavour.reply)("```json\n{\"decline\": \"Not about the books.\"}\n```"),
                (flavour.reply)(
                    r#"{"plan": null, "sql": "SELECT invoice_number FROM fct_invoices LIMIT 5", "decline": null}"#,
                ),
            ],
        )
        .await;
        let llm = provider(flavour, &(flavour.config)(&base));
        assert_eq!(
            llm.complete(&request(false)).await.expect("decline"),
            Generated::Decline("Not about the books.".into())
        );
        assert_eq!(
            llm.complete(&request(false)).await.expect("sql"),
            Generated::Sql("SELECT invoice_number FROM fct_invoices LIMIT 5".into())
        );
    }
}
