//! Tool calls. A model whose chat template knows tools gets them as its template wants
//! them: the tools, earlier calls and their results go through the template, and the
//! answer is held by a grammar to the calls of the template's family (see
//! [`super::tool_formats`]). Any other model gets one format every model can follow: the
//! tools are described to it in a system message, and the answer is held to one JSON
//! object, `{"tool_calls": [{"name": …, "arguments": {…}}]}` or, when the model may
//! answer in words, `{"response": "…"}` (llama-server's generic format); earlier calls
//! and their results go back in the same JSON, as user turns, so templates that know
//! only user and assistant still render them.
//!
//! Either way `tool_choice` decides whether the grammar allows words and which tools it
//! names, so even a small model emits a call that parses, to a tool that exists, with
//! arguments its schema accepts. Each API reads its own wire shapes into [`ToolUse`] and
//! [`Turn`]s and writes [`ToolAnswer`] back in its own shape; everything between is
//! here, once.

use hearth_sdk::abi_stable::std_types::{RString, RVec};
use hearth_sdk::ChatMessage;
use serde_json::{json, Map, Value};

use super::structured::json_grammar;
use super::tool_formats::{ToolFormat, Written};
use super::tool_stream::AnswerReader;
use super::ApiError;

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: String,
    /// The JSON schema of its arguments (an object).
    pub parameters: Value,
}

/// What the model may do with the tools.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    /// Call tools or answer in words, as it sees fit.
    Auto,
    /// Call at least one tool.
    Required,
    /// Call this tool.
    Named(String),
}

/// The tools of one request and what the model may do with them.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolUse {
    tools: Vec<Tool>,
    choice: ToolChoice,
    /// Whether one answer may call several tools.
    parallel: bool,
    /// How the model writes calls.
    format: ToolFormat,
}

/// One call the model made.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: Value,
}

/// What the model answered.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolAnswer {
    Text(String),
    Calls(Vec<ToolCall>),
}

/// One turn of a conversation that may hold tool calls and their results.
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    Message(ChatMessage),
    /// The assistant's calls, each `(id, name, arguments)`.
    Calls(Vec<(String, String, Value)>),
    /// A call's result, by the call's id or the tool's name (APIs give one or the other).
    Result {
        id: Option<String>,
        name: Option<String>,
        content: String,
    },
}

/// OpenAI's `tools` entry, which Ollama shares.
fn openai_tool(entry: &Value) -> Result<Tool, ApiError> {
    let refused = |why: &str| ApiError::bad_request(format!("`tools[]`: {why}"));
    if entry["type"] != "function" {
        return Err(refused("only tools of type `function` are supported"));
    }
    let function = &entry["function"];
    let name = function["name"].as_str().filter(|name| !name.is_empty());
    let name = name.ok_or_else(|| refused("`function.name` is required"))?;
    let parameters = match &function["parameters"] {
        Value::Null => json!({ "type": "object", "properties": {} }),
        parameters @ Value::Object(_) => parameters.clone(),
        _ => return Err(refused("`function.parameters` must be a JSON schema object")),
    };
    Ok(Tool {
        name: name.to_string(),
        description: function["description"].as_str().unwrap_or_default().to_string(),
        parameters,
    })
}

