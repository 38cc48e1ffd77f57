//! OpenAI's Responses API, `POST /v1/responses`, stateless: `input` as a text or a list
//! of message items (`input_text` and `output_text` parts), `instructions` as the system
//! prompt, `max_output_tokens`, `temperature`, `top_p`, and streaming as OpenAI's event
//! sequence (`response.created` … `response.output_text.delta` … `response.completed`),
//! each event numbered.
//!
//! Nothing is stored: a request asking to store its response (`store: true`) or to
//! continue a stored one (`previous_response_id`, `conversation`) is refused, as are
//! tools, structured output and reasoning, each by name.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

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
use super::params::{refuse_fields, CommonParams, WholeNumber};
use super::structured::{ResponseFormat, TextFormat};
use super::ApiError;
use crate::service::{Completion, Hearth};

/// Request fields hearth does not implement yet.
const NOT_YET_SUPPORTED: &[&str] = &[
    "previous_response_id",
    "conversation",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning",
    "include",
    "background",
    "prompt",
    "truncation",
    "top_logprobs",
    "max_tool_calls",
    "stream_options",
];

/// Request fields that label the request for the caller's bookkeeping.
const BOOKKEEPING: &[&str] =
    &["metadata", "user", "service_tier", "safety_identifier", "prompt_cache_key"];

/// `input`: a text (one user message) or a list of message items.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Items(Vec<Item>),
}

/// One input item; only messages are supported.
#[derive(Debug, Deserialize)]
pub struct Item {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub role: Option<String>,
    pub content: Option<Content>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The text parts of input messages, and their fields that change nothing here.
const TEXT_PARTS: TextParts =
    TextParts { kinds: &["input_text", "output_text"], unused: &["annotations", "logprobs"] };

/// `text`: how the answer is written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextOptions {
    pub format: Option<TextFormat>,
}

