//! The generation path: route, load with fallback, stream the answer.

use std::path::PathBuf;
use std::time::Instant;

use hearth_sdk::abi_stable::std_types::{RString, RVec};
use hearth_sdk::{
    AdapterUse, ErrorKind, GenerateRequest, GenerateStats, LoadRequest, PluginError, SinkControl,
    TokenSink,
};
use serde::Serialize;
use tokio::sync::mpsc;

use super::gate::FileRefused;
use super::Hearth;
use crate::catalog::Catalog;
use crate::lifecycle::{IdleTimeouts, KeepAlive, LoadSpec, ModelKey, RunnerRef, SchedulerError};
use crate::router::{Candidate, RouteError, RouteRequest};

/// Pieces of generated text, in order, as the backend produces them.
pub type TokenStream = mpsc::UnboundedReceiver<String>;

/// One request for text.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Which model, backend or tier the caller asked for; empty fields let the router choose.
    pub route: RouteRequest,
    /// The prompt and sampling; `adapters` is filled from `adapters` below.
    pub request: GenerateRequest,
    /// LoRA adapters by catalog name, with their scales.
    pub adapters: Vec<(String, f32)>,
    pub keep_alive: KeepAlive,
}

/// What a finished generation reports besides its text.
#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    pub model_id: String,
    pub backend: String,
    pub tier: Option<u8>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub finish_reason: &'static str,
    pub prompt_ms: f64,
    pub decode_ms: f64,
    /// From the start of the request (routing and loading included) to the first piece.
    pub time_to_first_token_ms: Option<f64>,
    pub total_ms: f64,
    /// Why this model was chosen.
    pub reason: String,
    /// Candidates tried before this one, each with why it failed.
    pub fallbacks: Vec<String>,
}

/// Why a generation did not happen. [`crate::api`] maps each to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("model `{0}` is not in the catalog")]
    UnknownModel(String),
    #[error("adapter `{0}` is not in the catalog")]
    UnknownAdapter(String),
    #[error("adapter `{adapter}` is not installed for backend {backend}")]
    AdapterNotInstalled { adapter: String, backend: String },
    #[error("adapter `{adapter}` is for model `{base}`, not `{model}`")]
    AdapterMismatch { adapter: String, base: String, model: String },
    #[error("{0}")]
    Route(#[from] RouteError),
    #[error("no model could be loaded: {}", attempts.join("; "))]
    NothingLoaded { attempts: Vec<String> },
    #[error("{0}")]
    /// Boxed: the scheduler's error carries a whole model key.
    Busy(Box<SchedulerError>),
    #[error("{model} on {backend} failed: {error}")]
    Generate { model: String, backend: String, error: PluginError },
    #[error("internal error: {0}")]
    Internal(String),
}

/// An adapter of the request, found in the store for one candidate.
struct ResolvedAdapter {
    adapter: AdapterUse,
    /// The catalog's format of its file, for the file gate.
    format: String,
}

/// A generation whose model is loaded and held, ready to run.
pub struct Prepared {
    runner: RunnerRef,
    candidate: Candidate,
    request: GenerateRequest,
    fallbacks: Vec<String>,
    started: Instant,
}

impl Prepared {
    pub fn model_id(&self) -> &str {
        &self.candidate.model_id
    }

    pub fn backend(&self) -> &str {
        &self.candidate.backend
    }

    /// Generate, sending each piece to `tokens`. Dropping the receiver cancels the
    /// generation at the next token.
    pub async fn run(
        self,
        tokens: mpsc::UnboundedSender<String>,
    ) -> Result<Completion, ServiceError> {
        let Prepared { runner, candidate, request, fallbacks, started } = self;
        let outcome = tokio::task::spawn_blocking(move || {
            let mut sink = ChannelSink { tokens, started, first_token_ms: None };
            let result = runner.runner().generate(&request, &mut sink);
            // The model is released here, on this thread, before the answer is
            // reported, so its idle timers start from the end of the generation.
            drop(runner);
            (result, sink.first_token_ms)
        })
        .await;
        let (result, time_to_first_token_ms) =
            outcome.map_err(|error| ServiceError::Internal(error.to_string()))?;
        let stats = result.map_err(|error| ServiceError::Generate {
            model: candidate.model_id.clone(),
            backend: candidate.backend.clone(),
            error,
        })?;
        Ok(completion(candidate, stats, fallbacks, time_to_first_token_ms, started))
    }
}

