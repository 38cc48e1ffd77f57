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
use crate::catalog::{Catalog, Tier};
use crate::router::RouteRequest;
use crate::service::{Generation, Hearth};
use crate::store::Store;

/// `GET /api/profile`: the device, the catalog in force (its tier tables and LoRA
/// adapters, with the last refused edit if the file still holds it) and the default
/// routing decision.
pub async fn profile(State(hearth): State<Arc<Hearth>>) -> Json<Value> {
    let route = match hearth.route(&RouteRequest::default()) {
        Ok(plan) => json!({ "summary": plan.describe(), "plan": plan }),
        Err(error) => json!({ "error": error.to_string() }),
    };
    let mut catalog = catalog_view(&hearth.catalog(), hearth.store());
    catalog["source"] = hearth.config().catalog.describe().into();
    catalog["error"] = json!(hearth.catalog_problem());
    Json(json!({
        "device": hearth.device().view(),
        "catalog": catalog,
        "placement": hearth.placement(),
        "route": route,
    }))
}

/// `GET /api/architectures`: the model layer's description of every architecture
/// hearth's own engines run, as data, for the web app's in-page engine.
pub async fn architectures() -> Json<Value> {
    Json(hearth_model::arch::as_json())
}

/// What a client choosing a model needs from the catalog beyond `/v1/models`: every
/// backend's tier table, and the LoRA adapters with the base model each fits and
/// whether its file is installed.
fn catalog_view(catalog: &Catalog, store: &Store) -> Value {
    let tiers: Vec<Value> = catalog.tiers.iter().map(tier_view).collect();
    let adapters: Vec<Value> = catalog
        .adapters
        .iter()
        .map(|adapter| {
            let installed = adapter.artifacts.iter().any(|artifact| {
                store.adapter_path(&adapter.name, &artifact.file).is_ok_and(|path| path.is_file())
            });
            json!({
                "name": adapter.name,
                "title": adapter.title,
                "base_model": adapter.base_model,
                "purpose": adapter.purpose,
                "installed": installed,
            })
        })
        .collect();
    json!({ "tiers": tiers, "adapters": adapters, "idle": idle_view(catalog) })
}

/// One row of a tier table, as the web app reads it (here and in a static export).
pub fn tier_view(tier: &Tier) -> Value {
    json!({
        "backend": tier.backend,
        "tier": tier.tier,
        "models": tier.models,
        "memory_required": tier.memory_label(),
        "memory_required_bytes": tier.memory_required_bytes,
        "memory_kind": tier.memory_kind,
    })
}

/// The idle timeouts, per model where the catalog sets its own: the web app's in-page
/// engine releases its GPU buffers by them.
pub fn idle_view(catalog: &Catalog) -> Value {
    let idle_overrides: serde_json::Map<String, Value> = catalog
        .models
        .iter()
        .filter(|model| model.soft_timeout.is_some() || model.hard_timeout.is_some())
        .map(|model| {
            let soft = model.soft_timeout.unwrap_or(catalog.idle.soft_timeout);
            let hard = model.hard_timeout.unwrap_or(catalog.idle.hard_timeout);
            (
                model.id.clone(),
                json!({ "soft_s": soft.as_secs_f64(), "hard_s": hard.as_secs_f64() }),
            )
        })
        .collect();
    json!({
        "soft_s": catalog.idle.soft_timeout.as_secs_f64(),
        "hard_s": catalog.idle.hard_timeout.as_secs_f64(),
        "models": idle_overrides,
    })
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_catalog_view_lists_every_tier_and_each_adapter_with_its_installed_state() {
        let catalog =
            Catalog::parse(include_str!("../../../catalog.toml"), Path::new("catalog.toml"))
                .unwrap();
        let models = tempfile::tempdir().unwrap();
        let store = Store::new(models.path());
        let folder = models.path().join("adapters/smollm2-signoff");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("smollm2-signoff-lora-f16.gguf"), b"GGUF").unwrap();

        let view = catalog_view(&catalog, &store);
        let tiers = view["tiers"].as_array().unwrap();
        assert_eq!(tiers.len(), catalog.tiers.len());
        let first = tiers.iter().find(|tier| tier["backend"] == "llamacpp").unwrap();
        assert_eq!(first["tier"], 1);
        assert_eq!(first["memory_required"], "4 GB");
        assert_eq!(first["memory_kind"], "ram");
        assert!(first["models"].as_array().unwrap().contains(&json!("smollm2-135m")));

        let adapters = view["adapters"].as_array().unwrap();
        assert_eq!(adapters.len(), catalog.adapters.len());
        let signoff = adapters.iter().find(|adapter| adapter["name"] == "smollm2-signoff").unwrap();
        assert_eq!(signoff["base_model"], "smollm2-135m");
        assert_eq!(signoff["installed"], true);
        let chatbot = adapters.iter().find(|adapter| adapter["name"] == "chatbot").unwrap();
        assert_eq!(chatbot["installed"], false);
    }
}
