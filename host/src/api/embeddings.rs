//! `POST /v1/embeddings` in OpenAI's shape: `input` is one text or a list of texts,
//! and each vector comes as floats or, with `encoding_format: "base64"` (what the
//! openai SDK asks for unless told otherwise), as base64 of little-endian 32-bit floats.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::body::JsonBody;
use super::params::{refuse_fields, CommonParams, KeepAliveField, WholeNumber};
use super::ApiError;
use crate::service::{Embedded, Hearth};

/// The most texts one request may embed (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

/// OpenAI fields that label the request for the caller's bookkeeping.
const BOOKKEEPING: &[&str] = &["user"];

#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest {
    pub model: Option<String>,
    pub input: Input,
    pub encoding_format: Option<String>,
    pub dimensions: Option<WholeNumber>,
    /// Which backend embeds, when the model runs on several (hearth's, as on chat).
    pub backend: Option<String>,
    pub keep_alive: Option<KeepAliveField>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// What to embed: a text or a list of texts (Ollama's `/api/embed` reads it too).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Texts(Vec<String>),
    /// Anything else: token ids (one list or a list of lists) are refused by name.
    Other(Value),
}

impl Input {
    /// The texts, checked: at least one, at most [`MAX_INPUTS`].
    pub fn texts(self) -> Result<Vec<String>, ApiError> {
        let texts = match self {
            Input::Text(text) => vec![text],
            Input::Texts(texts) => texts,
            Input::Other(value) if value.is_array() => {
                return Err(ApiError::bad_request(
                    "`input` as token ids is not supported by hearth yet; send text",
                ))
            }
            Input::Other(_) => {
                return Err(ApiError::bad_request("`input` must be a text or a list of texts"))
            }
        };
        if texts.is_empty() {
            return Err(ApiError::bad_request("`input` must hold at least one text"));
        }
        if texts.len() > MAX_INPUTS {
            return Err(ApiError::bad_request(format!(
                "`input` holds {} texts; at most {MAX_INPUTS} go in one request",
                texts.len()
            )));
        }
        Ok(texts)
    }
}

/// Refuse `dimensions` other than the model's own: hearth does not shorten vectors
/// (only models trained for it keep their meaning when cut).
pub fn check_dimensions(
    dimensions: Option<WholeNumber>,
    embedded: &Embedded,
) -> Result<(), ApiError> {
    let Some(dimensions) = dimensions else {
        return Ok(());
    };
    let asked = dimensions.whole("dimensions")?;
    let native = embedded.vectors.first().map_or(0, Vec::len);
    if usize::try_from(asked).ok() == Some(native) {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "`dimensions`: model {} gives {native}-dimensional embeddings, and hearth does not shorten them",
        embedded.model_id
    )))
}

/// `POST /v1/embeddings`
pub async fn embeddings(
    State(hearth): State<Arc<Hearth>>,
    JsonBody(request): JsonBody<EmbeddingsRequest>,
) -> Result<Json<Value>, ApiError> {
    refuse_fields(&request.other, &[], BOOKKEEPING, "")?;
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`encoding_format` must be \"float\" or \"base64\", got {other:?}"
            )))
        }
    };
    if request.model.as_deref().is_none_or(str::is_empty) {
        return Err(ApiError::bad_request("`model` is required: name an embedding model"));
    }
    let texts = request.input.texts()?;
    let params = CommonParams {
        model: request.model,
        backend: request.backend,
        keep_alive: request.keep_alive,
        ..CommonParams::default()
    };
    let embedded = hearth.embed(params.route(), params.keep_alive()?, texts, true, true).await?;
    check_dimensions(request.dimensions, &embedded)?;
    let data: Vec<Value> = embedded
        .vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 { json!(base64_floats(vector)) } else { json!(vector) };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": embedded.model_id,
        "usage": { "prompt_tokens": embedded.tokens, "total_tokens": embedded.tokens },
    })))
}

/// The floats as OpenAI sends them in base64: little-endian 32-bit, back to back.
fn base64_floats(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::{base64_floats, Input};

    #[test]
    fn base64_holds_the_little_endian_bytes_of_each_float() {
        // 1.0 is 0x3f800000 and -2.0 is 0xc0000000: bytes 00 00 80 3f 00 00 00 c0.
        assert_eq!(base64_floats(&[1.0, -2.0]), "AACAPwAAAMA=");
    }

    #[test]
    fn input_is_one_text_or_a_list_and_token_ids_are_refused_by_name() {
        let one: Input = serde_json::from_str(r#""hello""#).unwrap();
        assert_eq!(one.texts().unwrap(), vec!["hello".to_string()]);
        let list: Input = serde_json::from_str(r#"["a", "b"]"#).unwrap();
        assert_eq!(list.texts().unwrap().len(), 2);
        let tokens: Input = serde_json::from_str("[1, 2, 3]").unwrap();
        assert!(tokens.texts().unwrap_err().message.contains("token ids"));
        let empty: Input = serde_json::from_str("[]").unwrap();
        assert!(empty.texts().is_err());
    }
}
