//! A tool-using answer read as it is generated, so each API can stream it as its own
//! deltas: a reply's words as they come, each call's name as soon as it is whole, and its
//! arguments piece by piece. The grammar holds the answer to one shape (see
//! [`super::tools`]), so a prefix of it says which of the two it is and how far each
//! part has got; [`AnswerReader`] reads the prefix again after every piece and reports
//! only what is new. Calls in a template family's format are read as the generic JSON
//! they rewrite to ([`super::tool_formats`]).

use serde_json::Value;

use super::tool_formats::{ToolFormat, Written};
use super::tools::{new_call_id, ToolAnswer, ToolCall};

/// Something new in the answer.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerEvent {
    /// More of a reply in words.
    Text(String),
    /// A call began: its place among the answer's calls, its id and the tool's name.
    CallStarted { index: usize, id: String, name: String },
    /// More of a call's arguments, as JSON text; a call's pieces join into its arguments.
    Arguments { index: usize, json: String },
    /// A call's arguments are whole.
    CallFinished { index: usize },
}

/// A call as far as the prefix goes.
#[derive(Debug, Default, PartialEq)]
struct PartialCall {
    /// The tool's name, once its string is closed.
    name: Option<String>,
    /// The arguments' JSON text so far, and whether the value is closed.
    arguments: Option<(String, bool)>,
}

/// What a prefix of the answer is.
#[derive(Debug, PartialEq)]
enum Prefix {
    /// Too little to say, or not the answer's shape (a model run without the grammar).
    Undecided,
    /// A reply in words, decoded as far as its escapes are whole.
    Reply(String),
    Calls(Vec<PartialCall>),
}

/// What has been reported of one call.
struct ReportedCall {
    id: String,
    name: String,
    arguments: String,
    finished: bool,
}

/// Reads an answer piece by piece; see the module's overview.
#[derive(Default)]
pub struct AnswerReader {
    format: ToolFormat,
    held: String,
    reply: usize,
    calls: Vec<ReportedCall>,
}

impl AnswerReader {
    /// A reader of an answer in `format`.
    pub fn new(format: ToolFormat) -> Self {
        Self { format, ..Self::default() }
    }

    /// What the answer so far is.
    fn prefix(&self) -> Prefix {
        match self.format {
            ToolFormat::Generic => read_prefix(&self.held, "arguments"),
            ToolFormat::Family(family) => match family.read_prefix(&self.held) {
                Written::Undecided => Prefix::Undecided,
                Written::Reply => Prefix::Reply(self.held.clone()),
                Written::Calls(calls) => read_prefix(&calls, family.arguments),
            },
        }
    }

    /// Take the next piece of the answer and say what it added.
    pub fn push(&mut self, piece: &str) -> Vec<AnswerEvent> {
        self.held.push_str(piece);
        let mut events = Vec::new();
        match self.prefix() {
            Prefix::Undecided => {}
            Prefix::Reply(text) => {
                if text.len() > self.reply {
                    events.push(AnswerEvent::Text(text[self.reply..].to_string()));
                    self.reply = text.len();
                }
            }
            Prefix::Calls(calls) => {
                for (index, call) in calls.into_iter().enumerate() {
                    if index == self.calls.len() {
                        let Some(name) = call.name else { break };
                        let id = new_call_id();
                        events.push(AnswerEvent::CallStarted {
                            index,
                            id: id.clone(),
                            name: name.clone(),
                        });
                        self.calls.push(ReportedCall {
                            id,
                            name,
                            arguments: String::new(),
                            finished: false,
                        });
                    }
                    let reported = &mut self.calls[index];
                    let Some((json, whole)) = call.arguments else { continue };
                    if json.len() > reported.arguments.len() {
                        let more = json[reported.arguments.len()..].to_string();
                        events.push(AnswerEvent::Arguments { index, json: more });
                        reported.arguments = json;
                    }
                    if whole && !reported.finished {
                        reported.finished = true;
                        events.push(AnswerEvent::CallFinished { index });
                    }
                }
            }
        }
        events
    }

