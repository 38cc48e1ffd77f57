//! Anthropic's Messages API, `POST /v1/messages` and `POST /v1/messages/count_tokens`,
//! as coding agents and the `anthropic` libraries speak it: a system prompt (a string or text blocks), text content blocks,
//! the required `max_tokens`, `stop_sequences`, temperature/top-k/top-p, `usage`, and
//! streaming as Anthropic's SSE event sequence (`message_start`, `content_block_start`,
//! `content_block_delta`…, `content_block_stop`, `message_delta` with the stop reason
//! and usage, `message_stop`).
//!
//! Requests become the same [`CommonParams`] as OpenAI's and Ollama's. Tools, images,
//! documents and extended thinking are refused with a 400 naming the field or block
//! type; errors take Anthropic's shape (see [`super::error::Dialect`]).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::{Stream, StreamExt};
use hearth_sdk::abi_stable::std_types::RVec;
use hearth_sdk::ChatMessage;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::answer::{self, generation, Piece};
use super::body::JsonBody;
use super::content::{Content, TextParts};
use super::error::Dialect;
use super::guard::QueueLimiter;
use super::metrics::Metrics;
use super::params::{refuse_fields, CommonParams, StopField, WholeNumber};
use super::ApiError;
use crate::service::{Completion, Hearth};

/// Request fields of Anthropic's that hearth does not implement yet.
const NOT_YET_SUPPORTED: &[&str] =
    &["tools", "tool_choice", "thinking", "mcp_servers", "container", "context_management"];

/// Request fields that change nothing about the answer.
const BOOKKEEPING: &[&str] = &["metadata", "service_tier"];

/// Text blocks, and their fields that change nothing about the answer (prompt caching).
const TEXT_BLOCKS: TextParts =
    TextParts { kinds: &["text"], unused: &["cache_control", "citations"] };

#[derive(Debug, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: Content,
}

/// The body of `POST /v1/messages`.
#[derive(Debug, Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub max_tokens: Option<WholeNumber>,
    pub system: Option<Content>,
    pub stop_sequences: Option<Vec<String>>,
    pub temperature: Option<f64>,
    pub top_k: Option<WholeNumber>,
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stream: bool,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl MessagesRequest {
    /// The shared parameters, checked as Anthropic checks them.
    fn params(&self) -> Result<CommonParams, ApiError> {
        refuse_fields(&self.other, NOT_YET_SUPPORTED, BOOKKEEPING, "")?;
        let Some(max_tokens) = self.max_tokens else {
            return Err(ApiError::bad_request("`max_tokens` is required"));
        };
        if let Some(temperature) = self.temperature {
            if !(0.0..=1.0).contains(&temperature) {
                return Err(ApiError::bad_request(format!(
                    "`temperature` must be between 0 and 1, got {temperature}"
                )));
            }
        }
        Ok(CommonParams {
            model: Some(self.model.clone()),
            max_tokens: Some(max_tokens),
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            stop: self.stop_sequences.clone().map(StopField::Many),
            stream: self.stream,
            ..CommonParams::default()
        })
    }

    /// The conversation as chat messages, the system prompt first.
    fn messages(self) -> Result<RVec<ChatMessage>, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::bad_request("`messages` must not be empty"));
        }
        let mut messages = RVec::new();
        if let Some(system) = self.system {
            let system = system.text(&TEXT_BLOCKS, "system")?;
            if !system.is_empty() {
                messages.push(ChatMessage { role: "system".into(), content: system.into() });
            }
        }
        for message in self.messages {
            if !matches!(message.role.as_str(), "user" | "assistant") {
                return Err(ApiError::bad_request(format!(
                    "`messages[].role` must be `user` or `assistant`, got `{}`",
                    message.role
                )));
            }
            let content = message.content.text(&TEXT_BLOCKS, "messages[].content")?;
            messages.push(ChatMessage { role: message.role.into(), content: content.into() });
        }
        Ok(messages)
    }
}

/// Anthropic's stop reason. A stop sequence and the model's own end of turn both end
/// as "stop" in hearth's backends, which do not say which it was: both are `end_turn`.
fn stop_reason(completion: &Completion) -> &'static str {
    match completion.finish_reason {
        "length" => "max_tokens",
        _ => "end_turn",
    }
}

fn usage(completion: &Completion) -> Value {
    json!({ "input_tokens": completion.prompt_tokens, "output_tokens": completion.completion_tokens })
}

/// The message without its content: what `message_start` announces and the whole
/// answer fills in.
fn message(id: &str, model: &str) -> Map<String, Value> {
    let message = json!({
        "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": null, "stop_sequence": null,
        "usage": { "input_tokens": 0, "output_tokens": 0 },
    });
    match message {
        Value::Object(fields) => fields,
        _ => Map::new(),
    }
}

/// One server-sent event of Anthropic's stream: its `event` name is its `type`.
fn event(data: Value) -> Event {
    let name = data["type"].as_str().unwrap_or("error").to_string();
    Event::default().event(name).data(data.to_string())
}