/// The body of `POST /v1/responses`.
#[derive(Debug, Deserialize)]
pub struct ResponsesRequest {
    pub model: Option<String>,
    pub input: Input,
    pub instructions: Option<String>,
    pub max_output_tokens: Option<WholeNumber>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub store: Option<bool>,
    pub text: Option<TextOptions>,
    #[serde(default)]
    pub stream: bool,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl ResponsesRequest {
    /// The shared parameters, with what hearth cannot do refused by name.
    fn params(&self) -> Result<CommonParams, ApiError> {
        refuse_fields(&self.other, NOT_YET_SUPPORTED, BOOKKEEPING, "")?;
        if self.store == Some(true) {
            return Err(ApiError::bad_request(
                "`store`: hearth's /v1/responses keeps nothing; send `store: false` or leave it out",
            ));
        }
        let format = self.text.as_ref().and_then(|text| text.format.clone());
        Ok(CommonParams {
            response_format: format.map(ResponseFormat::from),
            model: self.model.clone(),
            max_tokens: self.max_output_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            stream: self.stream,
            ..CommonParams::default()
        })
    }

    /// The conversation as chat messages, the instructions first.
    fn messages(self) -> Result<RVec<ChatMessage>, ApiError> {
        let mut messages = RVec::new();
        if let Some(instructions) = self.instructions.filter(|text| !text.is_empty()) {
            messages.push(ChatMessage { role: "system".into(), content: instructions.into() });
        }
        let items = match self.input {
            Input::Text(text) => {
                messages.push(ChatMessage { role: "user".into(), content: text.into() });
                return Ok(messages);
            }
            Input::Items(items) => items,
        };
        if items.is_empty() {
            return Err(ApiError::bad_request("`input` must not be empty"));
        }
        for item in items {
            messages.push(message_of(item)?);
        }
        Ok(messages)
    }
}

/// A message item as a chat message; other item types are refused by name.
fn message_of(item: Item) -> Result<ChatMessage, ApiError> {
    let kind = item.kind.as_deref().unwrap_or("message");
    if kind != "message" {
        return Err(ApiError::bad_request(format!(
            "`input[]` items of type `{kind}` are not supported by hearth yet; send messages"
        )));
    }
    refuse_fields(&item.other, &[], &["id", "status"], "input[].")?;
    let role = match item.role.as_deref() {
        Some("developer" | "system") => "system",
        Some(role @ ("user" | "assistant")) => role,
        other => {
            return Err(ApiError::bad_request(format!(
                "`input[].role` must be `user`, `assistant`, `system` or `developer`, got {other:?}"
            )))
        }
    };
    let content = item
        .content
        .ok_or_else(|| ApiError::bad_request("`input[].content` is required"))?
        .text(&TEXT_PARTS, "input[].content")?;
    Ok(ChatMessage { role: role.into(), content: content.into() })
}

/// What every state of one response repeats.
struct Header {
    id: String,
    model: String,
    created_at: u64,
    /// `text` as the request set it.
    text: Value,
}

/// The response object: `status` and `output` as they stand, `usage` once known.
fn response(header: &Header, end: Option<(&Completion, Value)>) -> Value {
    let Header { id, model, created_at, text } = header;
    let mut response = json!({
        "id": id, "object": "response", "created_at": created_at, "model": model,
        "status": "in_progress", "error": null, "incomplete_details": null,
        "output": [], "usage": null, "store": false, "tools": [], "tool_choice": "none",
        "parallel_tool_calls": false, "text": text,
    });
    if let Some((completion, message)) = end {
        let incomplete = completion.finish_reason == "length";
        response["status"] = if incomplete { "incomplete" } else { "completed" }.into();
        if incomplete {
            response["incomplete_details"] = json!({ "reason": "max_output_tokens" });
        }
        response["output"] = json!([message]);
        response["usage"] = json!({
            "input_tokens": completion.prompt_tokens,
            "output_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens,
            "input_tokens_details": { "cached_tokens": 0 },
            "output_tokens_details": { "reasoning_tokens": 0 },
        });
    }
    response
}

fn output_text(text: &str) -> Value {
    json!({ "type": "output_text", "text": text, "annotations": [], "logprobs": [] })
}

fn message_item(id: &str, status: &str, content: Value) -> Value {
    json!({ "type": "message", "id": id, "status": status, "role": "assistant", "content": content })
}

/// The events of one streamed response, numbered from 0.
fn events(
    header: Header,
    item_id: String,
    pieces: impl Stream<Item = Piece> + Send + 'static,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let mut sequence = 0u64;
    let mut event = move |mut data: Value| {
        data["sequence_number"] = sequence.into();
        sequence += 1;
        let name = data["type"].as_str().unwrap_or("error").to_string();
        Ok(Event::default().event(name).data(data.to_string()))
    };
    async_stream::stream! {
        let started = response(&header, None);
        yield event(json!({ "type": "response.created", "response": started }));
        yield event(json!({ "type": "response.in_progress", "response": started }));
        let at = |mut fields: Value| {
            fields["item_id"] = item_id.clone().into();
            fields["output_index"] = 0.into();
            fields["content_index"] = 0.into();
            fields
        };
        yield event(json!({ "type": "response.output_item.added", "output_index": 0,
                            "item": message_item(&item_id, "in_progress", json!([])) }));
        yield event(at(json!({ "type": "response.content_part.added", "part": output_text("") })));
        let mut text = String::new();
        for await piece in pieces {
            match piece {
                Piece::Text(piece) => {
                    text.push_str(&piece.text);
                    yield event(at(json!({ "type": "response.output_text.delta",
                                           "delta": piece.text, "logprobs": [] })));
                }
                Piece::Finished(completion) => {
                    yield event(at(json!({ "type": "response.output_text.done", "text": text, "logprobs": [] })));
                    yield event(at(json!({ "type": "response.content_part.done", "part": output_text(&text) })));
                    let item = message_item(&item_id, "completed", json!([output_text(&text)]));
                    yield event(json!({ "type": "response.output_item.done", "output_index": 0, "item": item }));
                    let done = response(&header, Some((&completion, item)));
                    let kind = if done["status"] == "completed" { "response.completed" } else { "response.incomplete" };
                    yield event(json!({ "type": kind, "response": done }));
                }
                Piece::Failed(error) => {
                    let body = error.body(Dialect::OpenAi);
                    yield event(json!({ "type": "error", "code": error.kind, "message": body["error"]["message"], "param": null }));
                }
            }
        }
    }
}

/// `POST /v1/responses`
pub async fn responses(
    State(hearth): State<Arc<Hearth>>,
    Extension(queue): Extension<QueueLimiter>,
    Extension(metrics): Extension<Arc<Metrics>>,
    JsonBody(request): JsonBody<ResponsesRequest>,
) -> Result<Response, ApiError> {
    let params = request.params()?;
    let text_options = json!({ "format": request.text.as_ref().and_then(|text| text.format.as_ref())
        .map_or_else(|| json!({ "type": "text" }), |format| json!(format)) });
    let (generation, _) = generation(&params, request.messages()?, None)?;
    let started = answer::start(&hearth, (queue, metrics), &params, generation).await?;
    let header = Header {
        id: format!("resp_{}", uuid::Uuid::new_v4().simple()),
        model: started.model_id().to_string(),
        created_at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs()),
        text: text_options,
    };
    let item_id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    if params.stream {
        let pieces = started.pieces().boxed();
        return Ok(Sse::new(events(header, item_id, pieces)).into_response());
    }
    let (generated, completion) = started.complete().await?;
    let item = message_item(&item_id, "completed", json!([output_text(&generated.text)]));
    Ok(Json(response(&header, Some((&completion, item)))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(value: Value) -> ResponsesRequest {
        serde_json::from_value(value).unwrap()
    }

    fn turns(messages: &RVec<ChatMessage>) -> Vec<(&str, &str)> {
        messages.iter().map(|message| (message.role.as_str(), message.content.as_str())).collect()
    }

    #[test]
    fn a_text_input_is_one_user_message_after_the_instructions() {
        let messages = request(json!({ "model": "m", "input": "hi", "instructions": "Be brief." }))
            .messages()
            .unwrap();
        assert_eq!(turns(&messages), [("system", "Be brief."), ("user", "hi")]);
    }

    #[test]
    fn message_items_keep_their_roles_and_join_their_text_parts() {
        let messages = request(json!({ "model": "m", "input": [
            { "role": "developer", "content": "Be brief." },
            { "type": "message", "role": "user", "content": [
                { "type": "input_text", "text": "a" }, { "type": "input_text", "text": "b" }] },
            { "role": "assistant", "content": [{ "type": "output_text", "text": "c", "annotations": [] }] },
        ] }))
        .messages()
        .unwrap();
        assert_eq!(
            turns(&messages),
            [("system", "Be brief."), ("user", "a\nb"), ("assistant", "c")]
        );
    }

    #[test]
    fn what_hearth_cannot_do_is_refused_by_name() {
        let refused = |value: Value| request(value).params().unwrap_err().message;
        assert!(
            refused(json!({ "input": "x", "tools": [{ "type": "function" }] })).contains("`tools`")
        );
        assert!(refused(json!({ "input": "x", "previous_response_id": "resp_1" }))
            .contains("`previous_response_id`"));
        assert!(refused(json!({ "input": "x", "store": true })).contains("`store`"));
        assert!(request(
            json!({ "input": "x", "store": false, "text": { "format": { "type": "text" } } })
        )
        .params()
        .is_ok());
        let image = request(json!({ "input": [{ "role": "user", "content": [
            { "type": "input_image", "image_url": "data:" }] }] }));
        assert!(image.messages().unwrap_err().message.contains("`input_image`"));
        let call =
            request(json!({ "input": [{ "type": "function_call_output", "call_id": "c" }] }));
        assert!(call.messages().unwrap_err().message.contains("`function_call_output`"));
    }

    #[test]
    fn a_response_cut_by_max_output_tokens_is_incomplete_with_its_reason() {
        let completion = Completion {
            model_id: "m".into(),
            backend: "b".into(),
            tier: None,
            prompt_tokens: 5,
            completion_tokens: 3,
            finish_reason: "length",
            prompt_ms: 0.0,
            decode_ms: 0.0,
            time_to_first_token_ms: None,
            total_ms: 0.0,
            reason: String::new(),
            fallbacks: Vec::new(),
        };
        let item = message_item("msg_1", "completed", json!([output_text("abc")]));
        let header = Header {
            id: "resp_1".into(),
            model: "m".into(),
            created_at: 0,
            text: json!({ "format": { "type": "text" } }),
        };
        let done = response(&header, Some((&completion, item)));
        assert_eq!(done["status"], "incomplete");
        assert_eq!(done["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(done["usage"]["total_tokens"], 8);
        assert_eq!(done["output"][0]["content"][0]["text"], "abc");
    }
}
