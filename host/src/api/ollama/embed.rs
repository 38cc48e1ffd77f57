//! Ollama's `POST /api/embed` (unit-length vectors, a text or a list, `truncate` on by
//! default) and its older `POST /api/embeddings` (one `prompt`, the vector as the model
//! gives it), as the `ollama` libraries call them.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::model_id;
use crate::api::body::JsonBody;
use crate::api::embeddings::{check_dimensions, Input};
use crate::api::params::{refuse_fields, CommonParams, KeepAliveField, WholeNumber};
use crate::api::ApiError;
use crate::service::{Embedded, Hearth};

/// Fields of Ollama's embedding requests that hearth does not implement: its `options`
/// (the runner's settings, such as `num_ctx` or `num_thread`) are the backend's here.
const NOT_YET_SUPPORTED: &[&str] = &["options"];

/// The body of `POST /api/embed`.
#[derive(Debug, Deserialize)]
pub struct EmbedRequest {
    #[serde(default)]
    pub model: String,
    pub input: Input,
    pub truncate: Option<bool>,
    pub dimensions: Option<WholeNumber>,
    pub keep_alive: Option<KeepAliveField>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The body of `POST /api/embeddings`.
#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest {
    #[serde(default)]
    pub model: String,
    pub prompt: String,
    pub keep_alive: Option<KeepAliveField>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Embed `texts` on the model Ollama's client named.
async fn embed_texts(
    hearth: &Hearth,
    model: &str,
    keep_alive: Option<KeepAliveField>,
    texts: Vec<String>,
    (truncate, normalize): (bool, bool),
) -> Result<Embedded, ApiError> {
    if model.is_empty() {
        return Err(ApiError::bad_request("`model` is required"));
    }
    let params = CommonParams {
        model: Some(model_id(model).to_string()),
        keep_alive,
        ..CommonParams::default()
    };
    Ok(hearth.embed(params.route(), params.keep_alive()?, texts, truncate, normalize).await?)
}

/// `POST /api/embed`
pub async fn embed(
    State(hearth): State<Arc<Hearth>>,
    JsonBody(request): JsonBody<EmbedRequest>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    refuse_fields(&request.other, NOT_YET_SUPPORTED, &[], "")?;
    let texts = request.input.texts()?;
    let truncate = request.truncate.unwrap_or(true);
    let embedded =
        embed_texts(&hearth, &request.model, request.keep_alive, texts, (truncate, true)).await?;
    check_dimensions(request.dimensions, &embedded)?;
    let total_nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    Ok(Json(json!({
        "model": embedded.model_id,
        "embeddings": embedded.vectors,
        "total_duration": total_nanos,
        "prompt_eval_count": embedded.tokens,
    })))
}

/// `POST /api/embeddings`
pub async fn embeddings(
    State(hearth): State<Arc<Hearth>>,
    JsonBody(request): JsonBody<EmbeddingsRequest>,
) -> Result<Json<Value>, ApiError> {
    refuse_fields(&request.other, NOT_YET_SUPPORTED, &[], "")?;
    let texts = vec![request.prompt];
    let mut embedded =
        embed_texts(&hearth, &request.model, request.keep_alive, texts, (true, false)).await?;
    Ok(Json(json!({ "embedding": embedded.vectors.pop().unwrap_or_default() })))
}
