//! The scheduler of loaded models: states, ref counts, soft/hard idle timers, eviction.
//!
//! Every request asks the [`Scheduler`] for a [`RunnerRef`] with [`Scheduler::acquire`].
//! The scheduler loads the model if needed (one load per model, shared by every request
//! that arrives while it runs), counts the references, and once the last reference is
//! dropped starts the model's idle timers:
//!
//! ```text
//! Loading → Ready ⇄ Busy → Trimmed (soft timeout: runner.trim()) → Unloaded (hard timeout)
//! ```
//!
//! Timers never run while a request is in flight and restart from zero when the last
//! one ends. A request for a trimmed model reuses it at once; a request for an unloaded
//! one loads it again. Before a new model is loaded, the least recently used idle model
//! is evicted while the resident count or the memory budget would be exceeded.
//!
//! All waiting uses `tokio::time`, so the behaviour is tested on tokio's paused clock.

mod claim;
mod release;
mod scheduler;
mod table;
#[cfg(test)]
mod tests;
mod timers;

pub use claim::RunnerRef;
pub use scheduler::Scheduler;

use hearth_sdk::{
    Embedding, GenerateRequest, GenerateStats, LoadRequest, MemoryUsage, PluginError, TokenSink,
};
use serde::Serialize;
use std::{fmt, path::PathBuf, sync::Arc, time::Duration};

use crate::store::FileVersion;

/// A loaded model as the scheduler sees it (the plugin layer implements this over the
/// ABI object). Every method blocks; the caller runs them off the async runtime.
pub trait Runner: Send + Sync + 'static {
    /// Generate one answer, streaming pieces into `sink`.
    fn generate(
        &self,
        request: &GenerateRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<GenerateStats, PluginError>;
    /// Soft release: KV cache, scratch buffers and caches go, the weights stay.
    fn trim(&self) -> Result<(), PluginError>;
    /// What the model holds right now.
    fn memory(&self) -> MemoryUsage;
    /// The model's token ids for `text` (see [`hearth_sdk::Model::tokenize`]).
    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>, PluginError> {
        let _ = (text, add_special);
        Err(PluginError::unsupported("this model does not tokenize on request"))
    }
    /// The text of `tokens`.
    fn detokenize(&self, tokens: &[u32]) -> Result<String, PluginError> {
        let _ = tokens;
        Err(PluginError::unsupported("this model does not detokenize on request"))
    }
    /// How many tokens `request`'s prompt is (see
    /// [`hearth_sdk::Model::count_prompt_tokens`]).
    fn count_prompt_tokens(&self, request: &GenerateRequest) -> Result<u32, PluginError> {
        let _ = request;
        Err(PluginError::unsupported("this model does not count prompt tokens"))
    }
    /// The embedding of `text` (see [`hearth_sdk::Model::embed`]).
    fn embed(&self, text: &str, truncate: bool) -> Result<Embedding, PluginError> {
        let _ = (text, truncate);
        Err(PluginError::unsupported("this model does not embed"))
    }
    /// Whether whatever runs the model is there now. A model in a worker process is
    /// not while its worker is dead (crashed, or killed for hanging); the next request
    /// starts a fresh one.
    fn running(&self) -> bool {
        true
    }
}

/// Loads runners. Blocking: the scheduler calls it on a blocking thread.
pub trait Loader: Send + Sync + 'static {
    fn load(&self, spec: &LoadSpec) -> Result<Arc<dyn Runner>, PluginError>;
}

/// Which loaded model: the same file under another backend is another model, and so is
/// the same model under a rebuilt plugin or an edited catalog definition, so that new
/// requests load it afresh while requests in flight finish on the old one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ModelKey {
    pub backend: String,
    pub model_id: String,
    pub path: PathBuf,
    /// The plugin build that loads it (the host's load counter for plugin libraries).
    pub plugin_generation: u64,
    /// The catalog revision in which the model's definition last changed.
    pub definition_revision: u64,
    /// The version of the model's file it was loaded from: a file rewritten or
    /// replaced while its model is loaded is another model.
    pub file: FileVersion,
}

impl fmt::Display for ModelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.model_id, self.backend)
    }
}

/// Everything needed to load one model and keep it resident.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub key: ModelKey,
    pub request: LoadRequest,
    /// The catalog's per-model idle timeouts; `None` uses
    /// [`SchedulerPolicy::default_idle`].
    pub idle: Option<IdleTimeouts>,
    /// What the model will hold once loaded; counts against the memory budget while it
    /// loads, before the runner can report its real usage.
    pub estimated_bytes: u64,
}

