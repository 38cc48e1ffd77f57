//! Ollama's API, where its clients (the `ollama` libraries, Open WebUI, editors' Copilot
//! integrations) use it: `/api/chat` and `/api/generate` here, the model listings,
//! `/api/pull` and `/api/version` in [`models`], `/api/embed` and `/api/embeddings` in
//! [`embed`].
//!
//! Requests become the same [`CommonParams`] the OpenAI endpoints read, so sampling,
//! limits, `keep_alive` and routing behave alike on both. Answers stream as NDJSON
//! unless `"stream": false`, as Ollama's do, with Ollama's counts and nanosecond
//! durations. Fields of Ollama's requests hearth does not implement (`tools`,
//! `format`, `images`, `think`, …) are refused with a 400 naming them. Errors on these
//! routes take Ollama's shape, `{"error": "…"}` (see [`super::error::Dialect`]).

pub mod embed;
pub mod models;
mod options;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::{Stream, StreamExt};
use hearth_sdk::ChatMessage;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::answer::{self, generation, Piece};
use super::body::JsonBody;
use super::clock::rfc3339;
use super::error::Dialect;
use super::guard::QueueLimiter;
use super::logprobs;
use super::metrics::Metrics;
use super::native::load_model;
use super::params::{refuse_fields, CommonParams, KeepAliveField, LogprobsField, WholeNumber};
use super::structured::ollama_format;
use super::tool_stream::AnswerEvent;
use super::tools::{ToolAnswer, Turn};
use super::ApiError;
use crate::lifecycle::KeepAlive;
use crate::service::{Completion, Emitted, Hearth};
use options::Options;

/// Fields of Ollama's `/api/chat` and `/api/generate` that hearth does not implement.
const NOT_YET_SUPPORTED: &[&str] = &[
    "images", "think", "template", "context", "suffix", "truncate", "shift", "width", "height",
    "steps",
];

/// Fields of an Ollama chat message that hearth does not implement.
const MESSAGE_NOT_YET_SUPPORTED: &[&str] = &["images", "thinking"];

