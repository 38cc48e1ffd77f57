//! Anthropic's Messages API, `POST /v1/messages` and `POST /v1/messages/count_tokens`,
//! as coding agents and the `anthropic` libraries speak it: a system prompt (a string or text blocks), text content blocks,
//! the required `max_tokens`, `stop_sequences`, temperature/top-k/top-p, `usage`, and
//! streaming as Anthropic's SSE event sequence (`message_start`, `content_block_start`,
//! `content_block_delta`…, `content_block_stop`, `message_delta` with the stop reason
//! and usage, `message_stop`).
//!
//! Requests become the same [`CommonParams`] as OpenAI's and Ollama's; client tools,
//! `tool_use` and `tool_result` blocks become the same [`tools::ToolUse`] and [`Turn`]s (see
//! [`super::tools`]). Server tools, images, documents and extended thinking are refused
//! with a 400 naming the field or block type; errors take Anthropic's shape (see
//! [`super::error::Dialect`]).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::{Stream, StreamExt};
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
use super::tool_stream::{AnswerEvent, AnswerReader};
use super::tools::{ToolAnswer, Turn};
use super::ApiError;
use crate::service::{Completion, Hearth};

/// Request fields of Anthropic's that hearth does not implement yet.
const NOT_YET_SUPPORTED: &[&str] = &["thinking", "mcp_servers", "container", "context_management"];

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
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub stream: bool,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Anthropic's client tool (`{name, description, input_schema}`) as OpenAI's function,
/// the shape [`ToolUse`] reads.
fn as_function(tool: &Value) -> Result<Value, ApiError> {
    match tool["type"].as_str() {
        None | Some("custom") => Ok(json!({ "type": "function", "function": {
            "name": tool["name"], "description": tool["description"], "parameters": tool["input_schema"],
        } })),
        Some(kind) => Err(ApiError::bad_request(format!(
            "`tools[]` of type `{kind}` (a server tool) are not supported by hearth; send client tools"
        ))),
    }
}

/// Anthropic's `tool_choice` as OpenAI's, and whether calls may go in parallel.
fn as_openai_choice(choice: &Value) -> Result<(Value, bool), ApiError> {
    let parallel = choice["disable_parallel_tool_use"] != true;
    let choice = match choice["type"].as_str() {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => json!({ "type": "function", "function": { "name": choice["name"] } }),
        _ => {
            return Err(ApiError::bad_request("`tool_choice.type` must be auto, any, tool or none"))
        }
    };
    Ok((choice, parallel))
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
            max_tokens: Some(max_tokens),
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            stop: self.stop_sequences.clone().map(StopField::Many),
            stream: self.stream,
            ..self.tool_params()?
        })
    }

    /// The model and its tools, in OpenAI's shapes: all that the prompt is made of
    /// besides the messages.
    fn tool_params(&self) -> Result<CommonParams, ApiError> {
        let tools = self.tools.as_ref().map(|tools| tools.iter().map(as_function).collect());
        let (tool_choice, parallel) = match &self.tool_choice {
            Some(choice) => {
                as_openai_choice(choice).map(|(choice, parallel)| (Some(choice), parallel))?
            }
            None => (None, true),
        };
        Ok(CommonParams {
            model: Some(self.model.clone()),
            tools: tools.transpose()?.map(Value::Array),
            tool_choice,
            parallel_tool_calls: Some(parallel),
            ..CommonParams::default()
        })
    }

    /// The conversation as the model reads it, the system prompt first.
    fn messages(self) -> Result<Vec<Turn>, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::bad_request("`messages` must not be empty"));
        }
        let mut turns = Vec::new();
        if let Some(system) = self.system {
            let system = system.text(&TEXT_BLOCKS, "system")?;
            if !system.is_empty() {
                turns.push(Turn::Message(ChatMessage {
                    role: "system".into(),
                    content: system.into(),
                }));
            }
        }
        for message in self.messages {
            if !matches!(message.role.as_str(), "user" | "assistant") {
                return Err(ApiError::bad_request(format!(
                    "`messages[].role` must be `user` or `assistant`, got `{}`",
                    message.role
                )));
            }
            message_turns(message, &mut turns)?;
        }
        Ok(turns)
    }
}