    /// The answer is over: what is left to report, and the whole answer with the ids
    /// the calls were reported under. Text that never took the answer's shape is
    /// reported whole as a reply, as [`ToolAnswer::read`] would read it.
    pub fn finish(self) -> (Vec<AnswerEvent>, ToolAnswer) {
        if self.calls.is_empty() {
            return match self.prefix() {
                Prefix::Reply(text) => (Vec::new(), ToolAnswer::Text(text)),
                _ if self.held.is_empty() => (Vec::new(), ToolAnswer::Text(String::new())),
                _ => (vec![AnswerEvent::Text(self.held.clone())], ToolAnswer::Text(self.held)),
            };
        }
        let calls = self
            .calls
            .into_iter()
            .map(|call| {
                let arguments =
                    serde_json::from_str(&call.arguments).unwrap_or(Value::String(call.arguments));
                ToolCall { id: call.id, name: call.name, arguments }
            })
            .collect();
        (Vec::new(), ToolAnswer::Calls(calls))
    }
}

/// Why a scan stopped short.
enum Stop {
    /// The prefix ends here.
    End,
    /// Not the answer's shape.
    Unexpected,
}

/// A cursor over an answer's prefix.
struct Scanner<'a> {
    text: &'a str,
    at: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Result<u8, Stop> {
        self.text.as_bytes().get(self.at).copied().ok_or(Stop::End)
    }

    fn skip_space(&mut self) {
        while self.peek().is_ok_and(|byte| byte.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    /// Skip spaces, then consume `byte`.
    fn expect(&mut self, byte: u8) -> Result<(), Stop> {
        self.skip_space();
        if self.peek()? != byte {
            return Err(Stop::Unexpected);
        }
        self.at += 1;
        Ok(())
    }

    /// A string from its opening quote: what its whole escapes decode to so far, and
    /// whether it is closed.
    fn string(&mut self) -> Result<(String, bool), Stop> {
        self.expect(b'"')?;
        let mut decoded = String::new();
        loop {
            let rest = &self.text[self.at..];
            let Some(next) = rest.find(['"', '\\']) else {
                decoded.push_str(rest);
                self.at = self.text.len();
                return Ok((decoded, false));
            };
            decoded.push_str(&rest[..next]);
            self.at += next;
            if rest.as_bytes()[next] == b'"' {
                self.at += 1;
                return Ok((decoded, true));
            }
            match escape(&self.text[self.at..]) {
                Some((char, length)) => {
                    decoded.push(char);
                    self.at += length;
                }
                None => return Ok((decoded, false)),
            }
        }
    }

    /// A closed string, or [`Stop::End`].
    fn whole_string(&mut self) -> Result<String, Stop> {
        match self.string()? {
            (text, true) => Ok(text),
            (_, false) => Err(Stop::End),
        }
    }

    /// Any JSON value, unread: its text so far and whether it is closed.
    fn value(&mut self) -> (String, bool) {
        self.skip_space();
        let start = self.at;
        let bytes = self.text.as_bytes();
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        while let Some(&byte) = bytes.get(self.at) {
            if in_string {
                match byte {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
            } else {
                match byte {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth == 0 => break,
                    b'}' | b']' => depth -= 1,
                    b',' if depth == 0 => break,
                    _ if depth == 0 && byte.is_ascii_whitespace() && self.at > start => break,
                    _ => {}
                }
            }
            self.at += 1;
            if depth == 0 && !in_string && self.at > start && matches!(byte, b'}' | b']' | b'"') {
                return (self.text[start..self.at].to_string(), true);
            }
        }
        let whole = self.at < bytes.len();
        (self.text[start..self.at].to_string(), whole)
    }

    /// The answer's calls from the `[` of `tool_calls`, each as far as it goes, their
    /// arguments under the key `arguments`.
    fn calls(&mut self, calls: &mut Vec<PartialCall>, arguments: &str) -> Result<(), Stop> {
        self.expect(b'[')?;
        loop {
            self.skip_space();
            match self.peek()? {
                b']' => return Ok(()),
                b',' if !calls.is_empty() => self.at += 1,
                _ if calls.is_empty() => {}
                _ => return Err(Stop::Unexpected),
            }
            self.expect(b'{')?;
            calls.push(PartialCall::default());
            let call = calls.last_mut().expect("just pushed");
            loop {
                self.skip_space();
                match self.peek()? {
                    b'}' => {
                        self.at += 1;
                        break;
                    }
                    b',' => self.at += 1,
                    _ => {}
                }
                let key = self.whole_string()?;
                self.expect(b':')?;
                match key.as_str() {
                    "name" => call.name = Some(self.whole_string()?),
                    key if key == arguments => {
                        let (json, whole) = self.value();
                        call.arguments = Some((json, whole));
                        if !whole {
                            return Err(Stop::End);
                        }
                    }
                    _ => return Err(Stop::Unexpected),
                }
            }
        }
    }
}

/// The character a JSON escape at the start of `text` stands for, and the escape's
/// length; `None` while the escape is cut off (or is not one).
fn escape(text: &str) -> Option<(char, usize)> {
    let bytes = text.as_bytes();
    let simple = match bytes.get(1)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let unit = |at: usize| u32::from_str_radix(text.get(at..at + 4)?, 16).ok();
            let high = unit(2)?;
            if !(0xd800..0xdc00).contains(&high) {
                return Some((char::from_u32(high).unwrap_or('\u{fffd}'), 6));
            }
            if text.get(6..8)? != "\\u" {
                return Some(('\u{fffd}', 6));
            }
            let low = unit(8)?;
            let code = 0x10000 + ((high - 0xd800) << 10) + (low.wrapping_sub(0xdc00) & 0x3ff);
            return Some((char::from_u32(code).unwrap_or('\u{fffd}'), 12));
        }
        _ => return None,
    };
    Some((simple, 2))
}