/// How long a model may sit idle before it is trimmed (soft) and unloaded (hard), both
/// measured from the end of the last request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct IdleTimeouts {
    pub soft: Duration,
    pub hard: Duration,
}

impl Default for IdleTimeouts {
    /// The seed's idle policy: trim after 2 minutes, unload after 5.
    fn default() -> Self {
        Self { soft: Duration::from_secs(2 * 60), hard: Duration::from_secs(5 * 60) }
    }
}

/// A request's `keep_alive`. The most recent request for a model sets the idle period
/// that follows it, as in Ollama.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeepAlive {
    /// The model's own [`IdleTimeouts`].
    #[default]
    Default,
    /// Unload this long after the request ends (trimming earlier if the model's soft
    /// timeout is shorter); zero unloads as soon as the request ends.
    For(Duration),
    /// Never unload on a timer; the model is still trimmed after its soft timeout, which
    /// keeps the weights resident, and eviction may still take it.
    Forever,
}

/// Limits for the whole scheduler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerPolicy {
    /// Idle timeouts of a model whose [`LoadSpec`] does not override them.
    pub default_idle: IdleTimeouts,
    /// How many models may be resident (loading, loaded or trimmed) at once; 0 means
    /// no limit.
    pub max_resident_models: usize,
    /// Sum of the models' host and device bytes allowed at once; `None` means no limit.
    /// A model that does not fit even alone is still loaded once nothing else is: the
    /// loader then answers with its own out-of-memory error.
    pub memory_budget_bytes: Option<u64>,
    /// How long an acquire waits for a busy model to become idle so it can be evicted
    /// before it gives up with [`SchedulerError::Busy`].
    pub evict_wait: Duration,
}

impl Default for SchedulerPolicy {
    fn default() -> Self {
        Self {
            default_idle: IdleTimeouts::default(),
            max_resident_models: 3,
            memory_budget_bytes: None,
            evict_wait: Duration::from_secs(5 * 60),
        }
    }
}

/// Where a model is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelState {
    Loading,
    /// Loaded, no request in flight.
    Ready,
    /// Loaded, at least one request in flight.
    Busy,
    /// Idle past the soft timeout: caches released, weights kept.
    Trimmed,
    /// Its worker process died (a crash, or a kill for hanging) and holds nothing;
    /// the next request starts a fresh worker and loads the model again.
    Exited,
    /// Being dropped; the entry disappears once its memory is returned.
    Unloaded,
}

/// One loaded model for `hearth ps` and `GET /api/ps`. Times are Unix milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoadedModelSnapshot {
    pub key: ModelKey,
    pub state: ModelState,
    /// Requests holding the model, including those waiting for it to load.
    pub refs: usize,
    /// The runner's last reported usage, or the estimate while it loads.
    pub memory: MemorySnapshot,
    /// When the load finished; `None` while loading.
    pub loaded_at_ms: Option<u64>,
    pub last_used_ms: u64,
    /// When the idle model will be trimmed; `None` while busy or when no trim is due.
    pub trim_at_ms: Option<u64>,
    /// When the idle model will be unloaded; `None` while busy or kept forever.
    pub unload_at_ms: Option<u64>,
}

/// [`MemoryUsage`] in a serializable form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MemorySnapshot {
    pub host_bytes: u64,
    pub device_bytes: u64,
}

impl MemorySnapshot {
    /// Where the model lives, as Ollama's `ps` says it: `100% GPU`, `100% CPU`, or
    /// `37%/63% CPU/GPU` for a model only partly offloaded.
    pub fn processor(&self) -> String {
        let total = self.host_bytes.saturating_add(self.device_bytes);
        match (self.host_bytes, self.device_bytes) {
            (_, 0) => "100% CPU".to_string(),
            (0, _) => "100% GPU".to_string(),
            _ => {
                let cpu = (self.host_bytes as f64 * 100.0 / total as f64).round() as u64;
                format!("{cpu}%/{}% CPU/GPU", 100 - cpu)
            }
        }
    }
}

impl From<MemoryUsage> for MemorySnapshot {
    fn from(usage: MemoryUsage) -> Self {
        Self { host_bytes: usage.host_bytes, device_bytes: usage.device_bytes }
    }
}

/// What can go wrong in the scheduler.
#[derive(Clone, Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("loading {model} failed: {source}")]
    Load { model: ModelKey, source: PluginError },
    #[error("cannot load {model}: every resident model stayed busy for {waited:?}")]
    Busy { model: ModelKey, waited: Duration },
    #[error("{0} is not loaded")]
    NotLoaded(ModelKey),
}
