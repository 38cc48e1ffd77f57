//! hearth's own endpoints: profile, plugins, load, unload, health. (Loaded models are
//! Ollama's `/api/ps`, with hearth's facts in each entry: see `ollama::models`.)

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use hearth_sdk::abi_stable::std_types::RVec;
use hearth_sdk::GenerateRequest;
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::JsonBody;
use super::params::{CommonParams, KeepAliveField};
use super::ApiError;
use crate::router::RouteRequest;
use crate::service::{Generation, Hearth};

/// `GET /api/profile`: the device, the catalog in force (with the last refused edit,
/// if the file still holds it) and the default routing decision.
pub async fn profile(State(hearth): State<Arc<Hearth>>) -> Json<Value> {
    let route = match hearth.route(&RouteRequest::default()) {
        Ok(plan) => json!({ "summary": plan.describe(), "plan": plan }),
        Err(error) => json!({ "error": error.to_string() }),
    };
    Json(json!({
        "device": hearth.device().view(),
        "catalog": { "source": hearth.config().catalog.describe(), "error": hearth.catalog_problem() },
        "placement": hearth.placement(),
        "route": route,
    }))
}

/// `GET /api/plugins`
pub async fn plugins(State(hearth): State<Arc<Hearth>>) -> Json<Value> {
    Json(json!(hearth.plugins()))
}

#[derive(Debug, Deserialize)]
pub struct LoadBody {
    pub model: Option<String>,
    pub backend: Option<String>,
    pub tier: Option<u8>,
    pub keep_alive: Option<KeepAliveField>,
}

/// `POST /api/load`: load a model (routing as for a request) and keep it resident
/// for its idle period.
pub async fn load(
    State(hearth): State<Arc<Hearth>>,
    JsonBody(body): JsonBody<LoadBody>,
) -> Result<Json<Value>, ApiError> {
    let params = CommonParams {
        model: body.model,
        backend: body.backend,
        tier: body.tier,
        keep_alive: body.keep_alive,
        ..CommonParams::default()
    };
    let (model, backend) = load_model(&hearth, &params).await?;
    Ok(Json(json!({ "model": model, "backend": backend, "status": "loaded" })))
}

/// Load the model `params` routes to, without generating, and keep it for the idle
/// period `params` asks for; returns the model and the backend it loaded on.
pub async fn load_model(
    hearth: &Hearth,
    params: &CommonParams,
) -> Result<(String, String), ApiError> {
    let generation = Generation {
        route: params.route(),
        request: GenerateRequest {
            messages: RVec::new(),
            prompt: None.into(),
            sampling: Default::default(),
            stop: RVec::new(),
            max_tokens: 0,
            adapters: RVec::new(),
            ..GenerateRequest::default()
        },
        adapters: Vec::new(),
        keep_alive: params.keep_alive()?,
    };
    let prepared = hearth.prepare(generation).await?;
    let loaded = (prepared.model_id().to_string(), prepared.backend().to_string());
    // Releasing the hold asks the runner what it holds now: for a model in a worker
    // process a blocking round trip over its pipe, which must not run on the runtime.
    if let Err(panic) = tokio::task::spawn_blocking(move || drop(prepared)).await {
        tracing::error!(%panic, "releasing the loaded model panicked");
    }
    Ok(loaded)
}

#[derive(Debug, Deserialize)]
pub struct UnloadBody {
    pub model: String,
}

/// `POST /api/unload`
pub async fn unload(
    State(hearth): State<Arc<Hearth>>,
    JsonBody(body): JsonBody<UnloadBody>,
) -> Result<Json<Value>, ApiError> {
    let unloaded = hearth
        .unload(&body.model)
        .await
        .map_err(|error| ApiError::bad_request(error.to_string()))?;
    if unloaded == 0 {
        return Err(ApiError::not_found(format!("model `{}` is not loaded", body.model)));
    }
    Ok(Json(json!({ "model": body.model, "status": "unloaded" })))
}

/// `GET /health`
pub async fn health(State(hearth): State<Arc<Hearth>>) -> Json<Value> {
    Json(
        json!({ "status": "ok", "plugins": hearth.registry().plugins.len(), "loaded_models": hearth.loaded_models().len() }),
    )
}
