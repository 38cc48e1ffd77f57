//! A message's content as Anthropic's Messages API and OpenAI's Responses API write it:
//! a string, or a list of typed parts of which only the text kinds are supported.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::params::refuse_fields;
use super::ApiError;

/// A string, or a list of typed parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

/// One typed part (`{"type": "text", "text": …}`), its other fields kept so that what
/// hearth does not know is refused by name.
#[derive(Debug, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: String,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// What a text part may be and carry in one API.
pub struct TextParts {
    /// The part types that are text (`text`; `input_text` and `output_text`).
    pub kinds: &'static [&'static str],
    /// Fields of a text part that change nothing about the answer.
    pub unused: &'static [&'static str],
}

impl Content {
    /// The text, its parts joined by newlines; a part of another type, or with a field
    /// that is not `rules.unused`, is refused naming `field`.
    pub fn text(self, rules: &TextParts, field: &str) -> Result<String, ApiError> {
        let parts = match self {
            Content::Text(text) => return Ok(text),
            Content::Parts(parts) => parts,
        };
        let mut texts = Vec::with_capacity(parts.len());
        for part in parts {
            if !rules.kinds.contains(&part.kind.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "`{field}` parts of type `{}` are not supported by hearth yet; send text",
                    part.kind
                )));
            }
            refuse_fields(&part.other, &[], rules.unused, &format!("{field}[]."))?;
            texts.push(part.text);
        }
        Ok(texts.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Content, TextParts};

    const RULES: TextParts = TextParts { kinds: &["text"], unused: &["cache_control"] };

    fn content(value: serde_json::Value) -> Content {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn text_parts_are_joined_and_their_unused_fields_accepted() {
        let parts = content(json!([
            { "type": "text", "text": "a", "cache_control": { "type": "ephemeral" } },
            { "type": "text", "text": "b" },
        ]));
        assert_eq!(parts.text(&RULES, "content").unwrap(), "a\nb");
        assert_eq!(content(json!("plain")).text(&RULES, "content").unwrap(), "plain");
    }

    #[test]
    fn another_part_type_or_an_unknown_field_is_refused_by_name() {
        let image = content(json!([{ "type": "image", "source": {} }]));
        assert!(image.text(&RULES, "content").unwrap_err().message.contains("`image`"));
        let extra = content(json!([{ "type": "text", "text": "a", "weight": 2 }]));
        assert!(extra.text(&RULES, "content").unwrap_err().message.contains("`content[].weight`"));
    }
}