/// One message's turns: its `tool_result` blocks (a user's) and its `tool_use` blocks
/// (an assistant's, which stand for the whole message), else its text.
fn message_turns(message: Message, turns: &mut Vec<Turn>) -> Result<(), ApiError> {
    let parts = match message.content {
        Content::Parts(parts) => parts,
        text @ Content::Text(_) => {
            let content = text.text(&TEXT_BLOCKS, "messages[].content")?;
            turns.push(Turn::Message(ChatMessage {
                role: message.role.into(),
                content: content.into(),
            }));
            return Ok(());
        }
    };
    let mut calls = Vec::new();
    let mut texts = Vec::new();
    for mut part in parts {
        match (part.kind.as_str(), message.role.as_str()) {
            ("tool_use", "assistant") => {
                let id = part.other["id"].as_str().unwrap_or_default().to_string();
                let name = part.other["name"].as_str().ok_or_else(|| {
                    ApiError::bad_request(
                        "`messages[].content[].name` is required in a tool_use block",
                    )
                })?;
                calls.push((id, name.to_string(), part.other["input"].take()));
            }
            ("tool_result", "user") => {
                let content = match part.other.remove("content") {
                    None | Some(Value::Null) => String::new(),
                    Some(content) => serde_json::from_value::<Content>(content)
                        .map_err(|error| {
                            ApiError::bad_request(format!("`tool_result.content`: {error}"))
                        })?
                        .text(&TEXT_BLOCKS, "tool_result.content")?,
                };
                let id = part.other["tool_use_id"].as_str().map(str::to_string);
                turns.push(Turn::Result { id, name: None, content });
            }
            _ => texts.push(part),
        }
    }
    if !calls.is_empty() {
        turns.push(Turn::Calls(calls));
    } else if !texts.is_empty() {
        let content = Content::Parts(texts).text(&TEXT_BLOCKS, "messages[].content")?;
        turns.push(Turn::Message(ChatMessage {
            role: message.role.into(),
            content: content.into(),
        }));
    }
    Ok(())
}

