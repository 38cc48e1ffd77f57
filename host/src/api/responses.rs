//! OpenAI's Responses API, `POST /v1/responses`, stateless: `input` as a text or a list
//! of message items (`input_text` and `output_text` parts), `instructions` as the system
//! prompt, `max_output_tokens`, `temperature`, `top_p`, and streaming as OpenAI's event
//! sequence (`response.created` … `response.output_text.delta` … `response.completed`),
//! each event numbered.
//!
//! `text.format` holds the answer to a schema; function tools are called as on chat
//! completions (see [`super::tools`]), their calls answered as `function_call` output
//! items and their results read back from `function_call_output` input items.
//!
//! Nothing is stored: a request asking to store its response (`store: true`) or to
//! continue a stored one (`previous_response_id`, `conversation`) is refused, as are
//! hosted tools and reasoning, each by name.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::{Stream, StreamExt};
use hearth_sdk::{ChatMessage, TokenLogprobs};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::answer::{self, generation, Piece};
use super::body::JsonBody;
use super::content::{Content, TextParts};
use super::error::Dialect;
use super::guard::QueueLimiter;
use super::logprobs;
use super::metrics::Metrics;
use super::params::{refuse_fields, CommonParams, LogprobsField, WholeNumber};
use super::structured::{ResponseFormat, TextFormat};
use super::tool_stream::{AnswerEvent, AnswerReader};
use super::tools::{ToolAnswer, Turn};
use super::ApiError;
use crate::service::{Completion, Hearth};

/// Request fields hearth does not implement yet.
const NOT_YET_SUPPORTED: &[&str] = &[
    "previous_response_id",
    "conversation",
    "reasoning",
    "background",
    "prompt",
    "truncation",
    "max_tool_calls",
    "stream_options",
];

/// The one `include` value hearth has: the answer's log-probabilities, token by token.
const LOGPROBS_INCLUDE: &str = "message.output_text.logprobs";

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
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    /// Extra output to include; hearth has [`LOGPROBS_INCLUDE`].
    #[serde(default)]
    pub include: Vec<String>,
    pub top_logprobs: Option<WholeNumber>,
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
        if let Some(other) = self.include.iter().find(|include| *include != LOGPROBS_INCLUDE) {
            return Err(ApiError::bad_request(format!(
                "`include`: `{other}` is not supported; hearth includes only `{LOGPROBS_INCLUDE}`"
            )));
        }
        let logprobs = self.include.iter().any(|include| include == LOGPROBS_INCLUDE);
        if self.top_logprobs.is_some() && !logprobs {
            return Err(ApiError::bad_request(format!(
                "`top_logprobs` needs `include: [\"{LOGPROBS_INCLUDE}\"]`"
            )));
        }
        let format = self.text.as_ref().and_then(|text| text.format.clone());
        let tools = self.tools.as_ref().map(|tools| tools.iter().map(as_function).collect());
        let tool_choice = self.tool_choice.as_ref().map(as_chat_choice).transpose()?;
        Ok(CommonParams {
            response_format: format.map(ResponseFormat::from),
            tools: tools.transpose()?.map(Value::Array),
            tool_choice,
            parallel_tool_calls: self.parallel_tool_calls,
            model: self.model.clone(),
            max_tokens: self.max_output_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            stream: self.stream,
            logprobs: logprobs.then_some(LogprobsField::Flag(true)),
            top_logprobs: self.top_logprobs,
            ..CommonParams::default()
        })
    }

    /// The conversation as chat messages, the instructions first.
    fn messages(self) -> Result<Vec<Turn>, ApiError> {
        let mut messages = Vec::new();
        if let Some(instructions) = self.instructions.filter(|text| !text.is_empty()) {
            messages.push(ChatMessage { role: "system".into(), content: instructions.into() });
        }
        let items = match self.input {
            Input::Text(text) => {
                messages.push(ChatMessage { role: "user".into(), content: text.into() });
                return Ok(messages.into_iter().map(Turn::Message).collect());
            }
            Input::Items(items) => items,
        };
        if items.is_empty() {
            return Err(ApiError::bad_request("`input` must not be empty"));
        }
        let mut turns: Vec<Turn> = messages.into_iter().map(Turn::Message).collect();
        for item in items {
            let turn = turn_of(item)?;
            // Parallel calls come as consecutive items: one turn of calls.
            match (turns.last_mut(), turn) {
                (Some(Turn::Calls(calls)), Turn::Calls(more)) => calls.extend(more),
                (_, turn) => turns.push(turn),
            }
        }
        Ok(turns)
    }
}

