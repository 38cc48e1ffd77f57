//! OpenAI-compatible endpoints: chat completions, completions, models.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::Stream;
use hearth_sdk::ChatMessage;
use serde::Deserialize;
use serde_json::{json, Value};

use super::answer::{self, generation, Piece, Started};
use super::body::JsonBody;
use super::guard::QueueLimiter;
use super::logprobs;
use super::metrics::Metrics;
use super::params::CommonParams;
use super::tool_stream::AnswerEvent;
use super::tools::{ToolAnswer, ToolCall, ToolUse, Turn};
use super::ApiError;
use crate::service::{Completion, Emitted, Generation, Hearth};

/// A message's content: a string, or a list of parts of which the text parts count.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: String,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: Option<Content>,
    /// An assistant's calls: `{id, type: "function", function: {name, arguments}}`,
    /// the arguments a JSON string.
    #[serde(default)]
    pub tool_calls: Vec<Value>,
    /// A tool message's call.
    pub tool_call_id: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    #[serde(flatten)]
    pub params: CommonParams,
}

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub prompt: String,
    #[serde(flatten)]
    pub params: CommonParams,
}

const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

fn message_turn(message: Message) -> Result<Turn, ApiError> {
    if !ROLES.contains(&message.role.as_str()) {
        return Err(ApiError::bad_request(format!("unknown message role `{}`", message.role)));
    }
    let content = match message.content {
        None => String::new(),
        Some(Content::Text(text)) => text,
        Some(Content::Parts(parts)) => {
            if let Some(part) = parts.iter().find(|part| part.kind != "text") {
                return Err(ApiError::bad_request(format!(
                    "content parts of type `{}` are not supported",
                    part.kind
                )));
            }
            parts.into_iter().map(|part| part.text).collect::<Vec<_>>().join("\n")
        }
    };
    if message.role == "tool" {
        return Ok(Turn::Result { id: message.tool_call_id, name: message.name, content });
    }
    if message.role == "assistant" && !message.tool_calls.is_empty() {
        return message.tool_calls.iter().map(called).collect::<Result<_, _>>().map(Turn::Calls);
    }
    // Chat templates know "system", not OpenAI's newer "developer".
    let role = if message.role == "developer" { "system".to_string() } else { message.role };
    Ok(Turn::Message(ChatMessage { role: role.into(), content: content.into() }))
}

/// One of an assistant message's `tool_calls`, as `(id, name, arguments)`.
fn called(call: &Value) -> Result<(String, String, Value), ApiError> {
    let function = &call["function"];
    let name = function["name"].as_str().ok_or_else(|| {
        ApiError::bad_request("`messages[].tool_calls[].function.name` is required")
    })?;
    // The arguments are JSON in a string; one that does not parse goes back as written.
    let arguments = match &function["arguments"] {
        Value::String(text) => serde_json::from_str(text).unwrap_or_else(|_| text.clone().into()),
        other => other.clone(),
    };
    Ok((call["id"].as_str().unwrap_or_default().to_string(), name.to_string(), arguments))
}

/// An answer's calls in OpenAI's shape.
fn tool_calls(calls: &[ToolCall]) -> Value {
    calls
        .iter()
        .map(|call| {
            json!({ "id": call.id, "type": "function", "function": {
                "name": call.name, "arguments": call.arguments.to_string() } })
        })
        .collect()
}

