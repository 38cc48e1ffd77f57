//! Ollama's model endpoints over hearth's catalog and store: `/api/tags` (installed
//! models), `/api/show`, `/api/ps` (loaded models, hearth's own facts as extra fields),
//! `/api/pull` (installs what `hearth pull` can, with NDJSON progress) and
//! `/api/version`.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::{Stream, StreamExt};
use hearth_sdk::helpers::Gguf;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::{model_id, ndjson};
use crate::api::body::JsonBody;
use crate::api::clock::{rfc3339, rfc3339_from_ms};
use crate::api::error::Dialect;
use crate::api::params::refuse_fields;
use crate::api::ApiError;
use crate::catalog::{Artifact, ModelEntry};
use crate::service::{Hearth, InstallError};
use crate::store::{ArtifactKind, Progress, PullSpec};

/// What every one of Ollama's model listings says about a model.
fn details(model: &ModelEntry, artifact: Option<&Artifact>) -> Value {
    let family = model.family.clone().unwrap_or_default();
    json!({
        "parent_model": "",
        "format": artifact.map(|artifact| artifact.format.as_str()).unwrap_or_default(),
        "families": if family.is_empty() { Value::Null } else { json!([family]) },
        "family": family,
        "parameter_size": model.parameters.clone().unwrap_or_default(),
        "quantization_level": artifact.and_then(|artifact| artifact.quantization.clone()).unwrap_or_default(),
    })
}

/// Ollama's digests are sha256 values; the catalog's checksum is the file's.
fn digest(artifact: &Artifact) -> String {
    artifact.sha256.clone().unwrap_or_default()
}

/// The first installed file of `model`, with its size and modification time.
fn installed(hearth: &Hearth, model: &ModelEntry) -> Option<(Artifact, std::fs::Metadata)> {
    model.artifacts.iter().find_map(|artifact| {
        let path = hearth.store().model_path(&model.id, &artifact.file).ok()?;
        let metadata = std::fs::metadata(path).ok().filter(std::fs::Metadata::is_file)?;
        Some((artifact.clone(), metadata))
    })
}

/// Whether a model file embeds rather than generates: its GGUF names a pooling type,
/// as Ollama decides.
fn embeds(path: &std::path::Path) -> bool {
    Gguf::open(path).is_ok_and(|gguf| {
        let architecture = gguf.str("general.architecture").unwrap_or_default();
        gguf.get(&format!("{architecture}.pooling_type")).is_some()
    })
}

fn modified_at(metadata: &std::fs::Metadata) -> String {
    rfc3339(metadata.modified().unwrap_or(UNIX_EPOCH))
}

/// `GET /api/tags`: the catalog's installed models.
pub async fn tags(State(hearth): State<Arc<Hearth>>) -> Json<Value> {
    let catalog = hearth.catalog();
    let models: Vec<Value> = catalog
        .models
        .iter()
        .filter_map(|model| {
            let (artifact, metadata) = installed(&hearth, model)?;
            Some(json!({
                "name": model.id,
                "model": model.id,
                "modified_at": modified_at(&metadata),
                "size": metadata.len(),
                "digest": digest(&artifact),
                "details": details(model, Some(&artifact)),
                "hearth": { "title": model.name, "file": artifact.file, "backends": artifact.backends },
            }))
        })
        .collect();
    Json(json!({ "models": models }))
}