/// A function tool (`{type: "function", name, description, parameters}`) as chat
/// completions' (`{type: "function", function: {…}}`), the shape [`tools::ToolUse`] reads.
fn as_function(tool: &Value) -> Result<Value, ApiError> {
    match tool["type"].as_str() {
        Some("function") => Ok(json!({ "type": "function", "function": {
            "name": tool["name"], "description": tool["description"], "parameters": tool["parameters"],
        } })),
        kind => Err(ApiError::bad_request(format!(
            "`tools[]` of type {kind:?} (a hosted tool) are not supported by hearth; send function tools"
        ))),
    }
}

/// `tool_choice` as chat completions write it.
fn as_chat_choice(choice: &Value) -> Result<Value, ApiError> {
    match choice {
        Value::String(_) => Ok(choice.clone()),
        _ if choice["type"] == "function" => {
            Ok(json!({ "type": "function", "function": { "name": choice["name"] } }))
        }
        _ => Err(ApiError::bad_request(
            "`tool_choice` must be auto, required, none or {\"type\": \"function\", \"name\": …}",
        )),
    }
}

/// An input item as a turn: a message, a function call, or a call's output; other
/// item types are refused by name.
fn turn_of(mut item: Item) -> Result<Turn, ApiError> {
    let text = |value: Value| -> Result<String, ApiError> {
        match value {
            Value::String(text) => Ok(text),
            parts => serde_json::from_value::<Content>(parts)
                .map_err(|error| ApiError::bad_request(format!("`input[].output`: {error}")))?
                .text(&TEXT_PARTS, "input[].output"),
        }
    };
    match item.kind.as_deref().unwrap_or("message") {
        "message" => message_of(item).map(Turn::Message),
        "function_call" => {
            let field = |item: &mut Item, name: &str| match item.other.remove(name) {
                Some(Value::String(value)) => Ok(value),
                _ => Err(ApiError::bad_request(format!(
                    "`input[].{name}` is required in a function_call item"
                ))),
            };
            let (id, name) = (field(&mut item, "call_id")?, field(&mut item, "name")?);
            let arguments = field(&mut item, "arguments")?;
            let arguments = serde_json::from_str(&arguments).unwrap_or(Value::String(arguments));
            Ok(Turn::Calls(vec![(id, name, arguments)]))
        }
        "function_call_output" => {
            let id = item.other.remove("call_id").and_then(|id| id.as_str().map(str::to_string));
            let content = text(item.other.remove("output").unwrap_or_default())?;
            Ok(Turn::Result { id, name: None, content })
        }
        kind => Err(ApiError::bad_request(format!(
            "`input[]` items of type `{kind}` are not supported by hearth yet; send messages and function calls"
        ))),
    }
}

