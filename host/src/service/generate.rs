//! The generation path: route, load with fallback, stream the answer.

use std::path::PathBuf;
use std::time::Instant;

use hearth_sdk::abi_stable::std_types::{RString, RVec};
use hearth_sdk::{
    AdapterUse, ErrorKind, FinishReason, GenerateRequest, GenerateStats, LoadRequest, PluginError,
    SinkControl, TokenLogprobs, TokenSink,
};
use serde::Serialize;
use tokio::sync::mpsc;

use super::gate::FileRefused;
use super::Hearth;
use crate::catalog::Catalog;
use crate::lifecycle::{
    IdleTimeouts, KeepAlive, LoadSpec, MemorySnapshot, ModelKey, Runner, RunnerRef, SchedulerError,
};
use crate::router::{Candidate, RouteError, RouteRequest};
use crate::store::FileVersion;

/// A piece of generated text as the backend produces it, with the log-probabilities
/// of the tokens that completed it when the request asked for them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Emitted {
    pub text: String,
    pub logprobs: Vec<TokenLogprobs>,
}

/// Pieces of generated text, in order.
pub type TokenStream = mpsc::UnboundedReceiver<Emitted>;

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
    #[error(
        "adapter `{0}` is listed twice; list each adapter once, with the scale it should have"
    )]
    AdapterTwice(String),
    #[error("adapter `{adapter}` is for model `{base}`, not `{model}`")]
    AdapterMismatch { adapter: String, base: String, model: String },
    /// The request needs a feature no backend that could serve the model states.
    #[error("`{field}` is not supported by backend {backend}, the one that would serve this request (it does not list the `{feature}` feature)")]
    Unsupported { field: &'static str, feature: &'static str, backend: String },
    #[error("{0}")]
    Route(#[from] RouteError),
    #[error("no model could be loaded: {}", attempts.join("; "))]
    NothingLoaded { attempts: Vec<String>, cause: LoadFailure },
    /// Every resident model stayed busy for the scheduler's whole wait, so there was no
    /// room to load this one: an overload, worth retrying shortly.
    #[error("cannot load {model}: every resident model stayed busy for {waited:?}")]
    Busy { model: String, waited: std::time::Duration },
    #[error("{model} on {backend} failed: {error}")]
    Generate { model: String, backend: String, error: PluginError },
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why no candidate of a plan loaded: the most hopeful of the candidates' failures,
/// which decides whether a client should try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LoadFailure {
    /// Nothing to try: no backend plugin is loaded that could run the model.
    NoBackend,
    /// Nothing to try: no file of the model is installed for a backend that serves it.
    NotInstalled,
    /// Nothing to try: the installed files need what their backends state they cannot
    /// run (an architecture, a tensor type).
    Unrunnable,
    /// Every file tried was refused as damaged, by the gate or by its backend.
    InvalidFile,
    /// A backend failed otherwise (its own error, a crash).
    Failed,
    /// Not enough memory now; it may fit once other models are unloaded.
    OutOfMemory,
}

impl LoadFailure {
    fn of(error: &PluginError) -> Self {
        match error.kind {
            ErrorKind::OutOfMemory => LoadFailure::OutOfMemory,
            ErrorKind::ModelFile => LoadFailure::InvalidFile,
            _ => LoadFailure::Failed,
        }
    }
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