/// The body of `/api/show` and `/api/pull`: the model, under Ollama's current name or
/// its older one, and for a pull whether to stream its progress.
#[derive(Debug, Deserialize)]
pub struct ModelRequest {
    pub model: Option<String>,
    pub name: Option<String>,
    pub stream: Option<bool>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl ModelRequest {
    fn model(&self) -> Result<&str, ApiError> {
        match self.model.as_deref().or(self.name.as_deref()) {
            Some(name) if !name.is_empty() => Ok(model_id(name)),
            _ => Err(ApiError::bad_request("`model` is required")),
        }
    }
}

/// `POST /api/show`: an installed model's details, and what it can do through hearth.
pub async fn show(
    State(hearth): State<Arc<Hearth>>,
    JsonBody(request): JsonBody<ModelRequest>,
) -> Result<Json<Value>, ApiError> {
    // `verbose` asks for the tokenizer's whole vocabulary, which is not shown either way.
    refuse_fields(&request.other, &[], &["verbose"], "")?;
    let id = request.model()?;
    let catalog = hearth.catalog();
    let model = catalog
        .model(id)
        .ok_or_else(|| ApiError::not_found(format!("model `{id}` is not in the catalog")))?;
    let (artifact, metadata) = installed(&hearth, model).ok_or_else(|| {
        ApiError::not_found(format!("model `{id}` is not installed; `POST /api/pull` installs it"))
    })?;
    let family = model.family.clone().unwrap_or_default();
    let mut model_info = Map::new();
    model_info.insert("general.architecture".into(), family.clone().into());
    model_info.insert("general.basename".into(), model.name.clone().into());
    if model.context_size > 0 {
        model_info.insert(format!("{family}.context_length"), model.context_size.into());
    }
    let path = hearth.store().model_path(&model.id, &artifact.file).ok();
    let capability = if path.as_deref().is_some_and(embeds) { "embedding" } else { "completion" };
    Ok(Json(json!({
        "modelfile": "",
        "parameters": "",
        "template": "",
        "details": details(model, Some(&artifact)),
        "model_info": model_info,
        // Text generation or embeddings; tools, vision and thinking are not offered by
        // hearth's backends yet.
        "capabilities": [capability],
        "modified_at": modified_at(&metadata),
        "hearth": { "title": model.name, "file": artifact.file, "backends": artifact.backends },
    })))
}

/// `GET /api/ps`: loaded models in Ollama's shape, each with hearth's own facts
/// (`key`, `state`, `refs`, `memory`, times in Unix milliseconds) beside it.
pub async fn ps(State(hearth): State<Arc<Hearth>>) -> Result<Json<Value>, ApiError> {
    let catalog = hearth.catalog();
    let mut models = Vec::new();
    for snapshot in hearth.loaded_models() {
        let model = catalog.model(&snapshot.key.model_id);
        let file = snapshot.key.path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        let artifact = model.and_then(|model| model.artifacts.iter().find(|a| a.file == file));
        let memory = snapshot.memory;
        let Ok(Value::Object(mut entry)) = serde_json::to_value(&snapshot) else {
            return Err(ApiError::internal());
        };
        entry.insert("name".into(), snapshot.key.model_id.clone().into());
        entry.insert("model".into(), snapshot.key.model_id.clone().into());
        entry.insert("size".into(), (memory.host_bytes + memory.device_bytes).into());
        entry.insert("size_vram".into(), memory.device_bytes.into());
        entry.insert("digest".into(), artifact.map(digest).unwrap_or_default().into());
        entry.insert(
            "details".into(),
            model.map(|model| details(model, artifact)).unwrap_or_else(|| json!({})),
        );
        // Unknown while the model is busy or loading, and never for one kept forever.
        entry.insert("expires_at".into(), snapshot.unload_at_ms.map(rfc3339_from_ms).into());
        entry.insert("context_length".into(), hearth.context_window(&snapshot.key.model_id).into());
        models.push(Value::Object(entry));
    }
    Ok(Json(json!({ "models": models })))
}

/// `GET /api/version`: hearth's version.
pub async fn version() -> Json<Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}

/// Sends a pull's progress as Ollama's status lines, at most one per MiB written.
struct StatusLines {
    lines: mpsc::UnboundedSender<Value>,
    status: String,
    digest: String,
    total: Option<u64>,
    completed: u64,
    reported: u64,
}

impl StatusLines {
    fn report(&mut self) {
        self.reported = self.completed;
        let mut line =
            json!({ "status": self.status, "digest": self.digest, "completed": self.completed });
        if let Some(total) = self.total {
            line["total"] = total.into();
        }
        let _ = self.lines.send(line);
    }
}

