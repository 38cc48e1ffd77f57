//! `POST /tokenize` and `POST /detokenize`, as llama-server has them, with a `model`
//! field to say whose tokenizer (the router's choice when left out).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::JsonBody;
use super::params::{CommonParams, KeepAliveField};
use super::ApiError;
use crate::service::Hearth;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizeRequest {
    pub model: Option<String>,
    /// Whose tokenizer, when the model runs on several backends (hearth's, as on chat).
    pub backend: Option<String>,
    pub content: String,
    /// Add the tokens the model puts first itself (a beginning-of-sequence token).
    #[serde(default)]
    pub add_special: bool,
    /// Answer each token with its text: `[{ "id", "piece" }]` instead of ids.
    #[serde(default)]
    pub with_pieces: bool,
    pub keep_alive: Option<KeepAliveField>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetokenizeRequest {
    pub model: Option<String>,
    pub backend: Option<String>,
    pub tokens: Vec<u32>,
    pub keep_alive: Option<KeepAliveField>,
}

/// The routing and idle fields, read as every other endpoint reads them.
fn common(
    model: Option<String>,
    backend: Option<String>,
    keep_alive: Option<KeepAliveField>,
) -> CommonParams {
    CommonParams { model, backend, keep_alive, ..CommonParams::default() }
}

/// `POST /tokenize`
pub async fn tokenize(
    State(hearth): State<Arc<Hearth>>,
    JsonBody(request): JsonBody<TokenizeRequest>,
) -> Result<Json<Value>, ApiError> {
    let params = common(request.model, request.backend, request.keep_alive);
    let tokenized = hearth
        .tokenize(
            params.route(),
            params.keep_alive()?,
            request.content,
            request.add_special,
            request.with_pieces,
        )
        .await?;
    let tokens = match tokenized.pieces {
        Some(pieces) => tokenized
            .tokens
            .iter()
            .zip(pieces)
            .map(|(id, piece)| json!({ "id": id, "piece": piece }))
            .collect(),
        None => json!(tokenized.tokens),
    };
    Ok(Json(json!({ "model": tokenized.model_id, "tokens": tokens })))
}

/// `POST /detokenize`
pub async fn detokenize(
    State(hearth): State<Arc<Hearth>>,
    JsonBody(request): JsonBody<DetokenizeRequest>,
) -> Result<Json<Value>, ApiError> {
    let params = common(request.model, request.backend, request.keep_alive);
    let (model, content) =
        hearth.detokenize(params.route(), params.keep_alive()?, request.tokens).await?;
    Ok(Json(json!({ "model": model, "content": content })))
}
