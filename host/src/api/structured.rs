//! Structured output: the shapes an answer may be asked to take — OpenAI's
//! `response_format` (and the Responses API's `text.format`), llama-server's
//! `json_schema`, Ollama's `format` and a raw `grammar` — become one grammar in
//! llguidance's Lark dialect, which the backend enforces token by token.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::ApiError;

/// OpenAI's `response_format`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaFormat },
}

/// `response_format.json_schema`: the schema with OpenAI's labels for it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSchemaFormat {
    pub schema: Option<Value>,
    /// The schema's name and description, which change nothing about the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// hearth always holds the output to the schema, strict or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// The Responses API's `text.format`: `response_format` with the schema's fields beside
/// its type.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TextFormat {
    Text,
    JsonObject,
    JsonSchema(JsonSchemaFormat),
}

impl From<TextFormat> for ResponseFormat {
    fn from(format: TextFormat) -> Self {
        match format {
            TextFormat::Text => Self::Text,
            TextFormat::JsonObject => Self::JsonObject,
            TextFormat::JsonSchema(json_schema) => Self::JsonSchema { json_schema },
        }
    }
}

/// Ollama's `format`: `"json"` for any JSON, or a schema; `""` asks for nothing.
pub fn ollama_format(format: &Value) -> Result<(Option<ResponseFormat>, Option<Value>), ApiError> {
    match format {
        Value::Null => Ok((None, None)),
        Value::String(text) if text.is_empty() => Ok((None, None)),
        Value::String(text) if text == "json" => Ok((Some(ResponseFormat::JsonObject), None)),
        Value::Object(_) => Ok((None, Some(format.clone()))),
        _ => Err(ApiError::bad_request(format!(
            "`format` must be \"json\" or a JSON schema object, got {format}"
        ))),
    }
}

/// What the output must be, however the request said it.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputShape {
    /// Any JSON object.
    JsonObject,
    /// JSON that a schema accepts.
    JsonSchema(Value),
    /// A grammar in llguidance's Lark dialect, as the client wrote it.
    Lark(String),
}

/// The schema key llguidance reads its JSON options from.
const GUIDANCE_OPTIONS: &str = "x-guidance";

impl OutputShape {
    /// OpenAI's `response_format`; `text` asks for nothing.
    pub fn from_response_format(format: &ResponseFormat) -> Result<Option<Self>, ApiError> {
        match format {
            ResponseFormat::Text => Ok(None),
            ResponseFormat::JsonObject => Ok(Some(Self::JsonObject)),
            ResponseFormat::JsonSchema { json_schema } => match &json_schema.schema {
                Some(schema) => Self::schema(schema, "response_format.json_schema.schema"),
                None => Err(ApiError::bad_request(
                    "`response_format.json_schema.schema` is required for a json_schema format",
                )),
            },
        }
    }

    /// A JSON schema the client sent in `field`: an object (or `true`, any JSON).
    pub fn schema(schema: &Value, field: &str) -> Result<Option<Self>, ApiError> {
        match schema {
            Value::Object(_) => Ok(Some(Self::JsonSchema(schema.clone()))),
            Value::Bool(true) => Ok(Some(Self::JsonSchema(json!({})))),
            _ => Err(ApiError::bad_request(format!("`{field}` must be a JSON schema object"))),
        }
    }

    /// The grammar the backend enforces.
    pub fn grammar(&self) -> String {
        match self {
            Self::JsonObject => json_grammar(&json!({ "type": "object" })),
            Self::JsonSchema(schema) => json_grammar(schema),
            Self::Lark(grammar) => grammar.clone(),
        }
    }
}

/// A Lark grammar whose whole sentence is JSON under `schema`, laid out compactly unless
/// the schema says otherwise.
pub fn json_grammar(schema: &Value) -> String {
    format!("start: %json {}", compact(schema))
}

/// `schema` as hearth holds output to it: laid out compactly with Python's separators,
/// unless it carries llguidance options of its own (with whitespace unbounded, a small
/// model can spend its whole budget on blank lines), and with its objects closed.
pub fn compact(schema: &Value) -> Value {
    let mut schema = schema.clone();
    close_objects(&mut schema);
    if let Value::Object(fields) = &mut schema {
        fields.entry(GUIDANCE_OPTIONS).or_insert_with(|| {
            json!({ "whitespace_flexible": false, "item_separator": ", ", "key_separator": ": " })
        });
    }
    schema
}

/// Objects with listed properties take no others unless the schema says they may, as
/// llama.cpp's JSON-schema grammars read them: left open, a small model invents keys
/// until its budget runs out.
fn close_objects(schema: &mut Value) {
    let Value::Object(fields) = schema else { return };
    if fields.contains_key("properties") && !fields.contains_key("additionalProperties") {
        fields.insert("additionalProperties".into(), false.into());
    }
    for (key, value) in fields.iter_mut() {
        match (key.as_str(), value) {
            (
                "properties" | "$defs" | "definitions" | "patternProperties",
                Value::Object(named),
            ) => {
                named.values_mut().for_each(close_objects);
            }
            ("anyOf" | "oneOf" | "allOf" | "prefixItems", Value::Array(schemas)) => {
                schemas.iter_mut().for_each(close_objects);
            }
            ("items" | "additionalProperties" | "not" | "if" | "then" | "else", value) => {
                close_objects(value);
            }
            _ => {}
        }
    }
}