fn completion(
    candidate: Candidate,
    stats: GenerateStats,
    fallbacks: Vec<String>,
    time_to_first_token_ms: Option<f64>,
    started: Instant,
) -> Completion {
    Completion {
        model_id: candidate.model_id,
        backend: candidate.backend,
        tier: candidate.tier,
        prompt_tokens: stats.prompt_tokens,
        completion_tokens: stats.completion_tokens,
        finish_reason: stats.finish_reason.as_str(),
        prompt_ms: duration_ms(stats.prompt_ms),
        decode_ms: duration_ms(stats.decode_ms),
        time_to_first_token_ms,
        total_ms: started.elapsed().as_secs_f64() * 1e3,
        reason: candidate.reason,
        fallbacks,
    }
}

/// A plugin's timing as a client may see it: a NaN, infinite or negative figure from
/// a faulty plugin reads as 0 rather than breaking JSON or the CLI's arithmetic.
fn duration_ms(value: f64) -> f64 {
    if value.is_finite() && value >= 0.0 {
        value
    } else {
        0.0
    }
}

struct ChannelSink {
    tokens: mpsc::UnboundedSender<String>,
    started: Instant,
    first_token_ms: Option<f64>,
}

impl TokenSink for ChannelSink {
    fn on_token(&mut self, piece: &str) -> SinkControl {
        if self.first_token_ms.is_none() {
            self.first_token_ms = Some(self.started.elapsed().as_secs_f64() * 1e3);
        }
        match self.tokens.send(piece.to_string()) {
            Ok(()) => SinkControl::Continue,
            Err(_) => SinkControl::Stop,
        }
    }
}

impl Hearth {
    /// Route the request and load its model, falling back through the plan's
    /// candidates; the model stays held until the returned generation has run.
    pub async fn prepare(&self, generation: Generation) -> Result<Prepared, ServiceError> {
        let started = Instant::now();
        let catalog = self.catalog();
        let Generation { mut route, mut request, adapters, keep_alive } = generation;
        if let Some(model) = &route.model {
            if catalog.model(model).is_none() {
                return Err(ServiceError::UnknownModel(model.clone()));
            }
        }
        // An adapter only fits its base model, so it decides the model when none was asked for.
        for (name, _) in &adapters {
            let adapter =
                catalog.adapter(name).ok_or_else(|| ServiceError::UnknownAdapter(name.clone()))?;
            route.model.get_or_insert_with(|| adapter.base_model.clone());
        }
        let plan = self.route(&route)?;
        let mut fallbacks = Vec::new();
        // An adapter missing for one backend only rules that candidate out; it is the
        // answer only when no candidate got further than that.
        let mut adapter_missing = None;
        for candidate in plan.candidates {
            let resolved = match self.resolve_adapters(&catalog, &adapters, &candidate) {
                Ok(resolved) => resolved,
                Err(error @ ServiceError::AdapterNotInstalled { .. }) => {
                    adapter_missing.get_or_insert(error);
                    continue;
                }
                Err(error) => return Err(error),
            };
            // A file that fails the gate is a failed load of this candidate: the next
            // tier or backend may have a sound file, and the reason is kept for the client.
            if let Err(refused) = self.gate_files(&candidate, &resolved).await {
                tracing::warn!(model = %candidate.model_id, backend = %candidate.backend, error = %refused, "file refused; falling back");
                fallbacks
                    .push(format!("{} on {}: {refused}", candidate.model_id, candidate.backend));
                continue;
            }
            request.adapters = resolved.into_iter().map(|adapter| adapter.adapter).collect();
            let spec = self.load_spec(&catalog, &candidate);
            match self.scheduler().acquire(spec, keep_alive).await {
                Ok(runner) => {
                    return Ok(Prepared { runner, candidate, request, fallbacks, started });
                }
                Err(SchedulerError::Load { source, .. }) => {
                    tracing::warn!(model = %candidate.model_id, backend = %candidate.backend, error = %source, "load failed; falling back");
                    fallbacks
                        .push(format!("{} on {}: {source}", candidate.model_id, candidate.backend));
                }
                Err(error) => return Err(ServiceError::Busy(Box::new(error))),
            }
        }
        if fallbacks.is_empty() {
            if let Some(error) = adapter_missing {
                return Err(error);
            }
            fallbacks.extend(plan.notes);
        }
        Err(ServiceError::NothingLoaded { attempts: fallbacks })
    }

    /// Route, load and generate in one call.
    pub async fn generate(
        &self,
        generation: Generation,
        tokens: mpsc::UnboundedSender<String>,
    ) -> Result<Completion, ServiceError> {
        self.prepare(generation).await?.run(tokens).await
    }