/// What `text`, a prefix of a generic answer whose calls' arguments are under the key
/// `arguments`, is so far.
fn read_prefix(text: &str, arguments: &str) -> Prefix {
    let mut scanner = Scanner { text, at: 0 };
    let Ok(key) = scanner.expect(b'{').and_then(|()| scanner.whole_string()) else {
        return Prefix::Undecided;
    };
    if scanner.expect(b':').is_err() {
        return Prefix::Undecided;
    }
    match key.as_str() {
        "response" => match scanner.string() {
            Ok((reply, _)) => Prefix::Reply(reply),
            Err(_) => Prefix::Undecided,
        },
        "tool_calls" => {
            let mut calls = Vec::new();
            match scanner.calls(&mut calls, arguments) {
                Err(Stop::Unexpected) => Prefix::Undecided,
                Ok(()) | Err(Stop::End) => Prefix::Calls(calls),
            }
        }
        _ => Prefix::Undecided,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tool_formats::FAMILIES;
    use super::*;

    /// Every event of `answer` fed to a reader one character at a time, then what
    /// finishing it adds, and the whole answer.
    fn read_by_characters(answer: &str) -> (Vec<AnswerEvent>, ToolAnswer) {
        read_in_format(answer, ToolFormat::Generic)
    }

    /// [`read_by_characters`] for an answer in `format`.
    fn read_in_format(answer: &str, format: ToolFormat) -> (Vec<AnswerEvent>, ToolAnswer) {
        let mut reader = AnswerReader::new(format);
        let mut events: Vec<AnswerEvent> = Vec::new();
        for char in answer.chars() {
            for event in reader.push(&char.to_string()) {
                match (events.last_mut(), event) {
                    (Some(AnswerEvent::Text(text)), AnswerEvent::Text(more)) => {
                        text.push_str(&more);
                    }
                    (
                        Some(AnswerEvent::Arguments { index, json }),
                        AnswerEvent::Arguments { index: next, json: more },
                    ) if *index == next => {
                        json.push_str(&more);
                    }
                    (_, event) => events.push(event),
                }
            }
        }
        let (rest, whole) = reader.finish();
        events.extend(rest);
        (events, whole)
    }

    #[test]
    fn a_reply_streams_its_decoded_words_and_no_json() {
        let answer = r#"{"response": "It is \"sunny\" in Paris \u00e9\ud83d\ude00\n"}"#;
        let (events, whole) = read_by_characters(answer);
        let text = "It is \"sunny\" in Paris é😀\n".to_string();
        assert_eq!(events, vec![AnswerEvent::Text(text.clone())]);
        assert_eq!(whole, ToolAnswer::Text(text));
    }

    #[test]
    fn calls_stream_their_names_then_arguments_that_join_into_the_whole_call() {
        let answer = r#"{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Pa}ris", "days": [1, 2]}}, {"name": "get_time", "arguments": {}}]}"#;
        let (events, whole) = read_by_characters(answer);
        let ToolAnswer::Calls(calls) = whole else { panic!("calls expected, got {whole:?}") };
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].arguments, json!({ "city": "Pa}ris", "days": [1, 2] }));
        assert_eq!(calls[1].arguments, json!({}));
        assert_eq!(
            events,
            vec![
                AnswerEvent::CallStarted {
                    index: 0,
                    id: calls[0].id.clone(),
                    name: "get_weather".into()
                },
                AnswerEvent::Arguments {
                    index: 0,
                    json: r#"{"city": "Pa}ris", "days": [1, 2]}"#.into()
                },
                AnswerEvent::CallFinished { index: 0 },
                AnswerEvent::CallStarted {
                    index: 1,
                    id: calls[1].id.clone(),
                    name: "get_time".into()
                },
                AnswerEvent::Arguments { index: 1, json: "{}".into() },
                AnswerEvent::CallFinished { index: 1 },
            ]
        );
    }

    #[test]
    fn a_call_is_announced_before_its_arguments_are_whole() {
        let mut reader = AnswerReader::default();
        assert_eq!(reader.push(r#"{"tool_calls": [{"name": "get_wea"#), vec![]);
        let started = reader.push(r#"ther", "arguments": {"ci"#);
        assert!(
            matches!(&started[0], AnswerEvent::CallStarted { name, .. } if name == "get_weather")
        );
        assert_eq!(started[1], AnswerEvent::Arguments { index: 0, json: r#"{"ci"#.into() });
        assert_eq!(started.len(), 2);
    }

    #[test]
    fn an_answer_cut_inside_a_call_keeps_what_it_reported() {
        let (events, whole) =
            read_by_characters(r#"{"tool_calls": [{"name": "f", "arguments": {"a": 1"#);
        assert!(!events.contains(&AnswerEvent::CallFinished { index: 0 }));
        let ToolAnswer::Calls(calls) = whole else { panic!("calls expected") };
        assert_eq!(calls[0].arguments, json!(r#"{"a": 1"#));
    }

    #[test]
    fn text_that_never_takes_the_answers_shape_is_a_reply_reported_at_the_end() {
        let (events, whole) = read_by_characters("Sure! Here is the weather.");
        assert_eq!(events, vec![AnswerEvent::Text("Sure! Here is the weather.".into())]);
        assert_eq!(whole, ToolAnswer::Text("Sure! Here is the weather.".into()));
    }

    #[test]
    fn a_reply_cut_in_an_escape_waits_for_the_escape() {
        let mut reader = AnswerReader::default();
        assert_eq!(reader.push(r#"{"response": "a\u00"#), vec![AnswerEvent::Text("a".into())]);
        assert_eq!(reader.push(r#"e9"#), vec![AnswerEvent::Text("é".into())]);
    }

    fn family(name: &str) -> ToolFormat {
        let family = FAMILIES.iter().find(|family| family.name == name).unwrap();
        ToolFormat::Family(family)
    }

    /// The events of an answer with each call's id blanked, to compare two readings.
    fn without_ids(events: Vec<AnswerEvent>) -> Vec<AnswerEvent> {
        let blank = |event| match event {
            AnswerEvent::CallStarted { index, name, .. } => {
                AnswerEvent::CallStarted { index, id: String::new(), name }
            }
            event => event,
        };
        events.into_iter().map(blank).collect()
    }

    #[test]
    fn parallel_hermes_calls_stream_as_the_generic_ones_do() {
        let hermes = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Pa}ris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
        let generic = r#"{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Pa}ris"}}, {"name": "get_time", "arguments": {}}]}"#;
        let (events, whole) = read_in_format(hermes, family("hermes"));
        let (expected, _) = read_by_characters(generic);
        assert_eq!(without_ids(events), without_ids(expected));
        let ToolAnswer::Calls(calls) = whole else { panic!("calls expected, got {whole:?}") };
        let names: Vec<&str> = calls.iter().map(|call| call.name.as_str()).collect();
        assert_eq!(names, ["get_weather", "get_time"]);
    }

    #[test]
    fn a_reply_in_a_family_format_streams_as_it_comes() {
        let (events, whole) = read_in_format("It is sunny.", family("hermes"));
        assert_eq!(events, vec![AnswerEvent::Text("It is sunny.".into())]);
        assert_eq!(whole, ToolAnswer::Text("It is sunny.".into()));
    }

    #[test]
    fn a_llama3_call_streams_its_parameters_as_arguments() {
        let (events, whole) = read_in_format(
            r#"{"name": "get_weather", "parameters": {"city": "Oslo"}}"#,
            family("llama3"),
        );
        let ToolAnswer::Calls(calls) = whole else { panic!("calls expected, got {whole:?}") };
        assert_eq!(calls[0].arguments, json!({ "city": "Oslo" }));
        assert!(events
            .contains(&AnswerEvent::Arguments { index: 0, json: r#"{"city": "Oslo"}"#.into() }));
    }
}
