//! Chat templates: the Jinja template a GGUF file carries in `tokenizer.chat_template`,
//! rendered with minijinja plus its Python-compatibility methods (`.strip()`,
//! `.startswith()`, …) that Hugging Face templates call. Every engine renders chats
//! here, with the same fallback for files without a template, so one request is the
//! same prompt on every backend.
//!
//! A request's tools and its messages' tool calls and results reach the template as
//! Hugging Face's `apply_chat_template` hands them over: `tools` as OpenAI's list, each
//! message's extra fields (`tool_calls`, `tool_call_id`, `name`) beside its role and
//! content, a call's `arguments` as a mapping (templates write it with `tojson`, which
//! writes JSON as Python's `json.dumps` does).

use minijinja::value::Kwargs;
use minijinja::{context, Environment, Error as JinjaError, ErrorKind, Value};
use serde_json::{Map, Value as Json};

use crate::types::{ChatMessage, GenerateRequest};

/// Why a template could not be compiled or rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("chat template does not compile: {0}")]
    Compile(String),
    #[error("chat template failed to render: {0}")]
    Render(String),
    #[error("the request's {0} is not JSON of the shape the chat template reads")]
    Extras(&'static str),
}

/// A compiled chat template with the model's BOS and EOS texts.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

/// Turn formats for files that carry no template, by the start of their architecture's
/// name: the ones llama.cpp applies to such files.
const FAMILY_TEMPLATES: &[(&str, &str)] = &[("gemma", include_str!("templates/gemma.jinja"))];

/// ChatML: what llama-server uses for a file without a template whose family has no
/// turn format of its own.
const CHATML: &str = include_str!("templates/chatml.jinja");

/// The template a model renders chats with: the file's own (`stored`), else its
/// family's turn format, else ChatML.
pub fn template_source<'a>(stored: Option<&'a str>, architecture: &str) -> &'a str {
    stored.unwrap_or_else(|| {
        FAMILY_TEMPLATES
            .iter()
            .find(|(family, _)| architecture.starts_with(family))
            .map_or(CHATML, |(_, source)| source)
    })
}

/// `raise_exception(message)`, which templates call to refuse a conversation.
fn raise_exception(message: String) -> Result<String, JinjaError> {
    Err(JinjaError::new(ErrorKind::InvalidOperation, message))
}

/// JSON laid out as Python's `json.dumps` lays it out by default: `", "` between
/// items, `": "` after keys.
struct PythonSeparators;

impl serde_json::ser::Formatter for PythonSeparators {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.begin_array_value(writer, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

/// `value | tojson(indent=n)` as Hugging Face's templates get it: Python's separators,
/// keys in their order, no HTML escapes (minijinja's own filter escapes `<` and `>`,
/// which chat templates write into the prompt).
fn tojson(value: &Value, indent: Option<usize>, kwargs: Kwargs) -> Result<Value, JinjaError> {
    let indent = match indent {
        Some(indent) => Some(indent),
        None => kwargs.get::<Option<usize>>("indent")?,
    };
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let mut out = Vec::new();
    let written = match indent {
        Some(indent) => {
            let spaces = " ".repeat(indent);
            let formatter = serde_json::ser::PrettyFormatter::with_indent(spaces.as_bytes());
            serde::Serialize::serialize(
                value,
                &mut serde_json::Serializer::with_formatter(&mut out, formatter),
            )
        }
        None => serde::Serialize::serialize(
            value,
            &mut serde_json::Serializer::with_formatter(&mut out, PythonSeparators),
        ),
    };
    written.map_err(|error| {
        JinjaError::new(ErrorKind::InvalidOperation, "cannot serialize to JSON").with_source(error)
    })?;
    Ok(Value::from_safe_string(String::from_utf8_lossy(&out).into_owned()))
}

impl ChatTemplate {
    /// Compile `source`; `bos_token` and `eos_token` are the texts the template sees.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, ChatError> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", tojson);
        // Hugging Face renders with trim_blocks and lstrip_blocks on.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_template_owned("chat", source.to_string())
            .map_err(|error| ChatError::Compile(error.to_string()))?;
        Ok(Self { env, bos_token: bos_token.to_string(), eos_token: eos_token.to_string() })
    }

    /// Render a conversation; `add_generation_prompt` appends the assistant's header.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let messages: Vec<Json> =
            messages.iter().map(|message| message_json(message, Map::new())).collect();
        self.render_json(messages, None, add_generation_prompt)
    }

    /// Render a request's chat for the model to answer: its messages with their extra
    /// fields, and its tools.
    pub fn render_request(&self, request: &GenerateRequest) -> Result<String, ChatError> {
        let extras = |text: &str| match text {
            "" => Ok(Map::new()),
            text => match serde_json::from_str(text) {
                Ok(Json::Object(fields)) => Ok(fields),
                _ => Err(ChatError::Extras("message_extras")),
            },
        };
        if !request.message_extras.is_empty()
            && request.message_extras.len() != request.messages.len()
        {
            return Err(ChatError::Extras("message_extras"));
        }
        let messages = request
            .messages
            .iter()
            .enumerate()
            .map(|(at, message)| {
                let fields =
                    request.message_extras.get(at).map_or(Ok(Map::new()), |text| extras(text))?;
                Ok(message_json(message, fields))
            })
            .collect::<Result<Vec<_>, ChatError>>()?;
        let tools = match request.tools.as_str() {
            "" => None,
            text => match serde_json::from_str(text) {
                Ok(tools @ Json::Array(_)) => Some(tools),
                _ => return Err(ChatError::Extras("tools")),
            },
        };
        self.render_json(messages, tools, true)
    }