    fn load_spec(&self, catalog: &Catalog, candidate: &Candidate) -> LoadSpec {
        let model = catalog.model(&candidate.model_id);
        let context_size = match self.config.context_size {
            0 => model.map_or(0, |model| model.context_size),
            size => size,
        };
        // Always the catalog in force, not the scheduler's start-up default, so an
        // edited [idle] section applies from the next request on.
        let idle = Some(IdleTimeouts {
            soft: model.and_then(|model| model.soft_timeout).unwrap_or(catalog.idle.soft_timeout),
            hard: model.and_then(|model| model.hard_timeout).unwrap_or(catalog.idle.hard_timeout),
        });
        let estimated_bytes = candidate
            .artifact
            .size_bytes
            .or_else(|| std::fs::metadata(&candidate.path).ok().map(|metadata| metadata.len()))
            .unwrap_or(0);
        LoadSpec {
            key: ModelKey {
                backend: candidate.backend.clone(),
                model_id: candidate.model_id.clone(),
                path: candidate.path.clone(),
                plugin_generation: self
                    .registry()
                    .get(&candidate.backend)
                    .map_or(0, |plugin| plugin.generation),
                definition_revision: self.definition_revision(&candidate.model_id),
            },
            request: LoadRequest {
                model_id: candidate.model_id.as_str().into(),
                paths: RVec::from(vec![RString::from(candidate.path.display().to_string())]),
                format: candidate.artifact.format.as_str().into(),
                context_size,
                threads: self.config.threads,
                device: None.into(),
            },
            idle,
            estimated_bytes,
        }
    }

    /// Run the candidate's model file and adapter files through the gate, off the
    /// async runtime (a first check reads the file's header).
    async fn gate_files(
        &self,
        candidate: &Candidate,
        adapters: &[ResolvedAdapter],
    ) -> Result<(), FileRefused> {
        let files: Vec<(PathBuf, String)> =
            std::iter::once((candidate.path.clone(), candidate.artifact.format.clone()))
                .chain(adapters.iter().map(|adapter| {
                    (PathBuf::from(adapter.adapter.path.as_str()), adapter.format.clone())
                }))
                .collect();
        for (path, format) in files {
            let gate = self.gate.clone();
            let file = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            tokio::task::spawn_blocking(move || gate.check(&path, &format)).await.unwrap_or_else(
                |error| Err(FileRefused { file, rule: format!("the validator failed: {error}") }),
            )?;
        }
        Ok(())
    }

    fn resolve_adapters(
        &self,
        catalog: &Catalog,
        adapters: &[(String, f32)],
        candidate: &Candidate,
    ) -> Result<Vec<ResolvedAdapter>, ServiceError> {
        let mut resolved = Vec::new();
        for (name, scale) in adapters {
            let adapter =
                catalog.adapter(name).ok_or_else(|| ServiceError::UnknownAdapter(name.clone()))?;
            if adapter.base_model != candidate.model_id {
                return Err(ServiceError::AdapterMismatch {
                    adapter: name.clone(),
                    base: adapter.base_model.clone(),
                    model: candidate.model_id.clone(),
                });
            }
            let (path, format) = adapter
                .artifacts
                .iter()
                .filter(|artifact| {
                    artifact.backends.iter().any(|backend| backend == &candidate.backend)
                })
                .find_map(|artifact| {
                    let path = self
                        .store()
                        .adapter_path(name, &artifact.file)
                        .ok()
                        .filter(|path| path.is_file())?;
                    Some((path, artifact.format.clone()))
                })
                .ok_or_else(|| ServiceError::AdapterNotInstalled {
                    adapter: name.clone(),
                    backend: candidate.backend.clone(),
                })?;
            resolved.push(ResolvedAdapter {
                adapter: AdapterUse {
                    name: name.as_str().into(),
                    path: path.display().to_string().into(),
                    scale: *scale,
                },
                format,
            });
        }
        Ok(resolved)
    }
}

impl ServiceError {
    /// Whether the caller, not the host, is at fault.
    pub fn is_client_error(&self) -> bool {
        match self {
            ServiceError::UnknownModel(_)
            | ServiceError::UnknownAdapter(_)
            | ServiceError::AdapterNotInstalled { .. }
            | ServiceError::AdapterMismatch { .. } => true,
            ServiceError::Generate { error, .. } => error.kind == ErrorKind::InvalidRequest,
            _ => false,
        }
    }
}
