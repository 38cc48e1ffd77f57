//! A loaded model: its weights, the adapters loaded for it so far, the KV cache, and
//! the lifecycle calls; generation is the model layer's loop over this engine's
//! forward pass, and an embedding the model layer's pooling of its hidden states.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hearth_model::{context_size, embed, generate, Config, Executor, Session, Text};
use hearth_sdk::helpers::Gguf;
use hearth_sdk::{
    AdapterUse, Embedding, GenerateRequest, GenerateStats, MemoryUsage, Model, PluginError,
    TokenSink,
};

use crate::ffi;
use crate::forward::{Forward, KvCache};
use crate::lora::{ActiveAdapters, Adapter};
use crate::mlx_format::Folder;
use crate::weights::{check_types, Tensors, Weights};

/// Prompt tokens evaluated per forward call: bounds the attention scores' memory.
const PROMPT_CHUNK: usize = 512;

/// The KV cache and what it holds.
#[derive(Default)]
struct State {
    cache: KvCache,
    session: Session,
}

/// A forward pass over one model's KV cache: what the generation loop drives.
struct MlxExecutor<'a> {
    forward: Forward<'a>,
    cache: &'a mut KvCache,
}

impl Executor for MlxExecutor<'_> {
    fn forward(&mut self, tokens: &[u32], pos: u32) -> Result<Vec<f32>, PluginError> {
        self.cache.truncate(pos)?;
        let mut logits = Vec::new();
        for chunk in tokens.chunks(PROMPT_CHUNK) {
            logits = self.forward.run(self.cache, chunk)?;
        }
        Ok(logits)
    }
}

pub struct MlxModel {
    // Field order is drop order: the cache and adapters before the weights.
    state: Mutex<State>,
    adapters: Mutex<HashMap<String, Arc<Adapter>>>,
    weights: Weights,
    config: Config,
    ctx: u32,
    text: Text,
}

impl MlxModel {
    /// Load the GGUF file `path`: validate, refuse what MLX cannot load, then let MLX
    /// read the weights.
    pub fn load(path: &str, context_size: u32) -> Result<Self, PluginError> {
        let gguf = Gguf::open(path).map_err(|error| PluginError::model_file(error.to_string()))?;
        check_types(&gguf)?;
        let config = Config::from_gguf(&gguf)?;
        hearth_model::arch::check_runs(config.arch, "MLX", crate::runs)?;
        let text = Text::from_gguf(&gguf, &config)?;
        let weights = Weights::assemble(Tensors::from_gguf(&gguf)?, &config)?;
        Ok(Self::new(config, weights, text, context_size))
    }

    /// Load an MLX-format folder (see [`crate::mlx_format`]); `path` is the folder or
    /// one of its weight files.
    pub fn load_mlx(path: &str, context_size: u32) -> Result<Self, PluginError> {
        let folder = Folder::open(path)?;
        let config = folder.config()?;
        let text = folder.text()?;
        let weights = Weights::assemble(folder.tensors(config.arch)?, &config)?;
        Ok(Self::new(config, weights, text, context_size))
    }

    fn new(config: Config, weights: Weights, text: Text, requested: u32) -> Self {
        Self {
            state: Mutex::default(),
            adapters: Mutex::new(HashMap::new()),
            weights,
            ctx: context_size(requested, &config),
            config,
            text,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Logits after evaluating `tokens` from position 0 (used by the cross-checks).
    pub fn logits(&self, tokens: &[u32]) -> Result<Vec<f32>, PluginError> {
        let forward = Forward {
            config: &self.config,
            weights: &self.weights,
            adapters: &ActiveAdapters::default(),
        };
        forward.run(&mut KvCache::default(), tokens)
    }

    /// The request's adapters, loaded once per path and checked against this model.
    fn active_adapters(&self, uses: &[AdapterUse]) -> Result<ActiveAdapters, PluginError> {
        let mut loaded = self.adapters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut active = Vec::with_capacity(uses.len());
        for adapter in uses {
            let path = adapter.path.as_str();
            if !loaded.contains_key(path) {
                let new = Adapter::load(adapter.name.as_str(), path, &self.config)?;
                loaded.insert(path.to_string(), Arc::new(new));
            }
            active.push((Arc::clone(&loaded[path]), adapter.scale));
        }
        Ok(ActiveAdapters::new(active))
    }
}

impl Model for MlxModel {
    fn generate(
        &self,
        request: &GenerateRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<GenerateStats, PluginError> {
        let adapters = self.active_adapters(&request.adapters)?;
        let forward = Forward { config: &self.config, weights: &self.weights, adapters: &adapters };
        // One generation at a time per model: they share the KV cache.
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let State { cache, session } = &mut *state;
        let mut executor = MlxExecutor { forward, cache };
        let result = generate(&self.text, self.ctx, session, &mut executor, request, sink);
        if result.is_err() {
            // A failed step may have left some layers' cache longer than others.
            *state = State::default();
        }
        result
    }

    fn embed(&self, text: &str, truncate: bool) -> Result<Embedding, PluginError> {
        // A cache of its own, grown a chunk at a time like a prompt's, so the
        // generation's prefix stays cached; the lock keeps one MLX graph at a time.
        let _one_at_a_time = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let adapters = ActiveAdapters::default();
        let forward = Forward { config: &self.config, weights: &self.weights, adapters: &adapters };
        embed(&self.text, &self.config, u32::MAX, text, truncate, |tokens| {
            let mut cache = KvCache::default();
            let mut states = Vec::with_capacity(tokens.len() * self.config.n_embd as usize);
            for chunk in tokens.chunks(PROMPT_CHUNK) {
                states.extend(forward.hidden_states(&mut cache, chunk)?);
            }
            Ok(states)
        })
    }

    fn trim(&self) {
        *self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = State::default();
        ffi::clear_cache();
    }

    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>, PluginError> {
        self.text.tokenize(text, add_special)
    }

    fn detokenize(&self, tokens: &[u32]) -> Result<String, PluginError> {
        self.text.detokenize(tokens)
    }

    fn count_prompt_tokens(&self, request: &GenerateRequest) -> Result<u32, PluginError> {
        let tokens = self.text.prompt(request)?;
        Ok(u32::try_from(tokens.len()).unwrap_or(u32::MAX))
    }

    fn memory(&self) -> MemoryUsage {
        // This model's own arrays (weights, adapters, KV cache), plus MLX's buffer cache,
        // which is process-wide: MLX has one allocator for every model it runs.
        let session =
            self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).cache.nbytes();
        let adapters: u64 = self
            .adapters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(|a| a.nbytes())
            .sum();
        let bytes = self.weights.nbytes() + session + adapters + ffi::cache_memory();
        if ffi::gpu_available() {
            MemoryUsage { host_bytes: 0, device_bytes: bytes }
        } else {
            MemoryUsage { host_bytes: bytes, device_bytes: 0 }
        }
    }
}