/// The events of one streamed answer. The prompt's token count is known only at the
/// end, so `message_start` says 0 and `message_delta` gives both counts.
fn events(
    id: String,
    model: String,
    pieces: impl Stream<Item = Piece> + Send + 'static,
) -> impl Stream<Item = Result<Event, Infallible>> {
    async_stream::stream! {
        yield Ok(event(json!({ "type": "message_start", "message": message(&id, &model) })));
        yield Ok(event(json!({ "type": "content_block_start", "index": 0,
                               "content_block": { "type": "text", "text": "" } })));
        for await piece in pieces {
            match piece {
                Piece::Text(piece) => {
                    yield Ok(event(json!({ "type": "content_block_delta", "index": 0,
                                           "delta": { "type": "text_delta", "text": piece.text } })));
                }
                Piece::Finished(completion) => {
                    yield Ok(event(json!({ "type": "content_block_stop", "index": 0 })));
                    yield Ok(event(json!({ "type": "message_delta",
                        "delta": { "stop_reason": stop_reason(&completion), "stop_sequence": null },
                        "usage": usage(&completion) })));
                    yield Ok(event(json!({ "type": "message_stop" })));
                }
                Piece::Failed(error) => yield Ok(event(error.body(Dialect::Anthropic))),
            }
        }
    }
}

/// `POST /v1/messages/count_tokens`: how many tokens the request's prompt is on the
/// model it names, the system prompt and the chat template included, as a generation
/// would read it (Anthropic's `{"input_tokens": N}`). `max_tokens` is not asked for.
pub async fn count_tokens(
    State(hearth): State<Arc<Hearth>>,
    JsonBody(request): JsonBody<MessagesRequest>,
) -> Result<Json<Value>, ApiError> {
    refuse_fields(&request.other, NOT_YET_SUPPORTED, BOOKKEEPING, "")?;
    let params = CommonParams { model: Some(request.model.clone()), ..CommonParams::default() };
    let (generation, _) = generation(&params, request.messages()?, None)?;
    let (_, tokens) = hearth.count_prompt_tokens(generation).await?;
    Ok(Json(json!({ "input_tokens": tokens })))
}

/// `POST /v1/messages`
pub async fn messages(
    State(hearth): State<Arc<Hearth>>,
    Extension(queue): Extension<QueueLimiter>,
    Extension(metrics): Extension<Arc<Metrics>>,
    JsonBody(request): JsonBody<MessagesRequest>,
) -> Result<Response, ApiError> {
    let params = request.params()?;
    let model = request.model.clone();
    let (generation, _) = generation(&params, request.messages()?, None)?;
    let started = answer::start(&hearth, (queue, metrics), &params, generation).await?;
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    if params.stream {
        return Ok(Sse::new(events(id, model, started.pieces().boxed())).into_response());
    }
    let (generated, completion) = started.complete().await?;
    let mut answer = message(&id, &model);
    answer.insert("content".into(), json!([{ "type": "text", "text": generated.text }]));
    answer.insert("stop_reason".into(), stop_reason(&completion).into());
    answer.insert("usage".into(), usage(&completion));
    Ok(Json(Value::Object(answer)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(value: Value) -> MessagesRequest {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_system_prompt_comes_first_and_text_blocks_are_joined() {
        let messages = request(json!({
            "model": "m", "max_tokens": 5,
            "system": [{ "type": "text", "text": "Be brief.", "cache_control": { "type": "ephemeral" } }],
            "messages": [
                { "role": "user", "content": [{ "type": "text", "text": "a" }, { "type": "text", "text": "b" }] },
                { "role": "assistant", "content": "c" },
            ],
        }))
        .messages()
        .unwrap();
        let turns: Vec<(&str, &str)> = messages
            .iter()
            .map(|message| (message.role.as_str(), message.content.as_str()))
            .collect();
        assert_eq!(turns, [("system", "Be brief."), ("user", "a\nb"), ("assistant", "c")]);
    }

    #[test]
    fn sampling_fields_and_stop_sequences_become_the_shared_parameters() {
        let params = request(json!({
            "model": "m", "max_tokens": 5, "messages": [], "temperature": 0.5, "top_k": 3,
            "top_p": 0.9, "stop_sequences": ["END"], "metadata": { "user_id": "u" },
        }))
        .params()
        .unwrap();
        assert_eq!(params.max_tokens().unwrap(), 5);
        assert_eq!(params.sampling().unwrap().top_k, 3);
        assert_eq!(params.stop().unwrap()[0].as_str(), "END");
    }

    #[test]
    fn what_anthropic_requires_or_hearth_lacks_is_refused_by_name() {
        let refused = |value: Value| request(value).params().unwrap_err().message;
        assert!(refused(json!({ "model": "m", "messages": [] })).contains("`max_tokens`"));
        assert!(refused(json!({ "model": "m", "max_tokens": 1, "messages": [], "tools": [{}] }))
            .contains("`tools`"));
        assert!(refused(
            json!({ "model": "m", "max_tokens": 1, "messages": [], "temperature": 1.2 })
        )
        .contains("`temperature`"));
        let image = request(json!({ "model": "m", "max_tokens": 1,
            "messages": [{ "role": "user", "content": [{ "type": "image", "source": {} }] }] }));
        assert!(image.messages().unwrap_err().message.contains("`image`"));
        let empty = request(json!({ "model": "m", "max_tokens": 1, "messages": [] }));
        assert!(empty.messages().unwrap_err().message.contains("`messages`"));
    }
}