    fn render_json(
        &self,
        messages: Vec<Json>,
        tools: Option<Json>,
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let template =
            self.env.get_template("chat").map_err(|error| ChatError::Render(error.to_string()))?;
        template
            .render(context! {
                messages => Value::from_serialize(&messages),
                tools => tools.map(|tools| Value::from_serialize(&tools)),
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
            })
            .map_err(|error| ChatError::Render(error.to_string()))
    }
}

/// A message as the template reads it: role and content, then its extra fields.
fn message_json(message: &ChatMessage, extras: Map<String, Json>) -> Json {
    let mut fields = Map::new();
    fields.insert("role".into(), message.role.as_str().into());
    fields.insert("content".into(), message.content.as_str().into());
    fields.extend(extras);
    Json::Object(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(role: &str, content: &str) -> ChatMessage {
        ChatMessage { role: role.into(), content: content.into() }
    }

    #[test]
    fn python_string_methods_and_special_tokens_are_available() {
        let template = ChatTemplate::new(
            "{{ bos_token }}{% for m in messages %}[{{ m.role.upper() }}]{{ m.content.strip() }}{% endfor %}{% if add_generation_prompt %}>{% endif %}{{ eos_token }}",
            "<s>",
            "</s>",
        )
        .unwrap();
        let text = template.render(&[message("user", "  hi  ")], true).unwrap();
        assert_eq!(text, "<s>[USER]hi></s>");
    }

    #[test]
    fn raise_exception_in_a_template_is_a_render_error() {
        let template =
            ChatTemplate::new("{{ raise_exception('no system role') }}", "", "").unwrap();
        let error = template.render(&[], false).unwrap_err();
        assert!(error.to_string().contains("no system role"));
    }

    #[test]
    fn a_file_without_a_template_gets_its_family_turn_format_else_chatml() {
        let chat = [message("system", "Be brief."), message("user", "Hi")];
        let render = |architecture| {
            let source = template_source(None, architecture);
            ChatTemplate::new(source, "<bos>", "<eos>").unwrap().render(&chat, true).unwrap()
        };
        assert!(render("gemma3").starts_with("<start_of_turn>user\nBe brief.\n\nHi"));
        assert_eq!(
            render("qwen2"),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(template_source(Some("{{ x }}"), "gemma3"), "{{ x }}");
    }

    #[test]
    fn the_gemma_turn_format_renders_turns_as_llama_cpp_does() {
        let template =
            ChatTemplate::new(template_source(None, "gemma3"), "<bos>", "<eos>").unwrap();
        let text = template
            .render(
                &[
                    message("system", "Be brief."),
                    message("user", " Hi "),
                    message("assistant", "Hello."),
                    message("user", "Capital of France?"),
                ],
                true,
            )
            .unwrap();
        assert_eq!(
            text,
            "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n\
             <start_of_turn>user\nCapital of France?<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    /// Qwen2.5's template, which reads tools, calls and results (Hermes' format).
    const QWEN25: &str = include_str!("../../../tests/data/templates/qwen2.5-tools.jinja");

    #[test]
    fn tools_calls_and_results_reach_the_template_as_hugging_face_hands_them_over() {
        let template = ChatTemplate::new(QWEN25, "", "<|im_end|>").unwrap();
        let request = GenerateRequest {
            messages: vec![
                message("user", "Weather in Paris?"),
                message("assistant", ""),
                message("tool", "sunny <b>"),
            ]
            .into(),
            message_extras: vec![
                "".into(),
                r#"{"tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}"#.into(),
                r#"{"tool_call_id": "c1", "name": "get_weather"}"#.into(),
            ]
            .into(),
            tools: r#"[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]"#.into(),
            ..GenerateRequest::default()
        };
        let text = template.render_request(&request).unwrap();
        assert!(
            text.contains("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\"}}}\n</tools>"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n\
                 <|im_start|>user\n<tool_response>\nsunny <b>\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_request_without_tools_renders_as_a_plain_chat() {
        let template = ChatTemplate::new(QWEN25, "", "").unwrap();
        let request = GenerateRequest {
            messages: vec![message("user", "Hi")].into(),
            ..GenerateRequest::default()
        };
        assert_eq!(
            template.render_request(&request).unwrap(),
            template.render(&request.messages, true).unwrap()
        );
        assert!(!template.render_request(&request).unwrap().contains("<tools>"));
    }

    #[test]
    fn extras_that_are_not_json_objects_are_refused_by_name() {
        let template = ChatTemplate::new(QWEN25, "", "").unwrap();
        let request = GenerateRequest {
            messages: vec![message("user", "Hi")].into(),
            message_extras: vec!["[1]".into()].into(),
            ..GenerateRequest::default()
        };
        let error = template.render_request(&request).unwrap_err();
        assert!(error.to_string().contains("message_extras"), "{error}");
    }

    #[test]
    fn a_template_with_a_syntax_error_does_not_compile() {
        assert!(matches!(ChatTemplate::new("{% for %}", "", ""), Err(ChatError::Compile(_))));
    }
}