impl ToolUse {
    /// OpenAI's `tools`, `tool_choice` and `parallel_tool_calls` (Ollama sends only the
    /// first); none when there are no tools or the choice is `none`.
    pub fn from_openai(
        tools: Option<&Value>,
        choice: Option<&Value>,
        parallel: Option<bool>,
    ) -> Result<Option<Self>, ApiError> {
        let tools = match tools {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(entries)) => {
                entries.iter().map(openai_tool).collect::<Result<_, _>>()?
            }
            Some(_) => return Err(ApiError::bad_request("`tools` must be a list")),
        };
        let choice = match choice {
            None | Some(Value::Null) => Some(ToolChoice::Auto),
            Some(Value::String(choice)) => match choice.as_str() {
                "auto" => Some(ToolChoice::Auto),
                "required" => Some(ToolChoice::Required),
                "none" => None,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "`tool_choice` must be auto, required, none or a function, got {other:?}"
                    )))
                }
            },
            Some(named) => match named["function"]["name"].as_str() {
                Some(name) if named["type"] == "function" => Some(ToolChoice::Named(name.into())),
                _ => {
                    return Err(ApiError::bad_request(
                        "`tool_choice` must be auto, required, none or {\"type\": \"function\", \"function\": {\"name\": …}}",
                    ))
                }
            },
        };
        match choice {
            Some(choice) if !tools.is_empty() => {
                Self::new(tools, choice, parallel.unwrap_or(true)).map(Some)
            }
            Some(ToolChoice::Required | ToolChoice::Named(_)) => Err(ApiError::bad_request(
                "`tool_choice` asks for a tool call, but `tools` is empty",
            )),
            _ => Ok(None),
        }
    }

    /// Tools with distinct names, and a named choice that is one of them.
    pub fn new(tools: Vec<Tool>, choice: ToolChoice, parallel: bool) -> Result<Self, ApiError> {
        for (index, tool) in tools.iter().enumerate() {
            if tools[..index].iter().any(|earlier| earlier.name == tool.name) {
                return Err(ApiError::bad_request(format!(
                    "`tools` lists `{}` twice; tool names must be distinct",
                    tool.name
                )));
            }
        }
        if let ToolChoice::Named(name) = &choice {
            if !tools.iter().any(|tool| &tool.name == name) {
                return Err(ApiError::bad_request(format!(
                    "`tool_choice` names `{name}`, which is not in `tools`"
                )));
            }
        }
        Ok(Self { tools, choice, parallel, format: ToolFormat::Generic })
    }

    /// The same tools, with calls written in `format`.
    pub fn in_format(self, format: ToolFormat) -> Self {
        Self { format, ..self }
    }

    /// The schema of one call to a callable tool, its arguments under `arguments`.
    fn call_schemas(&self, arguments: &str) -> Vec<Value> {
        self.callable()
            .map(|tool| {
                json!({
                    "type": "object",
                    "properties": { "name": { "const": tool.name }, arguments: tool.parameters },
                    "required": ["name", arguments],
                    "additionalProperties": false,
                })
            })
            .collect()
    }

    /// The tools as the chat template reads them: OpenAI's list, as JSON.
    fn template_tools(&self) -> String {
        let tools: Vec<Value> = self
            .tools
            .iter()
            .map(|tool| {
                json!({ "type": "function", "function": {
                    "name": tool.name, "description": tool.description, "parameters": tool.parameters,
                } })
            })
            .collect();
        Value::Array(tools).to_string()
    }

    /// The answer read: its calls, each with a fresh id, or its reply.
    pub fn read(&self, text: &str) -> ToolAnswer {
        match self.format {
            ToolFormat::Generic => ToolAnswer::read(text),
            ToolFormat::Family(family) => match family.read_prefix(text) {
                Written::Calls(calls) => {
                    ToolAnswer::read_calls(&format!("{calls}]}}"), family.arguments)
                        .unwrap_or_else(|| ToolAnswer::Text(text.to_string()))
                }
                Written::Undecided | Written::Reply => ToolAnswer::Text(text.to_string()),
            },
        }
    }

    /// A reader of the answer as it streams.
    pub fn reader(&self) -> AnswerReader {
        AnswerReader::new(self.format)
    }

    /// The tools the model may call now.
    fn callable(&self) -> impl Iterator<Item = &Tool> {
        self.tools.iter().filter(|tool| match &self.choice {
            ToolChoice::Named(name) => &tool.name == name,
            ToolChoice::Auto | ToolChoice::Required => true,
        })
    }

    /// The schema of the generic answer: a list of calls to callable tools, or (under
    /// `auto`) a reply in words.
    fn answer_schema(&self) -> Value {
        let calls = self.call_schemas("arguments");
        let mut list = json!({ "type": "array", "items": { "anyOf": calls }, "minItems": 1 });
        if !self.parallel {
            list["maxItems"] = 1.into();
        }
        let calls = json!({
            "type": "object",
            "properties": { "tool_calls": list },
            "required": ["tool_calls"],
            "additionalProperties": false,
        });
        match self.choice {
            ToolChoice::Auto => json!({ "anyOf": [calls, {
                "type": "object",
                "properties": { "response": { "type": "string" } },
                "required": ["response"],
                "additionalProperties": false,
            }] }),
            ToolChoice::Required | ToolChoice::Named(_) => calls,
        }
    }

    /// The grammar that holds the answer: to [`ToolUse::answer_schema`], or to calls
    /// in the family's format (or, under `auto`, words).
    pub fn grammar(&self) -> String {
        match self.format {
            ToolFormat::Generic => json_grammar(&self.answer_schema()),
            ToolFormat::Family(family) => family.grammar(
                &self.call_schemas(family.arguments),
                self.parallel && family.parallel(),
                self.choice == ToolChoice::Auto,
            ),
        }
    }

    /// What the model is told: the tools, and the JSON to answer in.
    fn instructions(&self) -> String {
        let tools: Vec<Value> = self
            .callable()
            .map(|tool| {
                json!({ "name": tool.name, "description": tool.description, "parameters": tool.parameters })
            })
            .collect();
        let tools = serde_json::to_string_pretty(&tools).unwrap_or_default();
        let call = r#"{"tool_calls": [{"name": "<tool name>", "arguments": {<arguments>}}]}"#;
        match self.choice {
            ToolChoice::Auto => format!(
                "You can call these tools:\n{tools}\n\nAnswer with one JSON object: {call} to call tools, or {{\"response\": \"<your reply>\"}} to reply to the user directly."
            ),
            ToolChoice::Required | ToolChoice::Named(_) => format!(
                "You can call these tools:\n{tools}\n\nAnswer with one JSON object that calls them: {call}"
            ),
        }
    }

    /// Tell the model about the tools in the generic format: the instructions join the
    /// conversation's first system message, or open it as one.
    fn instruct(&self, messages: &mut RVec<ChatMessage>) {
        let instructions = self.instructions();
        match messages.first_mut() {
            Some(first) if first.role == "system" => {
                first.content = format!("{}\n\n{instructions}", first.content).into();
            }
            _ => messages
                .insert(0, ChatMessage { role: "system".into(), content: instructions.into() }),
        }
    }
}

