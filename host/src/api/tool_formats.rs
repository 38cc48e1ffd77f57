//! Tool calls in the model's own format. A chat template that knows tools belongs to a
//! family, told apart by what its source says ([`FAMILIES`]); each family writes calls
//! its own way, which the grammar holds the answer to and the reader reads back. A
//! template of no family gets hearth's generic JSON answer (see [`super::tools`]).
//!
//! The table describes each family once: the markers that identify its templates, the
//! text around the calls, and the key of a call's arguments. Grammar, whole answer and
//! streamed answer all follow from it.

use serde_json::Value;

use super::structured::compact;

/// How one family of chat templates writes an answer of tool calls: `open`, then each
/// call as `call_open` + `{"name": …, "<arguments>": {…}}` + `call_close`, with
/// `separator` between calls, then `close`.
#[derive(Debug, PartialEq, Eq)]
pub struct Family {
    /// The family's name, for logs and tests.
    pub name: &'static str,
    /// Texts every template of the family holds.
    markers: &'static [&'static str],
    open: &'static str,
    call_open: &'static str,
    call_close: &'static str,
    /// Between two calls; none where the family writes one call per answer.
    separator: Option<&'static str>,
    close: &'static str,
    /// The key of a call's arguments.
    pub arguments: &'static str,
}

/// The families hearth writes calls for, in the order they are tried.
pub const FAMILIES: &[Family] = &[
    // Hermes 2 Pro, Qwen 2.5 and 3, and the many models trained on their format.
    Family {
        name: "hermes",
        markers: &["<tool_call>"],
        open: "",
        call_open: "<tool_call>\n",
        call_close: "\n</tool_call>",
        separator: Some("\n"),
        close: "",
        arguments: "arguments",
    },
    // Llama 3.1, 3.2 and 3.3: one JSON call, its arguments under `parameters`.
    Family {
        name: "llama3",
        markers: &["<|start_header_id|>", "\"parameters\""],
        open: "",
        call_open: "",
        call_close: "",
        separator: None,
        close: "",
        arguments: "parameters",
    },
];

/// How a model's tool calls are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToolFormat {
    /// hearth's generic JSON answer, with the tools described in a system message: for
    /// templates that do not know tools.
    #[default]
    Generic,
    /// The format of the template's own family, with the tools handed to the template.
    Family(&'static Family),
}

/// What a prefix of an answer in a family's format is.
#[derive(Debug, PartialEq)]
pub enum Written {
    /// Too short to tell.
    Undecided,
    /// A reply in words: all of it.
    Reply,
    /// Calls: the prefix rewritten as a prefix of the generic answer,
    /// `{"tool_calls": [{"name": …, "<arguments>": …}, …`.
    Calls(String),
}