/// The choice of a whole answer read for tool calls.
fn tool_choice(answer: &ToolAnswer, completion: &Completion) -> Value {
    let (message, finish_reason) = match answer {
        ToolAnswer::Calls(calls) => (
            json!({ "role": "assistant", "content": null, "tool_calls": tool_calls(calls) }),
            "tool_calls",
        ),
        ToolAnswer::Text(text) => {
            (json!({ "role": "assistant", "content": text }), finish_reason(completion))
        }
    };
    json!({ "index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason })
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0)
}

fn usage(completion: &Completion) -> Value {
    json!({
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": u64::from(completion.prompt_tokens) + u64::from(completion.completion_tokens),
    })
}

/// The two response shapes, chat and plain completion.
#[derive(Clone, Copy)]
enum Shape {
    Chat,
    Text,
}

impl Shape {
    fn id_prefix(self) -> &'static str {
        match self {
            Shape::Chat => "chatcmpl",
            Shape::Text => "cmpl",
        }
    }

    fn object(self, streamed: bool) -> &'static str {
        match (self, streamed) {
            (Shape::Chat, false) => "chat.completion",
            (Shape::Chat, true) => "chat.completion.chunk",
            (Shape::Text, _) => "text_completion",
        }
    }

    fn choice(self, text: Option<&str>, finish_reason: Option<&str>, streamed: bool) -> Value {
        match (self, streamed) {
            (Shape::Chat, false) => json!({
                "index": 0,
                "message": { "role": "assistant", "content": text.unwrap_or_default() },
                "logprobs": null,
                "finish_reason": finish_reason,
            }),
            (Shape::Chat, true) => {
                let delta = match text {
                    Some(text) => json!({ "content": text }),
                    None if finish_reason.is_none() => {
                        json!({ "role": "assistant", "content": "" })
                    }
                    None => json!({}),
                };
                json!({ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason })
            }
            (Shape::Text, _) => json!({
                "index": 0,
                "text": text.unwrap_or_default(),
                "logprobs": null,
                "finish_reason": finish_reason,
            }),
        }
    }

    /// `choice` with its tokens' log-probabilities, in this shape's form; `offset`
    /// counts the answer's characters before them.
    fn choice_with_logprobs(
        self,
        piece: &Emitted,
        finish_reason: Option<&str>,
        streamed: bool,
        offset: &mut usize,
    ) -> Value {
        let mut choice = self.choice(Some(&piece.text), finish_reason, streamed);
        if !piece.logprobs.is_empty() {
            choice["logprobs"] = match self {
                Shape::Chat => logprobs::chat(&piece.logprobs),
                Shape::Text => logprobs::text_completion(&piece.logprobs, offset),
            };
        }
        choice
    }
}

struct Envelope {
    id: String,
    created: u64,
    model: String,
    shape: Shape,
}

impl Envelope {
    fn new(shape: Shape, model: &str) -> Self {
        Self {
            id: format!("{}-{}", shape.id_prefix(), uuid::Uuid::new_v4().simple()),
            created: unix_seconds(),
            model: model.to_string(),
            shape,
        }
    }