/// A message item as a chat message.
fn message_of(item: Item) -> Result<ChatMessage, ApiError> {
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

/// An answer read for tool calls as output items: its calls, or its reply.
fn tool_items(answer: ToolAnswer) -> Vec<Value> {
    match answer {
        ToolAnswer::Text(text) => vec![message_item(
            &format!("msg_{}", uuid::Uuid::new_v4().simple()),
            "completed",
            json!([output_text(&text, &[])]),
        )],
        ToolAnswer::Calls(calls) => calls
            .into_iter()
            .map(|call| {
                json!({ "type": "function_call", "id": format!("fc_{}", uuid::Uuid::new_v4().simple()),
                        "call_id": call.id, "name": call.name,
                        "arguments": call.arguments.to_string(), "status": "completed" })
            })
            .collect(),
    }
}

/// What every state of one response repeats.
struct Header {
    id: String,
    model: String,
    created_at: u64,
    /// What the request set of `text`, `tools`, `tool_choice` and `parallel_tool_calls`.
    settings: Map<String, Value>,
}

/// The response object: `status` and `output` as they stand, `usage` once known.
fn response(header: &Header, end: Option<(&Completion, Vec<Value>)>) -> Value {
    let Header { id, model, created_at, settings } = header;
    let mut response = json!({
        "id": id, "object": "response", "created_at": created_at, "model": model,
        "status": "in_progress", "error": null, "incomplete_details": null,
        "output": [], "usage": null, "store": false,
    });
    if let Value::Object(fields) = &mut response {
        fields.extend(settings.clone());
    }
    if let Some((completion, items)) = end {
        let incomplete = completion.finish_reason == "length";
        response["status"] = if incomplete { "incomplete" } else { "completed" }.into();
        if incomplete {
            response["incomplete_details"] = json!({ "reason": "max_output_tokens" });
        }
        response["output"] = items.into();
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

/// An output text part, with its tokens' log-probabilities where they were asked for.
fn output_text(text: &str, entries: &[TokenLogprobs]) -> Value {
    json!({ "type": "output_text", "text": text, "annotations": [], "logprobs": token_logprobs(entries) })
}

/// Log-probabilities in the Responses API's shape, which is chat's.
fn token_logprobs(entries: &[TokenLogprobs]) -> Value {
    logprobs::chat(entries)["content"].take()
}

fn message_item(id: &str, status: &str, content: Value) -> Value {
    json!({ "type": "message", "id": id, "status": status, "role": "assistant", "content": content })
}

/// Numbers a response's events from 0, naming each by its type.
fn numbered() -> impl FnMut(Value) -> Result<Event, Infallible> {
    let mut sequence = 0u64;
    move |mut data: Value| {
        data["sequence_number"] = sequence.into();
        sequence += 1;
        let name = data["type"].as_str().unwrap_or("error").to_string();
        Ok(Event::default().event(name).data(data.to_string()))
    }
}

/// The events every streamed response opens with.
fn opening(header: &Header) -> [Value; 2] {
    let started = response(header, None);
    [
        json!({ "type": "response.created", "response": started }),
        json!({ "type": "response.in_progress", "response": started }),
    ]
}

/// The output items of a streamed response that may call tools, opened, filled and
/// closed as the answer is read: a reply as one message item, each call as a
/// `function_call` item whose arguments arrive in deltas.
#[derive(Default)]
struct ToolItems {
    /// Each item as it stands, in output order.
    items: Vec<Value>,
    /// The index of the reply's item, once it opened.
    reply: Option<usize>,
    /// The item of each call, by the call's place in the answer.
    calls: Vec<usize>,
}

impl ToolItems {
    /// `fields` located at item `index`.
    fn at(&self, index: usize, mut fields: Value) -> Value {
        fields["item_id"] = self.items[index]["id"].clone();
        fields["output_index"] = index.into();
        fields
    }

    /// Open `item` as the next output item.
    fn open(&mut self, item: Value) -> (usize, Value) {
        self.items.push(item.clone());
        let index = self.items.len() - 1;
        (
            index,
            json!({ "type": "response.output_item.added", "output_index": index, "item": item }),
        )
    }

    /// The events that report `event`.
    fn events(&mut self, event: AnswerEvent) -> Vec<Value> {
        let mut events = Vec::new();
        match event {
            AnswerEvent::Text(text) => {
                let index = match self.reply {
                    Some(index) => index,
                    None => {
                        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
                        let (index, added) = self.open(message_item(&id, "in_progress", json!([])));
                        self.items[index]["content"] = json!([output_text("", &[])]);
                        events.push(added);
                        events.push(self.at(index, json!({ "type": "response.content_part.added", "content_index": 0, "part": output_text("", &[]) })));
                        self.reply = Some(index);
                        index
                    }
                };
                let part = &mut self.items[index]["content"][0]["text"];
                *part = format!("{}{text}", part.as_str().unwrap_or_default()).into();
                events.push(self.at(index, json!({ "type": "response.output_text.delta", "content_index": 0, "delta": text, "logprobs": [] })));
            }
            AnswerEvent::CallStarted { id, name, .. } => {
                let item = json!({ "type": "function_call", "id": format!("fc_{}", uuid::Uuid::new_v4().simple()),
                                   "call_id": id, "name": name, "arguments": "", "status": "in_progress" });
                let (index, added) = self.open(item);
                self.calls.push(index);
                events.push(added);
            }
            AnswerEvent::Arguments { index, json } => {
                let item = self.calls[index];
                let arguments = &mut self.items[item]["arguments"];
                *arguments = format!("{}{json}", arguments.as_str().unwrap_or_default()).into();
                events.push(self.at(
                    item,
                    json!({ "type": "response.function_call_arguments.delta", "delta": json }),
                ));
            }
            AnswerEvent::CallFinished { index } => {
                events.extend(self.close(self.calls[index], "completed"));
            }
        }
        events
    }

    /// The events that close item `index` with `status`.
    fn close(&mut self, index: usize, status: &str) -> Vec<Value> {
        self.items[index]["status"] = status.into();
        let item = self.items[index].clone();
        let mut events = Vec::new();
        if item["type"] == "function_call" {
            events.push(self.at(index, json!({ "type": "response.function_call_arguments.done", "arguments": item["arguments"] })));
        } else {
            let part = &item["content"][0];
            events.push(self.at(index, json!({ "type": "response.output_text.done", "content_index": 0, "text": part["text"], "logprobs": [] })));
            events.push(self.at(
                index,
                json!({ "type": "response.content_part.done", "content_index": 0, "part": part }),
            ));
        }
        events.push(
            json!({ "type": "response.output_item.done", "output_index": index, "item": item }),
        );
        events
    }

    /// The events that close every item still open, and the items.
    fn finish(mut self) -> (Vec<Value>, Vec<Value>) {
        let open: Vec<usize> = (0..self.items.len())
            .filter(|&index| self.items[index]["status"] == "in_progress")
            .collect();
        let mut events = Vec::new();
        for index in open {
            let status = if self.reply == Some(index) { "completed" } else { "incomplete" };
            events.extend(self.close(index, status));
        }
        (events, self.items)
    }
}

/// The events of a streamed response that may call tools, reported as the answer is
/// read (see [`ToolItems`]).
fn tool_events(
    header: Header,
    mut reader: AnswerReader,
    pieces: impl Stream<Item = Piece> + Send + 'static,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let mut event = numbered();
    async_stream::stream! {
        for opening in opening(&header) {
            yield event(opening);
        }

        let mut items = ToolItems::default();
        for await piece in pieces {
            match piece {
                Piece::Text(piece) => {
                    for answer_event in reader.push(&piece.text) {
                        for data in items.events(answer_event) {
                            yield event(data);
                        }
                    }
                }
                Piece::Finished(completion) => {
                    let (rest, _) = std::mem::take(&mut reader).finish();
                    for answer_event in rest {
                        for data in items.events(answer_event) {
                            yield event(data);
                        }
                    }
                    let (closing, output) = std::mem::take(&mut items).finish();
                    for data in closing {
                        yield event(data);
                    }
                    let done = response(&header, Some((&completion, output)));
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

/// The events of one streamed response, numbered from 0.
fn events(
    header: Header,
    item_id: String,
    pieces: impl Stream<Item = Piece> + Send + 'static,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let mut event = numbered();
    async_stream::stream! {
        for opening in opening(&header) {
            yield event(opening);
        }
        let at = |mut fields: Value| {
            fields["item_id"] = item_id.clone().into();
            fields["output_index"] = 0.into();
            fields["content_index"] = 0.into();
            fields
        };
        yield event(json!({ "type": "response.output_item.added", "output_index": 0,
                            "item": message_item(&item_id, "in_progress", json!([])) }));
        yield event(at(json!({ "type": "response.content_part.added", "part": output_text("", &[]) })));
        let mut text = String::new();
        let mut entries = Vec::new();
        for await piece in pieces {
            match piece {
                Piece::Text(piece) => {
                    text.push_str(&piece.text);
                    yield event(at(json!({ "type": "response.output_text.delta",
                                           "delta": piece.text, "logprobs": token_logprobs(&piece.logprobs) })));
                    entries.extend(piece.logprobs);
                }
                Piece::Finished(completion) => {
                    let part = output_text(&text, &entries);
                    yield event(at(json!({ "type": "response.output_text.done", "text": text, "logprobs": part["logprobs"] })));
                    yield event(at(json!({ "type": "response.content_part.done", "part": part })));
                    let item = message_item(&item_id, "completed", json!([part]));
                    yield event(json!({ "type": "response.output_item.done", "output_index": 0, "item": item }));
                    let done = response(&header, Some((&completion, vec![item])));
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
    let settings = settings(&request);
    let (generation, tools) = generation(&hearth, &params, request.messages()?, None)?;
    let started = answer::start(&hearth, (queue, metrics), &params, generation).await?;
    let header = Header {
        id: format!("resp_{}", uuid::Uuid::new_v4().simple()),
        model: started.model_id().to_string(),
        created_at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs()),
        settings,
    };
    let item_id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    if params.stream {
        let pieces = started.pieces().boxed();
        return Ok(match tools {
            Some(tools) => {
                Sse::new(tool_events(header, tools.reader(), pieces).boxed()).into_response()
            }
            None => Sse::new(events(header, item_id, pieces).boxed()).into_response(),
        });
    }
    let (generated, completion) = started.complete().await?;
    let items = match tools {
        Some(tools) => tool_items(tools.read(&generated.text)),
        None => vec![message_item(
            &item_id,
            "completed",
            json!([output_text(&generated.text, &generated.logprobs)]),
        )],
    };
    Ok(Json(response(&header, Some((&completion, items)))).into_response())
}

/// The settings a response repeats as the request gave them.
fn settings(request: &ResponsesRequest) -> Map<String, Value> {
    let format = request.text.as_ref().and_then(|text| text.format.as_ref());
    let mut settings = Map::new();
    settings.insert("text".into(), json!({ "format": format.map_or_else(|| json!({ "type": "text" }), |format| json!(format)) }));
    settings.insert("tools".into(), request.tools.clone().unwrap_or_default().into());
    let choice =
        if request.tools.as_ref().is_some_and(|tools| !tools.is_empty()) { "auto" } else { "none" };
    settings
        .insert("tool_choice".into(), request.tool_choice.clone().unwrap_or_else(|| choice.into()));
    settings
        .insert("parallel_tool_calls".into(), request.parallel_tool_calls.unwrap_or(true).into());
    settings
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

    fn request(value: Value) -> ResponsesRequest {
        serde_json::from_value(value).unwrap()
    }

    fn turns(messages: &RVec<ChatMessage>) -> Vec<(&str, &str)> {
        messages.iter().map(|message| (message.role.as_str(), message.content.as_str())).collect()
    }

    #[test]
    fn a_text_input_is_one_user_message_after_the_instructions() {
        let messages = generic(
            request(json!({ "model": "m", "input": "hi", "instructions": "Be brief." }))
                .messages()
                .unwrap(),
        );
        assert_eq!(turns(&messages), [("system", "Be brief."), ("user", "hi")]);
    }

    #[test]
    fn message_items_keep_their_roles_and_join_their_text_parts() {
        let messages = generic(request(json!({ "model": "m", "input": [
            { "role": "developer", "content": "Be brief." },
            { "type": "message", "role": "user", "content": [
                { "type": "input_text", "text": "a" }, { "type": "input_text", "text": "b" }] },
            { "role": "assistant", "content": [{ "type": "output_text", "text": "c", "annotations": [] }] },
        ] }))
        .messages()
        .unwrap());
        assert_eq!(
            turns(&messages),
            [("system", "Be brief."), ("user", "a\nb"), ("assistant", "c")]
        );
    }

    #[test]
    fn what_hearth_cannot_do_is_refused_by_name() {
        let refused = |value: Value| request(value).params().unwrap_err().message;
        assert!(refused(json!({ "input": "x", "tools": [{ "type": "web_search" }] }))
            .contains("`tools[]`"));
        assert!(refused(json!({ "input": "x", "previous_response_id": "resp_1" }))
            .contains("`previous_response_id`"));
        assert!(refused(json!({ "input": "x", "store": true })).contains("`store`"));
        assert!(refused(json!({ "input": "x", "include": ["reasoning.encrypted_content"] }))
            .contains("`reasoning.encrypted_content`"));
        assert!(
            refused(json!({ "input": "x", "top_logprobs": 2 })).contains("`top_logprobs` needs")
        );
        let logprobs =
            request(json!({ "input": "x", "include": [LOGPROBS_INCLUDE], "top_logprobs": 2 }));
        assert_eq!(logprobs.params().unwrap().logprobs().unwrap(), Some(2));
        assert!(request(
            json!({ "input": "x", "store": false, "text": { "format": { "type": "text" } } })
        )
        .params()
        .is_ok());
        let image = request(json!({ "input": [{ "role": "user", "content": [
            { "type": "input_image", "image_url": "data:" }] }] }));
        assert!(image.messages().unwrap_err().message.contains("`input_image`"));
        let reasoning = request(json!({ "input": [{ "type": "reasoning", "summary": [] }] }));
        assert!(reasoning.messages().unwrap_err().message.contains("`reasoning`"));
    }

    #[test]
    fn function_calls_and_their_outputs_are_read_back_as_one_turn_of_calls_and_results() {
        let messages = generic(request(json!({ "input": [
            { "role": "user", "content": "Weather and time?" },
            { "type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" },
            { "type": "function_call", "call_id": "c2", "name": "get_time", "arguments": "{}" },
            { "type": "function_call_output", "call_id": "c1", "output": "sunny" },
            { "type": "function_call_output", "call_id": "c2", "output": "noon" },
        ] }))
        .messages()
        .unwrap());
        let roles: Vec<&str> = messages.iter().map(|message| message.role.as_str()).collect();
        assert_eq!(roles, ["user", "assistant", "user"]);
        assert!(messages[1].content.contains(r#""city":"Paris""#), "{}", messages[1].content);
        assert!(messages[2].content.contains(r#""name":"get_time","content":"noon""#));
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
        let item = message_item("msg_1", "completed", json!([output_text("abc", &[])]));
        let header =
            Header { id: "resp_1".into(), model: "m".into(), created_at: 0, settings: Map::new() };
        let done = response(&header, Some((&completion, vec![item])));
        assert_eq!(done["status"], "incomplete");
        assert_eq!(done["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(done["usage"]["total_tokens"], 8);
        assert_eq!(done["output"][0]["content"][0]["text"], "abc");
    }
}