/// One message of an Ollama chat.
#[derive(Debug, Deserialize)]
pub struct OllamaMessage {
    pub role: String,
    #[serde(default)]
    pub content: String,
    /// An assistant's calls: `{function: {name, arguments}}`, the arguments an object.
    #[serde(default)]
    pub tool_calls: Vec<Value>,
    /// A tool message's tool.
    pub tool_name: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The body of `POST /api/chat`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub messages: Vec<OllamaMessage>,
    pub tools: Option<Value>,
    pub stream: Option<bool>,
    pub options: Option<Options>,
    pub keep_alive: Option<KeepAliveField>,
    #[serde(flatten)]
    pub output: OutputFields,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The body of `POST /api/generate`.
#[derive(Debug, Deserialize)]
pub struct GenerateRequest {
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub prompt: String,
    pub system: Option<String>,
    /// The prompt as it is, without the model's chat template.
    #[serde(default)]
    pub raw: bool,
    pub stream: Option<bool>,
    pub options: Option<Options>,
    pub keep_alive: Option<KeepAliveField>,
    #[serde(flatten)]
    pub output: OutputFields,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// What a request asks of the output beyond its text: Ollama's `logprobs` flag and
/// `top_logprobs` count, as OpenAI's chat has them, and `format`, the shape it must take.
#[derive(Debug, Default, Deserialize)]
pub struct OutputFields {
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<WholeNumber>,
    pub format: Option<Value>,
}

/// The model a client named: Ollama's clients add the tag `:latest` to a name without
/// one, and hearth's catalog ids have no tags.
pub fn model_id(name: &str) -> &str {
    name.strip_suffix(":latest").unwrap_or(name)
}

/// The shared parameters of an Ollama request, its options checked and mapped.
fn common_params(
    hearth: &Hearth,
    model: &str,
    stream: Option<bool>,
    options: Option<Options>,
    (keep_alive, output): (Option<KeepAliveField>, OutputFields),
) -> Result<CommonParams, ApiError> {
    if model.is_empty() {
        return Err(ApiError::bad_request("`model` is required"));
    }
    let model = model_id(model);
    let (response_format, json_schema) =
        output.format.as_ref().map_or(Ok((None, None)), ollama_format)?;
    let mut params = CommonParams {
        model: Some(model.to_string()),
        stream: stream.unwrap_or(true),
        keep_alive,
        logprobs: output.logprobs.map(LogprobsField::Flag),
        top_logprobs: output.top_logprobs,
        response_format,
        json_schema,
        ..CommonParams::default()
    };
    if let Some(options) = options {
        options.apply(&mut params, hearth.context_window(model))?;
    }
    Ok(params)
}

fn chat_turn(message: OllamaMessage) -> Result<Turn, ApiError> {
    refuse_fields(&message.other, MESSAGE_NOT_YET_SUPPORTED, &[], "messages[].")?;
    match message.role.as_str() {
        "system" | "user" => {}
        "assistant" if message.tool_calls.is_empty() => {}
        "assistant" => {
            let calls = message.tool_calls.iter().map(|call| {
                let function = &call["function"];
                let name = function["name"].as_str().ok_or_else(|| {
                    ApiError::bad_request("`messages[].tool_calls[].function.name` is required")
                })?;
                let id = call["id"].as_str().unwrap_or_default().to_string();
                Ok((id, name.to_string(), function["arguments"].clone()))
            });
            return calls.collect::<Result<_, ApiError>>().map(Turn::Calls);
        }
        "tool" => {
            return Ok(Turn::Result { id: None, name: message.tool_name, content: message.content })
        }
        role => return Err(ApiError::bad_request(format!("unknown message role `{role}`"))),
    }
    Ok(Turn::Message(ChatMessage { role: message.role.into(), content: message.content.into() }))
}

/// The last line of an answer that may call tools, with its reply or its calls.
fn with_tools(mut line: Value, answer: ToolAnswer) -> Value {
    match answer {
        ToolAnswer::Text(text) => line["message"]["content"] = text.into(),
        ToolAnswer::Calls(calls) => {
            let calls: Vec<Value> = calls
                .into_iter()
                .map(|call| json!({ "function": { "name": call.name, "arguments": call.arguments } }))
                .collect();
            line["message"]["tool_calls"] = calls.into();
        }
    }
    line
}

/// Which of Ollama's two answer shapes: a chat's `message` or a generation's `response`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Chat,
    Generate,
}

/// What every line of an answer starts with: the model as the client named it, and
/// when the line was written.
fn head(model: &str) -> Map<String, Value> {
    let mut head = Map::new();
    head.insert("model".into(), model.into());
    head.insert("created_at".into(), rfc3339(SystemTime::now()).into());
    head
}

/// One line of an answer: `text` (with its tokens' log-probabilities, when asked for),
/// and when it is the last line, how it ended.
fn line(shape: Shape, model: &str, piece: &Emitted, end: Option<&Completion>) -> Value {
    let text = piece.text.as_str();
    let mut line = head(model);
    match shape {
        Shape::Chat => {
            line.insert("message".into(), json!({ "role": "assistant", "content": text }));
        }
        Shape::Generate => {
            line.insert("response".into(), text.into());
        }
    }
    if !piece.logprobs.is_empty() {
        line.insert("logprobs".into(), logprobs::chat(&piece.logprobs)["content"].take());
    }
    line.insert("done".into(), end.is_some().into());
    if let Some(completion) = end {
        line.extend(statistics(completion));
    }
    Value::Object(line)
}

/// Ollama's closing fields: why it stopped, token counts and durations in nanoseconds.
/// `load_duration` is everything before the prompt was read: routing and loading.
fn statistics(completion: &Completion) -> Map<String, Value> {
    let nanos = |ms: f64| (ms.max(0.0) * 1e6).round() as u64;
    let before_prompt = completion.total_ms - completion.prompt_ms - completion.decode_ms;
    let done_reason = match completion.finish_reason {
        "length" => "length",
        _ => "stop",
    };
    let statistics = json!({
        "done_reason": done_reason,
        "total_duration": nanos(completion.total_ms),
        "load_duration": nanos(before_prompt),
        "prompt_eval_count": completion.prompt_tokens,
        "prompt_eval_duration": nanos(completion.prompt_ms),
        "eval_count": completion.completion_tokens,
        "eval_duration": nanos(completion.decode_ms),
        "hearth": { "model": completion.model_id, "backend": completion.backend, "tier": completion.tier },
    });
    match statistics {
        Value::Object(fields) => fields,
        _ => Map::new(),
    }
}

/// A stream of JSON values as newline-delimited JSON, as Ollama streams.
fn ndjson(lines: impl Stream<Item = Value> + Send + 'static) -> Response {
    let body = lines.map(|line| Ok::<_, std::convert::Infallible>(format!("{line}\n")));
    ([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(body)).into_response()
}

/// An answer without generating: a request with nothing to say loads the model, or
/// with `keep_alive` 0 unloads it, as Ollama does.
async fn load_or_unload(
    hearth: &Hearth,
    shape: Shape,
    model: &str,
    params: &CommonParams,
) -> Result<Response, ApiError> {
    let done_reason = if params.keep_alive()? == KeepAlive::For(Duration::ZERO) {
        hearth
            .unload(model_id(model))
            .await
            .map_err(|error| ApiError::bad_request(error.to_string()))?;
        "unload"
    } else {
        load_model(hearth, params).await?;
        "load"
    };
    let mut answer = match line(shape, model, &Emitted::default(), None) {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    answer.insert("done".into(), true.into());
    answer.insert("done_reason".into(), done_reason.into());
    Ok(Json(Value::Object(answer)).into_response())
}

/// Run the generation and answer in `shape`, streamed or whole.
async fn respond(
    hearth: Arc<Hearth>,
    services: (QueueLimiter, Arc<Metrics>),
    shape: Shape,
    model: String,
    params: CommonParams,
    turns: Vec<Turn>,
    prompt: Option<String>,
) -> Result<Response, ApiError> {
    let (generation, tools) = generation(&hearth, &params, turns, prompt)?;
    let started = answer::start(&hearth, services, &params, generation).await?;
    if !params.stream {
        let (answer, completion) = started.complete().await?;
        let whole = match &tools {
            Some(tools) => with_tools(
                line(shape, &model, &Emitted::default(), Some(&completion)),
                tools.read(&answer.text),
            ),
            None => line(shape, &model, &answer, Some(&completion)),
        };
        return Ok(Json(whole).into_response());
    }
    let pieces = started.pieces();
    if let Some(tools) = tools {
        // A reply streams as it is read; calls go whole in the last line, as Ollama's do.
        let lines = async_stream::stream! {
            let mut reader = tools.reader();
            let reply = |event: AnswerEvent| match event {
                AnswerEvent::Text(text) => Some(Emitted { text, ..Emitted::default() }),
                _ => None,
            };
            for await piece in pieces {
                match piece {
                    Piece::Text(piece) => {
                        for text in reader.push(&piece.text).into_iter().filter_map(reply) {
                            yield line(shape, &model, &text, None);
                        }
                    }
                    Piece::Finished(completion) => {
                        let (rest, answer) = std::mem::take(&mut reader).finish();
                        for text in rest.into_iter().filter_map(reply) {
                            yield line(shape, &model, &text, None);
                        }
                        let last = line(shape, &model, &Emitted::default(), Some(&completion));
                        yield match answer {
                            ToolAnswer::Calls(_) => with_tools(last, answer),
                            ToolAnswer::Text(_) => last,
                        };
                    }
                    Piece::Failed(error) => yield error.body(Dialect::Ollama),
                }
            }
        };
        return Ok(ndjson(lines));
    }
    let lines = pieces.map(move |piece| match piece {
        Piece::Text(piece) => line(shape, &model, &piece, None),
        Piece::Finished(completion) => line(shape, &model, &Emitted::default(), Some(&completion)),
        Piece::Failed(error) => error.body(Dialect::Ollama),
    });
    Ok(ndjson(lines))
}

/// `POST /api/chat`
pub async fn chat(
    State(hearth): State<Arc<Hearth>>,
    Extension(queue): Extension<QueueLimiter>,
    Extension(metrics): Extension<Arc<Metrics>>,
    JsonBody(request): JsonBody<ChatRequest>,
) -> Result<Response, ApiError> {
    refuse_fields(&request.other, NOT_YET_SUPPORTED, &[], "")?;
    let mut params = common_params(
        &hearth,
        &request.model,
        request.stream,
        request.options,
        (request.keep_alive, request.output),
    )?;
    params.tools = request.tools;
    if request.messages.is_empty() {
        return load_or_unload(&hearth, Shape::Chat, &request.model, &params).await;
    }
    let turns = request.messages.into_iter().map(chat_turn).collect::<Result<_, _>>()?;
    respond(hearth, (queue, metrics), Shape::Chat, request.model, params, turns, None).await
}

/// `POST /api/generate`: the prompt through the model's chat template as the user's
/// turn (after `system`, when given), or as it is with `raw`.
pub async fn generate(
    State(hearth): State<Arc<Hearth>>,
    Extension(queue): Extension<QueueLimiter>,
    Extension(metrics): Extension<Arc<Metrics>>,
    JsonBody(request): JsonBody<GenerateRequest>,
) -> Result<Response, ApiError> {
    refuse_fields(&request.other, NOT_YET_SUPPORTED, &[], "")?;
    let params = common_params(
        &hearth,
        &request.model,
        request.stream,
        request.options,
        (request.keep_alive, request.output),
    )?;
    if request.prompt.is_empty() {
        return load_or_unload(&hearth, Shape::Generate, &request.model, &params).await;
    }
    let (turns, prompt) =
        match (request.raw, request.system) {
            (true, Some(_)) => return Err(ApiError::bad_request(
                "`system` goes through the chat template, which `raw` leaves out; send one of them",
            )),
            (true, None) => (Vec::new(), Some(request.prompt)),
            (false, system) => {
                let system = system
                    .filter(|system| !system.is_empty())
                    .map(|system| ChatMessage { role: "system".into(), content: system.into() });
                let user = ChatMessage { role: "user".into(), content: request.prompt.into() };
                (system.into_iter().chain([user]).map(Turn::Message).collect(), None)
            }
        };
    respond(hearth, (queue, metrics), Shape::Generate, request.model, params, turns, prompt).await
}