    fn body(&self, streamed: bool, choices: Vec<Value>, usage: Option<Value>) -> Value {
        let mut body = json!({
            "id": self.id,
            "object": self.shape.object(streamed),
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let Some(usage) = usage {
            body["usage"] = usage;
        }
        body
    }
}

/// OpenAI's finish reasons; a cancelled stream has no reader left to tell.
fn finish_reason(completion: &Completion) -> &'static str {
    match completion.finish_reason {
        "length" => "length",
        _ => "stop",
    }
}

async fn respond(
    hearth: Arc<Hearth>,
    services: (QueueLimiter, Arc<Metrics>),
    shape: Shape,
    params: &CommonParams,
    (generation, tools): (Generation, Option<ToolUse>),
) -> Result<Response, ApiError> {
    let include_usage = params.stream_options.as_ref().is_some_and(|options| options.include_usage);
    let started = answer::start(&hearth, services, params, generation).await?;
    let envelope = Envelope::new(shape, started.model_id());
    if params.stream {
        return Ok(Sse::new(stream(envelope, started, include_usage, tools)).into_response());
    }
    let (answer, completion) = started.complete().await?;
    let choice = match &tools {
        Some(tools) => tool_choice(&tools.read(&answer.text), &completion),
        None => {
            shape.choice_with_logprobs(&answer, Some(finish_reason(&completion)), false, &mut 0)
        }
    };
    let mut body = envelope.body(false, vec![choice], Some(usage(&completion)));
    body["hearth"] = json!({ "backend": completion.backend, "tier": completion.tier, "timings": {
        "prompt_ms": completion.prompt_ms, "decode_ms": completion.decode_ms,
        "time_to_first_token_ms": completion.time_to_first_token_ms, "total_ms": completion.total_ms,
    }});
    Ok(Json(body).into_response())
}

/// The SSE stream of one generation, in OpenAI's chunks. An answer that may call tools
/// streams as it is read: a reply's words as content, each call's name and then its
/// arguments as `tool_calls` deltas.
fn stream(
    envelope: Envelope,
    started: Started,
    include_usage: bool,
    tools: Option<ToolUse>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let shape = envelope.shape;
    let pieces = started.pieces();
    let mut reader = tools.as_ref().map(ToolUse::reader);
    async_stream::stream! {
        let chunk = |choice: Value| Ok(Event::default().data(envelope.body(true, vec![choice], None).to_string()));
        if matches!(shape, Shape::Chat) {
            yield chunk(shape.choice(None, None, true));
        }
        let mut offset = 0;
        for await piece in pieces {
            match piece {
                Piece::Text(piece) => match reader.as_mut() {
                    Some(reader) => {
                        for delta in reader.push(&piece.text).into_iter().filter_map(answer_delta) {
                            yield chunk(delta_choice(delta, None));
                        }
                    }
                    None => yield chunk(shape.choice_with_logprobs(&piece, None, true, &mut offset)),
                },
                Piece::Finished(completion) => {
                    let mut finish = finish_reason(&completion);
                    if let Some(reader) = reader.take() {
                        let (events, answer) = reader.finish();
                        for delta in events.into_iter().filter_map(answer_delta) {
                            yield chunk(delta_choice(delta, None));
                        }
                        if matches!(answer, ToolAnswer::Calls(_)) && finish != "length" {
                            finish = "tool_calls";
                        }
                    }
                    yield chunk(shape.choice(None, Some(finish), true));
                    if include_usage {
                        yield Ok(Event::default().data(envelope.body(true, vec![], Some(usage(&completion))).to_string()));
                    }
                }
                Piece::Failed(error) => {
                    yield Ok(Event::default().data(json!({ "error": { "message": error.message, "type": error.kind } }).to_string()));
                }
            }
        }
        yield Ok(Event::default().data("[DONE]"));
    }
}

/// A streamed chat choice carrying `delta`.
fn delta_choice(delta: Value, finish_reason: Option<&str>) -> Value {
    json!({ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason })
}

/// What one event of a tool-using answer adds, as a chat delta; a call's end adds
/// nothing (its arguments are whole when their text is).
fn answer_delta(event: AnswerEvent) -> Option<Value> {
    Some(match event {
        AnswerEvent::Text(text) => json!({ "content": text }),
        AnswerEvent::CallStarted { index, id, name } => json!({ "tool_calls": [{
            "index": index, "id": id, "type": "function", "function": { "name": name, "arguments": "" } }] }),
        AnswerEvent::Arguments { index, json } => {
            json!({ "tool_calls": [{ "index": index, "function": { "arguments": json } }] })
        }
        AnswerEvent::CallFinished { .. } => return None,
    })
}

/// `POST /v1/chat/completions`
pub async fn chat_completions(
    State(hearth): State<Arc<Hearth>>,
    Extension(queue): Extension<QueueLimiter>,
    Extension(metrics): Extension<Arc<Metrics>>,
    JsonBody(request): JsonBody<ChatRequest>,
) -> Result<Response, ApiError> {
    if request.messages.is_empty() {
        return Err(ApiError::bad_request("`messages` must not be empty"));
    }
    let turns = request.messages.into_iter().map(message_turn).collect::<Result<_, _>>()?;
    let generation = generation(&hearth, &request.params, turns, None)?;
    respond(hearth, (queue, metrics), Shape::Chat, &request.params, generation).await
}

/// `POST /v1/completions`
pub async fn completions(
    State(hearth): State<Arc<Hearth>>,
    Extension(queue): Extension<QueueLimiter>,
    Extension(metrics): Extension<Arc<Metrics>>,
    JsonBody(request): JsonBody<CompletionRequest>,
) -> Result<Response, ApiError> {
    if request.prompt.is_empty() {
        return Err(ApiError::bad_request("`prompt` must not be empty"));
    }
    let generation = generation(&hearth, &request.params, Vec::new(), Some(request.prompt))?;
    respond(hearth, (queue, metrics), Shape::Text, &request.params, generation).await
}

/// `GET /v1/models`: every catalog model, installed or not, with hearth's details.
pub async fn models(State(hearth): State<Arc<Hearth>>) -> Json<Value> {
    let catalog = hearth.catalog();
    let data: Vec<Value> = catalog
        .models
        .iter()
        .map(|model| {
            let installed = model
                .artifacts
                .iter()
                .any(|artifact| hearth.store().model_path(&model.id, &artifact.file).is_ok_and(|path| path.is_file()));
            json!({ "id": model.id, "object": "model", "created": 0, "owned_by": "hearth", "name": model.name, "installed": installed })
        })
        .collect();
    Json(json!({ "object": "list", "data": data }))
}