    /// Run `work` on the loaded model off the async runtime, and release the model
    /// there too (for a model in a worker process, releasing asks what it holds: a
    /// round trip over its pipe).
    pub async fn with_model<T: Send + 'static>(
        self,
        work: impl FnOnce(&dyn Runner) -> Result<T, PluginError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        let Prepared { runner, candidate, .. } = self;
        let result = tokio::task::spawn_blocking(move || {
            let result = work(runner.runner().as_ref());
            drop(runner);
            result
        })
        .await
        .map_err(|error| ServiceError::Internal(error.to_string()))?;
        result.map_err(|error| ServiceError::Generate {
            model: candidate.model_id,
            backend: candidate.backend,
            error,
        })
    }

    /// What the model holds now, on the host and on its device. For a model in a
    /// worker process, a round trip over its pipe.
    pub fn memory(&self) -> MemorySnapshot {
        self.runner.runner().memory().into()
    }

    /// Generate, sending each piece to `tokens`. Dropping the receiver cancels the
    /// generation at the next token.
    pub async fn run(
        self,
        tokens: mpsc::UnboundedSender<Emitted>,
    ) -> Result<Completion, ServiceError> {
        let Prepared { runner, candidate, request, fallbacks, started } = self;
        let outcome = tokio::task::spawn_blocking(move || {
            let mut sink =
                ChannelSink { tokens, started, first_token_ms: None, logprobs: Vec::new() };
            let result = runner.runner().generate(&request, &mut sink);
            // The model is released here, on this thread, before the answer is
            // reported, so its idle timers start from the end of the generation.
            drop(runner);
            (result, sink.first_token_ms)
        })
        .await;
        let (result, time_to_first_token_ms) =
            outcome.map_err(|error| ServiceError::Internal(error.to_string()))?;
        let stats = result.and_then(|stats| nothing_generated(stats, time_to_first_token_ms));
        let stats = stats.map_err(|error| ServiceError::Generate {
            model: candidate.model_id.clone(),
            backend: candidate.backend.clone(),
            error,
        })?;
        Ok(completion(candidate, stats, fallbacks, time_to_first_token_ms, started))
    }
}

/// A generation that ended on its very first token with no text at all is what a
/// model whose computation went wrong produces (NaN logits sample an end token), not an
/// answer: an error, never an empty success.
fn nothing_generated(
    stats: GenerateStats,
    time_to_first_token_ms: Option<f64>,
) -> Result<GenerateStats, PluginError> {
    let ended_at_once = stats.completion_tokens == 0
        && time_to_first_token_ms.is_none()
        && stats.finish_reason == FinishReason::Stop;
    if ended_at_once {
        return Err(PluginError::model_file(
            "the model produced no text: it ended on its first token, which a sound model does not do; its file may be damaged",
        ));
    }
    Ok(stats)
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
    tokens: mpsc::UnboundedSender<Emitted>,
    started: Instant,
    first_token_ms: Option<f64>,
    /// Log-probabilities of tokens whose text has not come yet. Those of tokens whose
    /// text never comes (held for a stop string that then matched) are not the
    /// answer's, and go with the sink.
    logprobs: Vec<TokenLogprobs>,
}

impl TokenSink for ChannelSink {
    fn on_token(&mut self, piece: &str) -> SinkControl {
        if self.first_token_ms.is_none() {
            self.first_token_ms = Some(self.started.elapsed().as_secs_f64() * 1e3);
        }
        let emitted =
            Emitted { text: piece.to_string(), logprobs: std::mem::take(&mut self.logprobs) };
        match self.tokens.send(emitted) {
            Ok(()) => SinkControl::Continue,
            Err(_) => SinkControl::Stop,
        }
    }