/// A fresh id for one call, in OpenAI's form.
pub fn new_call_id() -> String {
    format!("call_{}", &uuid::Uuid::new_v4().simple().to_string()[..24])
}

impl ToolAnswer {
    /// The model's answer, read: its calls, each with a fresh id, or its reply. An
    /// answer the grammar did not let finish (cut by `max_tokens`) is returned as text.
    fn read(text: &str) -> Self {
        if let Ok(Value::Object(answer)) = serde_json::from_str::<Value>(text) {
            if let Some(Value::String(reply)) = answer.get("response") {
                return Self::Text(reply.clone());
            }
        }
        Self::read_calls(text, "arguments").unwrap_or_else(|| Self::Text(text.to_string()))
    }

    /// `{"tool_calls": [{"name": …, "<arguments>": …}, …]}` read as calls with fresh
    /// ids; none when `text` is not that.
    fn read_calls(text: &str, arguments: &str) -> Option<Self> {
        let Ok(Value::Object(mut answer)) = serde_json::from_str::<Value>(text) else {
            return None;
        };
        let Some(Value::Array(calls)) = answer.remove("tool_calls") else { return None };
        let calls = calls
            .into_iter()
            .map(|mut call| ToolCall {
                id: new_call_id(),
                name: call["name"].as_str().unwrap_or_default().to_string(),
                arguments: call[arguments].take(),
            })
            .collect();
        Some(Self::Calls(calls))
    }
}

/// A conversation as the request hands it to the model: its messages, the extra fields
/// of each for the template (none in the generic format), the tools for the template,
/// and the grammar its answer is held to.
pub struct Chat {
    pub messages: RVec<ChatMessage>,
    pub message_extras: RVec<RString>,
    pub tools: RString,
    pub grammar: RString,
}