impl Progress for StatusLines {
    fn start(&mut self, total: Option<u64>) {
        self.total = total;
        self.completed = 0;
        self.report();
    }

    fn resumed(&mut self, bytes: u64) {
        self.completed = bytes;
        self.report();
    }

    fn advance(&mut self, bytes: u64) {
        self.completed += bytes;
        if self.completed - self.reported >= 1 << 20 {
            self.report();
        }
    }

    fn finish(&mut self) {
        self.report();
    }
}

/// Fetch each of `specs` through the store, sending status lines; an error ends the
/// lines with `{"error": …}`.
async fn run_pull(hearth: Arc<Hearth>, specs: Vec<PullSpec>, lines: mpsc::UnboundedSender<Value>) {
    for spec in specs {
        let mut progress = StatusLines {
            lines: lines.clone(),
            status: format!("pulling {}", spec.file),
            digest: spec.sha256.clone().map(|sha| format!("sha256:{sha}")).unwrap_or_default(),
            total: spec.size,
            completed: 0,
            reported: 0,
        };
        if let Err(error) = hearth.store().pull(&spec, &mut progress).await {
            let error = ApiError::bad_request(format!("installing {} failed: {error}", spec.file));
            let _ = lines.send(error.body(Dialect::Ollama));
            return;
        }
        let _ = lines.send(json!({ "status": "verifying sha256 digest" }));
    }
    let _ = lines.send(json!({ "status": "writing manifest" }));
    let _ = lines.send(json!({ "status": "success" }));
}

/// `POST /api/pull`: install a catalog model the way `hearth pull` does, from the
/// catalog's URLs, verified against its sizes and checksums. A model whose files are
/// installed already succeeds at once; one the catalog gives no source for is refused.
pub async fn pull(
    State(hearth): State<Arc<Hearth>>,
    JsonBody(request): JsonBody<ModelRequest>,
) -> Result<Response, ApiError> {
    // `insecure` allows plain-HTTP registries; the catalog's URLs are what they are.
    refuse_fields(&request.other, &[], &["insecure"], "")?;
    let id = request.model()?.to_string();
    let plan = hearth.install_plan(&id, None, &[]).map_err(|error| match error {
        InstallError::NotInCatalog { .. } => {
            ApiError::not_found(format!("model `{id}` is not in hearth's catalog"))
        }
        InstallError::NoSource { .. } => ApiError::bad_request(format!(
            "the catalog gives no download URL for `{id}`; install it with \
             `hearth pull {id} --from FILE`"
        )),
        InstallError::Store(error) => ApiError::bad_request(error.to_string()),
    })?;
    if plan.kind == ArtifactKind::Adapter {
        return Err(ApiError::bad_request(format!(
            "`{id}` is an adapter, not a model; install it with `hearth pull {id}`"
        )));
    }
    let (lines, received) = mpsc::unbounded_channel();
    let _ = lines.send(json!({ "status": "pulling manifest" }));
    for path in &plan.installed {
        let size = std::fs::metadata(path).map(|metadata| metadata.len()).unwrap_or(0);
        let file = path.file_name().map(|name| name.to_string_lossy()).unwrap_or_default();
        let _ = lines
            .send(json!({ "status": format!("pulling {file}"), "total": size, "completed": size }));
    }
    tokio::spawn(run_pull(hearth, plan.specs, lines));
    let lines = received_lines(received);
    if request.stream.unwrap_or(true) {
        return Ok(ndjson(lines));
    }
    // Not streamed: the last line alone, `success` or the error.
    let last = lines.fold(Value::Null, |_, line| async move { line }).await;
    match last["error"].as_str() {
        Some(message) => Err(ApiError::bad_request(message)),
        None => Ok(Json(last).into_response()),
    }
}

/// The lines a channel receives, as a stream that ends when every sender is gone.
fn received_lines(mut received: mpsc::UnboundedReceiver<Value>) -> impl Stream<Item = Value> {
    async_stream::stream! {
        while let Some(line) = received.recv().await {
            yield line;
        }
    }
}