    fn on_logprobs(&mut self, logprobs: &TokenLogprobs) {
        self.logprobs.push(logprobs.clone());
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
        for (at, (name, _)) in adapters.iter().enumerate() {
            // Twice, llama.cpp would apply it once with one of the scales: which one the
            // client meant is theirs to say.
            if adapters[..at].iter().any(|(earlier, _)| earlier == name) {
                return Err(ServiceError::AdapterTwice(name.clone()));
            }
            let adapter =
                catalog.adapter(name).ok_or_else(|| ServiceError::UnknownAdapter(name.clone()))?;
            route.model.get_or_insert_with(|| adapter.base_model.clone());
        }
        let plan = self.route(&route)?;
        // Files left out by capability are real attempts: their reasons are the client's.
        let mut fallbacks = plan.unrunnable.clone();
        // With no backend to run it at all, nothing is missing from the store: the model
        // can be served as soon as a plugin for it lands in the (live) plugins folder.
        let mut cause = if plan.backend_order.is_empty() {
            LoadFailure::NoBackend
        } else if plan.unrunnable.is_empty() {
            LoadFailure::NotInstalled
        } else {
            LoadFailure::Unrunnable
        };
        // An adapter missing for one backend only rules that candidate out; it is the
        // answer only when no candidate got further than that.
        let mut adapter_missing = None;
        // So is a backend that does not state a feature the request needs.
        let mut unsupported = None;
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
                cause = cause.max(LoadFailure::InvalidFile);
                continue;
            }
            request.adapters = resolved.into_iter().map(|adapter| adapter.adapter).collect();
            if let Some(error) = self.unsupported(&candidate.backend, &request) {
                unsupported.get_or_insert(error);
                continue;
            }
            let spec = self.load_spec(&catalog, &candidate);
            self.unload_older_files(&spec.key).await;
            match self.scheduler().acquire(spec, keep_alive).await {
                Ok(runner) => {
                    return Ok(Prepared { runner, candidate, request, fallbacks, started });
                }
                Err(SchedulerError::Load { source, .. }) => {
                    tracing::warn!(model = %candidate.model_id, backend = %candidate.backend, error = %source, "load failed; falling back");
                    fallbacks
                        .push(format!("{} on {}: {source}", candidate.model_id, candidate.backend));
                    cause = cause.max(LoadFailure::of(&source));
                }
                Err(SchedulerError::Busy { model, waited }) => {
                    return Err(ServiceError::Busy { model: model.to_string(), waited });
                }
                // Only `unload` and `trim` answer that; an acquire loads what is missing.
                Err(error @ SchedulerError::NotLoaded(_)) => {
                    return Err(ServiceError::Internal(error.to_string()));
                }
            }
        }
        if fallbacks.len() == plan.unrunnable.len() {
            if let Some(error) = adapter_missing.or(unsupported) {
                return Err(error);
            }
            fallbacks.extend(plan.notes);
        }
        Err(ServiceError::NothingLoaded { attempts: fallbacks, cause })
    }

    /// Unload the copies of `key`'s model loaded from an earlier version of its file
    /// (rewritten or replaced since): idle ones now, busy ones when their requests end.
    /// The request then loads the file as it is now, through the gate.
    async fn unload_older_files(&self, key: &ModelKey) {
        let older: Vec<ModelKey> = self
            .scheduler
            .snapshot()
            .into_iter()
            .map(|model| model.key)
            .filter(|loaded| {
                loaded.backend == key.backend
                    && loaded.model_id == key.model_id
                    && loaded.path == key.path
                    && loaded.file != key.file
            })
            .collect();
        for older in older {
            tracing::info!(model = %older, "its file changed on disk since it was loaded; loading it again");
            // NotLoaded only means it went on its own meanwhile.
            let _ = self.scheduler.unload(&older).await;
        }
    }

    /// Route, load and generate in one call.
    pub async fn generate(
        &self,
        generation: Generation,
        tokens: mpsc::UnboundedSender<Emitted>,
    ) -> Result<Completion, ServiceError> {
        self.prepare(generation).await?.run(tokens).await
    }

    /// The first field of `request` that needs a feature `backend` does not list.
    fn unsupported(&self, backend: &str, request: &GenerateRequest) -> Option<ServiceError> {
        let registry = self.registry();
        let features = &registry.get(backend)?.info.features;
        let (field, feature) = request
            .features_needed()
            .into_iter()
            .find(|(_, feature)| !features.iter().any(|listed| listed == feature))?;
        Some(ServiceError::Unsupported { field, feature, backend: backend.to_string() })
    }

    /// The context window, in tokens, that `model_id` is loaded with: the configured
    /// one, else the catalog's for the model (0 when neither says: the backend's own).
    pub fn context_window(&self, model_id: &str) -> u32 {
        context_window(self.config.context_size, &self.catalog(), model_id)
    }

    fn load_spec(&self, catalog: &Catalog, candidate: &Candidate) -> LoadSpec {
        let model = catalog.model(&candidate.model_id);
        let context_size = context_window(self.config.context_size, catalog, &candidate.model_id);
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
        let placement = self.config.placement_for(catalog);
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
                // Unreadable, the load fails with why; the version does not matter.
                file: FileVersion::of(&candidate.path).unwrap_or_default(),
            },
            request: LoadRequest {
                model_id: candidate.model_id.as_str().into(),
                paths: RVec::from(vec![RString::from(candidate.path.display().to_string())]),
                format: candidate.artifact.format.as_str().into(),
                context_size,
                threads: self.config.threads,
                device: placement.devices.map(RString::from).into(),
                split_mode: placement.split.unwrap_or_default(),
                main_device: placement.main.map(RString::from).into(),
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

/// The context window a model is loaded with: `configured` when set, else the catalog's.
fn context_window(configured: u32, catalog: &Catalog, model_id: &str) -> u32 {
    match configured {
        0 => catalog.model(model_id).map_or(0, |model| model.context_size),
        size => size,
    }
}