/// The conversation in `format`, with `tools` when the model may call them. In a
/// family's format calls and results are messages the template renders, each tool's
/// result named by the call it answers; in the generic format they are JSON turns
/// ([`conversation`]) and the tools are described in the system message.
pub fn chat(turns: Vec<Turn>, tools: Option<&ToolUse>, format: ToolFormat) -> Chat {
    let grammar = tools.map(ToolUse::grammar).unwrap_or_default().into();
    if format == ToolFormat::Generic {
        let mut messages = conversation(turns);
        if let Some(tools) = tools {
            tools.instruct(&mut messages);
        }
        return Chat { messages, message_extras: RVec::new(), tools: RString::new(), grammar };
    }
    let mut names: Map<String, Value> = Map::new();
    let (mut messages, mut extras) = (RVec::new(), RVec::new());
    let mut push = |role: &str, content: String, fields: Option<Value>| {
        messages.push(ChatMessage { role: role.into(), content: content.into() });
        extras.push(fields.map(|fields| fields.to_string()).unwrap_or_default().into());
    };
    for turn in turns {
        match turn {
            Turn::Message(message) => {
                push(message.role.as_str(), message.content.into(), None);
            }
            Turn::Calls(calls) => {
                let calls: Vec<Value> = calls
                    .into_iter()
                    .map(|(id, name, arguments)| {
                        names.insert(id.clone(), name.clone().into());
                        json!({ "id": id, "type": "function", "function": { "name": name, "arguments": arguments } })
                    })
                    .collect();
                push("assistant", String::new(), Some(json!({ "tool_calls": calls })));
            }
            Turn::Result { id, name, content } => {
                let name = name.or_else(|| {
                    id.as_ref()
                        .and_then(|id| names.get(id).and_then(Value::as_str).map(str::to_string))
                });
                push("tool", content, Some(json!({ "tool_call_id": id, "name": name })));
            }
        }
    }
    let template_tools = tools.map(ToolUse::template_tools).unwrap_or_default().into();
    Chat { messages, message_extras: extras, tools: template_tools, grammar }
}

/// A conversation as a model of the generic format reads it: calls as the JSON it
/// answers in, and each run of results as one user turn, naming the tool each answers.
fn conversation(turns: Vec<Turn>) -> RVec<ChatMessage> {
    let mut names: Map<String, Value> = Map::new();
    let mut messages = RVec::new();
    let mut results: Vec<Value> = Vec::new();
    for turn in turns {
        if !matches!(turn, Turn::Result { .. }) && !results.is_empty() {
            messages.push(results_message(std::mem::take(&mut results)));
        }
        match turn {
            Turn::Message(message) => messages.push(message),
            Turn::Calls(calls) => {
                let calls: Vec<Value> = calls
                    .into_iter()
                    .map(|(id, name, arguments)| {
                        names.insert(id, name.clone().into());
                        json!({ "name": name, "arguments": arguments })
                    })
                    .collect();
                let content = json!({ "tool_calls": calls }).to_string();
                messages.push(ChatMessage { role: "assistant".into(), content: content.into() });
            }
            Turn::Result { id, name, content } => {
                let name = name.or_else(|| {
                    id.and_then(|id| names.get(&id).and_then(Value::as_str).map(str::to_string))
                });
                results.push(json!({ "name": name, "content": content }));
            }
        }
    }
    if !results.is_empty() {
        messages.push(results_message(results));
    }
    messages
}

fn results_message(results: Vec<Value>) -> ChatMessage {
    let content = json!({ "tool_results": results }).to_string();
    ChatMessage { role: "user".into(), content: content.into() }
}

#[cfg(test)]
mod tests {
    use super::super::tool_formats::FAMILIES;
    use super::*;