/// `text` as a Lark string literal.
fn literal(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

impl ToolFormat {
    /// The format of a model whose chat template is `source`; none (a file without a
    /// template) is generic.
    pub fn of_template(source: Option<&str>) -> Self {
        let Some(source) = source else { return Self::Generic };
        FAMILIES
            .iter()
            .find(|family| family.markers.iter().all(|marker| source.contains(marker)))
            .map_or(Self::Generic, Self::Family)
    }
}

impl Family {
    /// Whether one answer may hold several calls.
    pub fn parallel(&self) -> bool {
        self.separator.is_some()
    }

    /// The text that begins every answer of calls.
    fn start(&self) -> String {
        format!("{}{}{{", self.open, self.call_open)
    }

    /// A Lark grammar for answers of calls each under one of `calls` (JSON schemas of
    /// one call), several when `parallel`, or (with `reply`) a reply in words, which may
    /// not begin as calls do.
    pub fn grammar(&self, calls: &[Value], parallel: bool, reply: bool) -> String {
        let schema = compact(&serde_json::json!({ "anyOf": calls }));
        let parts = |parts: &[String]| {
            parts
                .iter()
                .filter(|part| part.as_str() != "\"\"")
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        };
        let call =
            parts(&[literal(self.call_open), format!("%json {schema}"), literal(self.call_close)]);
        let repeated = match self.separator {
            Some(separator) if parallel => format!("call ({} call)*", literal(separator)),
            _ => "call".to_string(),
        };
        let calls = parts(&[literal(self.open), repeated, literal(self.close)]);
        let first = self.start().chars().next().expect("a call begins with text");
        let reply = if reply {
            format!(" | REPLY\nREPLY: /[^{}](.|\\n)*/", regex_escaped(first))
        } else {
            String::new()
        };
        format!("start: calls{reply}\ncalls: {calls}\ncall: {call}\n")
    }

    /// What a prefix of an answer is, as [`Written`] says.
    pub fn read_prefix(&self, text: &str) -> Written {
        let start = self.start();
        if text.len() < start.len() && start.starts_with(text) {
            return Written::Undecided;
        }
        let Some(body) = text.strip_prefix(self.open) else { return Written::Reply };
        let Some(body) = body.strip_prefix(self.call_open) else { return Written::Reply };
        let mut body = match self.separator {
            Some(separator) => {
                body.replace(&format!("{}{separator}{}", self.call_close, self.call_open), ", ")
            }
            None => body.to_string(),
        };
        // What follows the last call (its close, the answer's close), or a piece of it.
        let after = format!("{}{}", self.call_close, self.close);
        let between =
            format!("{}{}{}", self.call_close, self.separator.unwrap_or_default(), self.call_open);
        let cut = [after, between]
            .iter()
            .filter_map(|tail| (1..=tail.len()).rev().find(|&n| body.ends_with(&tail[..n])))
            .max()
            .unwrap_or(0);
        body.truncate(body.len() - cut);
        Written::Calls(format!("{{\"tool_calls\": [{body}"))
    }
}

/// `char` as it stands in a regex character class.
fn regex_escaped(char: char) -> String {
    match char {
        '\\' | ']' | '[' | '^' | '-' | '/' => format!("\\{char}"),
        char => char.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const QWEN25: &str = include_str!("../../../tests/data/templates/qwen2.5-tools.jinja");

    fn family(name: &str) -> &'static Family {
        FAMILIES.iter().find(|family| family.name == name).unwrap()
    }

    #[test]
    fn a_template_is_of_the_first_family_whose_markers_it_holds_else_generic() {
        assert_eq!(ToolFormat::of_template(Some(QWEN25)), ToolFormat::Family(family("hermes")));
        let llama = r#"<|start_header_id|>{{ 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}"#;
        assert_eq!(ToolFormat::of_template(Some(llama)), ToolFormat::Family(family("llama3")));
        let chatml = "{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}";
        assert_eq!(ToolFormat::of_template(Some(chatml)), ToolFormat::Generic);
        assert_eq!(ToolFormat::of_template(None), ToolFormat::Generic);
    }

    #[test]
    fn a_hermes_grammar_wraps_each_call_in_tags_and_repeats_them_only_when_parallel() {
        let calls = [json!({ "type": "object" })];
        let hermes = family("hermes");
        let grammar = hermes.grammar(&calls, true, false);
        assert!(grammar.starts_with("start: calls\ncalls: call (\"\\n\" call)*\n"), "{grammar}");
        assert!(grammar.contains("call: \"<tool_call>\\n\" %json {"), "{grammar}");
        assert!(grammar.ends_with(" \"\\n</tool_call>\"\n"), "{grammar}");
        assert!(hermes.grammar(&calls, false, false).contains("calls: call\n"));
        let auto = hermes.grammar(&calls, true, true);
        assert!(auto.starts_with("start: calls | REPLY\nREPLY: /[^<](.|\\n)*/\n"), "{auto}");
    }

    #[test]
    fn a_llama3_grammar_is_one_bare_json_call() {
        let grammar = family("llama3").grammar(&[json!({ "type": "object" })], true, true);
        assert!(grammar.contains("calls: call\ncall: %json {"), "{grammar}");
        assert!(grammar.contains("REPLY: /[^{](.|\\n)*/"), "{grammar}");
    }

    #[test]
    fn hermes_calls_read_as_the_generic_answer_as_far_as_they_go() {
        let hermes = family("hermes");
        assert_eq!(hermes.read_prefix("<tool_"), Written::Undecided);
        assert_eq!(hermes.read_prefix("Sunny"), Written::Reply);
        let two = "<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": {\"x\": \"</tool_call>\"}}\n</tool";
        assert_eq!(
            hermes.read_prefix(two),
            Written::Calls(
                "{\"tool_calls\": [{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\", \"arguments\": {\"x\": \"</tool_call>\"}}".into()
            )
        );
        let between = "<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool";
        assert_eq!(
            hermes.read_prefix(between),
            Written::Calls("{\"tool_calls\": [{\"name\": \"a\", \"arguments\": {}}".into())
        );
    }

    #[test]
    fn a_llama3_call_reads_as_the_generic_answer() {
        let llama = family("llama3");
        assert_eq!(llama.read_prefix(""), Written::Undecided);
        assert_eq!(
            llama.read_prefix("{\"name\": \"a\", \"parameters\": {\"x\": 1}}"),
            Written::Calls(
                "{\"tool_calls\": [{\"name\": \"a\", \"parameters\": {\"x\": 1}}".into()
            )
        );
    }
}