/// The one shape a request asks for through any of its fields; two at once is a 400
/// naming them, since hearth cannot tell which was meant.
pub fn one_shape(
    asked: impl IntoIterator<Item = (&'static str, Option<OutputShape>)>,
) -> Result<Option<OutputShape>, ApiError> {
    let mut chosen: Option<(&str, OutputShape)> = None;
    for (field, shape) in asked {
        let Some(shape) = shape else { continue };
        if let Some((first, _)) = &chosen {
            return Err(ApiError::bad_request(format!(
                "`{first}` and `{field}` both constrain the output; send one of them"
            )));
        }
        chosen = Some((field, shape));
    }
    Ok(chosen.map(|(_, shape)| shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(value: Value) -> Result<Option<OutputShape>, ApiError> {
        let format: ResponseFormat = serde_json::from_value(value).unwrap();
        OutputShape::from_response_format(&format)
    }

    #[test]
    fn a_json_schema_format_becomes_a_compact_json_grammar_under_that_schema() {
        let shape = format(json!({ "type": "json_schema", "json_schema": {
            "name": "answer", "strict": true,
            "schema": { "type": "object", "properties": { "a": { "type": "integer" } } }
        } }))
        .unwrap()
        .unwrap();
        let grammar = shape.grammar();
        assert!(grammar.starts_with("start: %json {"), "{grammar}");
        assert!(grammar.contains(r#""whitespace_flexible":false"#), "{grammar}");
        assert!(grammar.contains(r#""a":{"type":"integer"}"#), "{grammar}");
    }

    #[test]
    fn a_text_format_asks_for_nothing_and_json_object_for_any_object() {
        assert_eq!(format(json!({ "type": "text" })).unwrap(), None);
        let grammar = format(json!({ "type": "json_object" })).unwrap().unwrap().grammar();
        assert!(grammar.contains(r#""type":"object""#), "{grammar}");
    }

    #[test]
    fn a_json_schema_format_without_its_schema_is_refused_by_name() {
        let error = format(json!({ "type": "json_schema", "json_schema": { "name": "x" } }))
            .unwrap_err()
            .message;
        assert!(error.contains("response_format.json_schema.schema"), "{error}");
    }

    #[test]
    fn objects_with_listed_properties_are_closed_unless_the_schema_opens_them() {
        let schema = json!({ "type": "object", "properties": {
            "properties": { "type": "object", "properties": { "a": { "type": "string" } } },
            "open": { "type": "object", "properties": {}, "additionalProperties": true },
            "list": { "type": "array", "items": { "properties": { "b": {} } } },
        } });
        let closed = compact(&schema);
        assert_eq!(closed["additionalProperties"], false);
        assert_eq!(closed["properties"]["properties"]["additionalProperties"], false);
        assert!(
            closed["properties"].get("additionalProperties").is_none(),
            "a property map is not a schema"
        );
        assert_eq!(closed["properties"]["open"]["additionalProperties"], true);
        assert_eq!(closed["properties"]["list"]["items"]["additionalProperties"], false);
    }

    #[test]
    fn a_schema_that_sets_its_own_layout_keeps_it() {
        let schema = json!({ "type": "object", "x-guidance": { "whitespace_flexible": true } });
        assert_eq!(compact(&schema), schema);
    }

    #[test]
    fn ollamas_format_is_json_a_schema_or_nothing() {
        assert_eq!(
            ollama_format(&json!("json")).unwrap(),
            (Some(ResponseFormat::JsonObject), None)
        );
        let schema = json!({ "type": "object" });
        assert_eq!(ollama_format(&schema).unwrap(), (None, Some(schema)));
        assert_eq!(ollama_format(&json!("")).unwrap(), (None, None));
        let error = ollama_format(&json!("yaml")).unwrap_err().message;
        assert!(error.contains("`format`"), "{error}");
    }

    #[test]
    fn the_responses_text_format_reads_as_a_response_format() {
        let format: TextFormat = serde_json::from_value(json!({
            "type": "json_schema", "name": "answer", "strict": true, "schema": { "type": "object" }
        }))
        .unwrap();
        let shape = OutputShape::from_response_format(&format.into()).unwrap();
        assert_eq!(shape, Some(OutputShape::JsonSchema(json!({ "type": "object" }))));
    }

    #[test]
    fn two_fields_that_constrain_the_output_are_refused_naming_both() {
        let error = one_shape([
            ("response_format", Some(OutputShape::JsonObject)),
            ("grammar", Some(OutputShape::Lark("start: \"a\"".into()))),
        ])
        .unwrap_err()
        .message;
        assert!(error.contains("`response_format` and `grammar`"), "{error}");
    }
}