    fn weather() -> Value {
        json!([{ "type": "function", "function": {
            "name": "get_weather", "description": "Weather in a city",
            "parameters": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] },
        } }, { "type": "function", "function": { "name": "get_time" } }])
    }

    #[test]
    fn no_tools_or_a_choice_of_none_is_no_tool_use() {
        assert_eq!(ToolUse::from_openai(None, None, None).unwrap(), None);
        assert_eq!(ToolUse::from_openai(Some(&json!([])), None, None).unwrap(), None);
        assert_eq!(
            ToolUse::from_openai(Some(&weather()), Some(&json!("none")), None).unwrap(),
            None
        );
    }

    #[test]
    fn a_required_call_without_tools_and_a_named_tool_not_listed_are_refused() {
        let error = ToolUse::from_openai(None, Some(&json!("required")), None).unwrap_err();
        assert!(error.message.contains("`tools` is empty"), "{}", error.message);
        let named = json!({ "type": "function", "function": { "name": "nope" } });
        let error = ToolUse::from_openai(Some(&weather()), Some(&named), None).unwrap_err();
        assert!(error.message.contains("`nope`"), "{}", error.message);
        let twice = json!([weather()[0], weather()[0]]);
        let error = ToolUse::from_openai(Some(&twice), None, None).unwrap_err();
        assert!(error.message.contains("twice"), "{}", error.message);
    }

    #[test]
    fn auto_lets_the_model_reply_in_words_and_required_does_not() {
        let auto = ToolUse::from_openai(Some(&weather()), None, None).unwrap().unwrap();
        assert!(auto.grammar().contains(r#""response""#));
        let required =
            ToolUse::from_openai(Some(&weather()), Some(&json!("required")), Some(false))
                .unwrap()
                .unwrap();
        let grammar = required.grammar();
        assert!(!grammar.contains(r#""response""#) && grammar.contains(r#""maxItems":1"#));
    }

    #[test]
    fn a_named_choice_allows_calls_to_that_tool_alone() {
        let named = json!({ "type": "function", "function": { "name": "get_time" } });
        let tools = ToolUse::from_openai(Some(&weather()), Some(&named), None).unwrap().unwrap();
        let grammar = tools.grammar();
        assert!(grammar.contains(r#""const":"get_time""#) && !grammar.contains("get_weather"));
    }

    #[test]
    fn an_answer_reads_as_calls_with_fresh_ids_or_as_a_reply() {
        let answer = ToolAnswer::read(
            r#"{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {}}]}"#,
        );
        let ToolAnswer::Calls(calls) = answer else { panic!("{answer:?}") };
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].name.as_str(), &calls[0].arguments),
            ("get_weather", &json!({ "city": "Paris" }))
        );
        assert!(calls[0].id.starts_with("call_") && calls[0].id != calls[1].id);
        assert_eq!(ToolAnswer::read(r#"{"response": "Hello"}"#), ToolAnswer::Text("Hello".into()));
        assert_eq!(
            ToolAnswer::read(r#"{"tool_calls": [{"na"#),
            ToolAnswer::Text(r#"{"tool_calls": [{"na"#.into())
        );
    }

    #[test]
    fn the_instructions_join_the_first_system_message_or_open_the_conversation() {
        let tools = ToolUse::from_openai(Some(&weather()), None, None).unwrap().unwrap();
        let mut messages: RVec<ChatMessage> =
            vec![ChatMessage { role: "user".into(), content: "hi".into() }].into();
        tools.instruct(&mut messages);
        assert_eq!(messages[0].role.as_str(), "system");
        assert!(messages[0].content.contains("get_weather"));
        let mut messages: RVec<ChatMessage> =
            vec![ChatMessage { role: "system".into(), content: "Be brief.".into() }].into();
        tools.instruct(&mut messages);
        assert_eq!(messages.len(), 1);
        assert!(messages[0].content.starts_with("Be brief.\n\nYou can call these tools"));
    }

    #[test]
    fn calls_and_their_results_go_back_as_json_turns_naming_each_tool() {
        let user =
            |text: &str| Turn::Message(ChatMessage { role: "user".into(), content: text.into() });
        let messages = conversation(vec![
            user("Weather in Paris and the time?"),
            Turn::Calls(vec![
                ("c1".into(), "get_weather".into(), json!({ "city": "Paris" })),
                ("c2".into(), "get_time".into(), json!({})),
            ]),
            Turn::Result { id: Some("c1".into()), name: None, content: "sunny".into() },
            Turn::Result { id: None, name: Some("get_time".into()), content: "noon".into() },
        ]);
        let roles: Vec<&str> = messages.iter().map(|message| message.role.as_str()).collect();
        assert_eq!(roles, ["user", "assistant", "user"]);
        let calls: Value = serde_json::from_str(&messages[1].content).unwrap();
        assert_eq!(
            calls["tool_calls"][0],
            json!({ "name": "get_weather", "arguments": { "city": "Paris" } })
        );
        let results: Value = serde_json::from_str(&messages[2].content).unwrap();
        assert_eq!(
            results["tool_results"],
            json!([
                { "name": "get_weather", "content": "sunny" },
                { "name": "get_time", "content": "noon" },
            ])
        );
    }

    fn hermes() -> ToolFormat {
        let hermes = FAMILIES.iter().find(|family| family.name == "hermes").unwrap();
        ToolFormat::Family(hermes)
    }

    #[test]
    fn in_a_family_format_calls_and_results_are_messages_the_template_renders() {
        let user =
            |text: &str| Turn::Message(ChatMessage { role: "user".into(), content: text.into() });
        let tools = ToolUse::from_openai(Some(&weather()), None, None).unwrap().unwrap();
        let chat = chat(
            vec![
                user("Weather in Paris?"),
                Turn::Calls(vec![("c1".into(), "get_weather".into(), json!({ "city": "Paris" }))]),
                Turn::Result { id: Some("c1".into()), name: None, content: "sunny".into() },
            ],
            Some(&tools.in_format(hermes())),
            hermes(),
        );
        let roles: Vec<&str> = chat.messages.iter().map(|message| message.role.as_str()).collect();
        assert_eq!(roles, ["user", "assistant", "tool"]);
        assert_eq!(chat.message_extras[0], "");
        let calls: Value = serde_json::from_str(&chat.message_extras[1]).unwrap();
        assert_eq!(
            calls["tool_calls"][0],
            json!({ "id": "c1", "type": "function", "function": { "name": "get_weather", "arguments": { "city": "Paris" } } })
        );
        let result: Value = serde_json::from_str(&chat.message_extras[2]).unwrap();
        assert_eq!(result, json!({ "tool_call_id": "c1", "name": "get_weather" }));
        let listed: Value = serde_json::from_str(&chat.tools).unwrap();
        assert_eq!(listed[0]["function"]["name"], "get_weather");
        assert!(chat.grammar.contains("<tool_call>") && chat.grammar.contains("REPLY"));
    }

    #[test]
    fn in_the_generic_format_the_tools_are_described_and_nothing_goes_to_the_template() {
        let tools = ToolUse::from_openai(Some(&weather()), None, None).unwrap().unwrap();
        let user = Turn::Message(ChatMessage { role: "user".into(), content: "hi".into() });
        let chat = chat(vec![user], Some(&tools), ToolFormat::Generic);
        assert!(chat.messages[0].content.contains("You can call these tools"));
        assert!(chat.message_extras.is_empty() && chat.tools.is_empty());
        assert!(chat.grammar.starts_with("start: %json"));
    }

    #[test]
    fn a_required_call_in_a_family_format_leaves_no_reply_and_names_only_the_chosen_tool() {
        let named = json!({ "type": "function", "function": { "name": "get_time" } });
        let tools = ToolUse::from_openai(Some(&weather()), Some(&named), Some(false))
            .unwrap()
            .unwrap()
            .in_format(hermes());
        let grammar = tools.grammar();
        assert!(!grammar.contains("REPLY") && grammar.contains("calls: call\n"), "{grammar}");
        assert!(grammar.contains(r#""const":"get_time""#) && !grammar.contains("get_weather"));
    }

    #[test]
    fn parallel_calls_in_a_family_format_read_as_calls_and_other_text_as_a_reply() {
        let tools = ToolUse::from_openai(Some(&weather()), None, None)
            .unwrap()
            .unwrap()
            .in_format(hermes());
        let answer = tools.read(
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>",
        );
        let ToolAnswer::Calls(calls) = answer else { panic!("{answer:?}") };
        let names: Vec<&str> = calls.iter().map(|call| call.name.as_str()).collect();
        assert_eq!(names, ["get_weather", "get_time"]);
        assert_eq!(calls[0].arguments, json!({ "city": "Paris" }));
        assert_eq!(tools.read("Sunny."), ToolAnswer::Text("Sunny.".into()));
        let cut = "<tool_call>\n{\"name\": \"get_wea";
        assert_eq!(tools.read(cut), ToolAnswer::Text(cut.into()));
    }
}