/// The content blocks of an answer that may call tools, and its stop reason.
fn tool_blocks(answer: ToolAnswer, completion: &Completion) -> (Vec<Value>, &'static str) {
    match answer {
        ToolAnswer::Text(text) => {
            (vec![json!({ "type": "text", "text": text })], stop_reason(completion))
        }
        ToolAnswer::Calls(calls) => {
            let blocks = calls
                .into_iter()
                .map(|call| json!({ "type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments }))
                .collect();
            (blocks, "tool_use")
        }
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

/// The content blocks of a streamed answer that may call tools, opened and closed as
/// the answer is read: a reply as one text block, each call as a `tool_use` block whose
/// input arrives in `input_json_delta`s.
#[derive(Default)]
struct ToolBlocks {
    opened: usize,
    /// The reply's block while it is open.
    text: Option<usize>,
    /// The block of each call, by the call's place in the answer, while it is open.
    calls: Vec<Option<usize>>,
}

impl ToolBlocks {
    /// The events that report `event`.
    fn events(&mut self, event: AnswerEvent) -> Vec<Value> {
        let mut events = Vec::new();
        match event {
            AnswerEvent::Text(text) => {
                let index = *self.text.get_or_insert_with(|| {
                    events.push(json!({ "type": "content_block_start", "index": self.opened,
                                        "content_block": { "type": "text", "text": "" } }));
                    self.opened += 1;
                    self.opened - 1
                });
                events.push(json!({ "type": "content_block_delta", "index": index,
                                    "delta": { "type": "text_delta", "text": text } }));
            }
            AnswerEvent::CallStarted { id, name, .. } => {
                events.push(json!({ "type": "content_block_start", "index": self.opened,
                    "content_block": { "type": "tool_use", "id": id, "name": name, "input": {} } }));
                self.calls.push(Some(self.opened));
                self.opened += 1;
            }
            AnswerEvent::Arguments { index, json } => {
                if let Some(block) = self.calls[index] {
                    events.push(json!({ "type": "content_block_delta", "index": block,
                                        "delta": { "type": "input_json_delta", "partial_json": json } }));
                }
            }
            AnswerEvent::CallFinished { index } => {
                if let Some(block) = self.calls[index].take() {
                    events.push(json!({ "type": "content_block_stop", "index": block }));
                }
            }
        }
        events
    }

    /// The events that close every block still open.
    fn close(&mut self) -> Vec<Value> {
        let mut open: Vec<usize> = self
            .text
            .take()
            .into_iter()
            .chain(self.calls.iter_mut().filter_map(Option::take))
            .collect();
        open.sort_unstable();
        open.into_iter()
            .map(|index| json!({ "type": "content_block_stop", "index": index }))
            .collect()
    }
}

/// The events of a streamed answer that may call tools, reported as it is read (see
/// [`ToolBlocks`]).
fn tool_events(
    id: String,
    model: String,
    mut reader: AnswerReader,
    pieces: impl Stream<Item = Piece> + Send + 'static,
) -> impl Stream<Item = Result<Event, Infallible>> {
    async_stream::stream! {
        yield Ok(event(json!({ "type": "message_start", "message": message(&id, &model) })));

        let mut blocks = ToolBlocks::default();
        for await piece in pieces {
            match piece {
                Piece::Text(piece) => {
                    for data in reader.push(&piece.text).into_iter().flat_map(|answer| blocks.events(answer)) {
                        yield Ok(event(data));
                    }
                }
                Piece::Finished(completion) => {
                    let (rest, answer) = std::mem::take(&mut reader).finish();
                    let mut closing: Vec<Value> = rest.into_iter().flat_map(|answer| blocks.events(answer)).collect();
                    closing.extend(blocks.close());
                    for data in closing {
                        yield Ok(event(data));
                    }
                    let stop_reason = match answer {
                        ToolAnswer::Calls(_) if completion.finish_reason != "length" => "tool_use",
                        _ => stop_reason(&completion),
                    };
                    yield Ok(event(json!({ "type": "message_delta",
                        "delta": { "stop_reason": stop_reason, "stop_sequence": null },
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
    let params = request.tool_params()?;
    let (generation, _) = generation(&hearth, &params, request.messages()?, None)?;
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
    let (generation, tools) = generation(&hearth, &params, request.messages()?, None)?;
    let started = answer::start(&hearth, (queue, metrics), &params, generation).await?;
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    if params.stream {
        let pieces = started.pieces().boxed();
        return Ok(match tools {
            Some(tools) => {
                Sse::new(tool_events(id, model, tools.reader(), pieces).boxed()).into_response()
            }
            None => Sse::new(events(id, model, pieces).boxed()).into_response(),
        });
    }
    let (generated, completion) = started.complete().await?;
    let (content, stop_reason) = match tools {
        Some(tools) => tool_blocks(tools.read(&generated.text), &completion),
        None => (vec![json!({ "type": "text", "text": generated.text })], stop_reason(&completion)),
    };
    let mut answer = message(&id, &model);
    answer.insert("content".into(), content.into());
    answer.insert("stop_reason".into(), stop_reason.into());
    answer.insert("usage".into(), usage(&completion));
    Ok(Json(Value::Object(answer)).into_response())
}

#[cfg(test)]
mod tests {
    use hearth_sdk::abi_stable::std_types::RVec;

    use super::super::tool_formats::ToolFormat;
    use super::super::tools;
    use super::*;

    /// The conversation as a model of the generic tool format reads it.
    fn generic(turns: Vec<Turn>) -> RVec<ChatMessage> {
        tools::chat(turns, None, ToolFormat::Generic).messages
    }

    fn request(value: Value) -> MessagesRequest {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_system_prompt_comes_first_and_text_blocks_are_joined() {
        let messages = generic(request(json!({
            "model": "m", "max_tokens": 5,
            "system": [{ "type": "text", "text": "Be brief.", "cache_control": { "type": "ephemeral" } }],
            "messages": [
                { "role": "user", "content": [{ "type": "text", "text": "a" }, { "type": "text", "text": "b" }] },
                { "role": "assistant", "content": "c" },
            ],
        }))
        .messages()
        .unwrap());
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
        let server_tool = json!({ "model": "m", "max_tokens": 1, "messages": [],
            "tools": [{ "type": "web_search_20250305", "name": "web_search" }] });
        assert!(refused(server_tool).contains("`tools[]`"));
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
