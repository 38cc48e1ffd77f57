//! A loaded model: the generation loop (template, tokenizer, forward pass, sampling,
//! stop strings, streaming, cancellation, stats), adapters, and the lifecycle calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hearth_sdk::helpers::{ChatTemplate, Gguf, Sampler, StopMatcher, StreamDecoder, Tokenizer};
use hearth_sdk::{
    AdapterUse, FinishReason, GenerateRequest, GenerateStats, MemoryUsage, Model, PluginError,
    SinkControl, TokenSink,
};

use crate::ffi;
use crate::forward::{Forward, KvCache};
use crate::lora::{ActiveAdapters, Adapter};
use crate::mlx_format::Folder;
use crate::weights::{check_types, Config, Tensors, Weights};

/// Context used when the request leaves it to the backend.
const DEFAULT_CONTEXT: u32 = 4096;
/// Prompt tokens evaluated per forward call: bounds the attention scores' memory.
const PROMPT_CHUNK: usize = 512;

/// What one generation leaves for the next: the KV cache of the tokens it evaluated,
/// and the adapters they were evaluated with (a prefix is reusable only under the same).
#[derive(Default)]
struct Session {
    cache: KvCache,
    tokens: Vec<u32>,
    adapters: Vec<(String, f32)>,
}

impl Session {
    /// Evaluate the prompt, reusing the cached prefix it shares with the last one.
    fn evaluate_prompt(
        &mut self,
        forward: &Forward<'_>,
        prompt: &[u32],
        adapters: Vec<(String, f32)>,
    ) -> Result<Vec<f32>, PluginError> {
        if self.adapters != adapters {
            *self = Session { adapters, ..Session::default() };
        }
        // At least the last prompt token is evaluated again: its logits are needed.
        let shared = self
            .tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len() - 1);
        self.cache.truncate(shared as u32)?;
        self.tokens.truncate(shared);
        let mut logits = Vec::new();
        for chunk in prompt[shared..].chunks(PROMPT_CHUNK) {
            logits = forward.run(&mut self.cache, chunk)?;
            self.tokens.extend_from_slice(chunk);
        }
        Ok(logits)
    }
}

pub struct MlxModel {
    // Field order is drop order: the cache and adapters before the weights.
    session: Mutex<Session>,
    adapters: Mutex<HashMap<String, Arc<Adapter>>>,
    weights: Weights,
    config: Config,
    ctx: u32,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
}

impl MlxModel {
    /// Load the GGUF file `path`: validate, refuse what MLX cannot load, then let MLX
    /// read the weights.
    pub fn load(path: &str, context_size: u32) -> Result<Self, PluginError> {
        let gguf = Gguf::open(path).map_err(|error| PluginError::model_file(error.to_string()))?;
        check_types(&gguf)?;
        let config = Config::from_gguf(&gguf)?;
        let tokenizer = Tokenizer::from_gguf(&gguf)
            .map_err(|error| PluginError::unsupported(error.to_string()))?;
        let template = match gguf.str("tokenizer.chat_template") {
            Ok(source) => {
                let text = |id: Option<u32>| {
                    id.and_then(|id| tokenizer.token_text(id)).unwrap_or("").to_string()
                };
                let template =
                    ChatTemplate::new(source, &text(tokenizer.bos()), &text(tokenizer.eos()))
                        .map_err(|error| PluginError::unsupported(error.to_string()))?;
                Some(template)
            }
            Err(_) => None,
        };
        let weights = Weights::assemble(Tensors::from_gguf(&gguf)?, &config)?;
        Ok(Self::new(config, weights, tokenizer, template, context_size))
    }

    /// Load an MLX-format folder (see [`crate::mlx_format`]); `path` is the folder or
    /// one of its weight files.
    pub fn load_mlx(path: &str, context_size: u32) -> Result<Self, PluginError> {
        let folder = Folder::open(path)?;
        let config = folder.config()?;
        let (tokenizer, template) = folder.tokenizer()?;
        let weights = Weights::assemble(folder.tensors()?, &config)?;
        Ok(Self::new(config, weights, tokenizer, template, context_size))
    }

    fn new(
        config: Config,
        weights: Weights,
        tokenizer: Tokenizer,
        template: Option<ChatTemplate>,
        context_size: u32,
    ) -> Self {
        let requested = if context_size == 0 { DEFAULT_CONTEXT } else { context_size };
        let ctx = requested.min(config.context_length);
        Self {
            session: Mutex::new(Session::default()),
            adapters: Mutex::new(HashMap::new()),
            weights,
            config,
            ctx,
            tokenizer,
            template,
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

    fn prompt_text(&self, request: &GenerateRequest) -> Result<String, PluginError> {
        if let Some(prompt) = request.prompt.as_ref().into_option() {
            return Ok(prompt.to_string());
        }
        let template = self.template.as_ref().ok_or_else(|| {
            PluginError::invalid_request(
                "the model has no chat template; send a raw prompt instead of messages",
            )
        })?;
        template
            .render(&request.messages, true)
            .map_err(|error| PluginError::invalid_request(error.to_string()))
    }

    /// The request's adapters, loaded once per path and checked against this model.
    fn active_adapters(&self, uses: &[AdapterUse]) -> Result<ActiveAdapters, PluginError> {
        let mut loaded = self.adapters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut active = Vec::with_capacity(uses.len());
        for adapter in uses {
            let path = adapter.path.as_str();
            if !loaded.contains_key(path) {
                let new = Adapter::load(adapter.name.as_str(), path, &self.config)?;
                for (base, inputs, outputs) in new.shapes() {
                    let fits = self
                        .weights
                        .linear(base)
                        .is_some_and(|linear| linear.in_out() == (inputs, outputs));
                    if !fits {
                        return Err(PluginError::invalid_request(format!(
                            "adapter `{}` ({path}): `{base}` [{inputs} -> {outputs}] does not match the model",
                            adapter.name
                        )));
                    }
                }
                loaded.insert(path.to_string(), Arc::new(new));
            }
            active.push((Arc::clone(&loaded[path]), adapter.scale));
        }
        Ok(ActiveAdapters::new(active))
    }

    fn generate_locked(
        &self,
        session: &mut Session,
        request: &GenerateRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<GenerateStats, PluginError> {
        let started = Instant::now();
        let text = self.prompt_text(request)?;
        let prompt = self
            .tokenizer
            .encode(&text)
            .map_err(|error| PluginError::invalid_request(error.to_string()))?;
        if prompt.is_empty() || prompt.len() >= self.ctx as usize {
            return Err(PluginError::invalid_request(format!(
                "the prompt is {} tokens; it must be between 1 and {} for this context",
                prompt.len(),
                self.ctx - 1
            )));
        }
        let adapters = self.active_adapters(&request.adapters)?;
        let forward = Forward { config: &self.config, weights: &self.weights, adapters: &adapters };
        let signature = request
            .adapters
            .iter()
            .filter(|a| a.scale != 0.0)
            .map(|a| (a.path.to_string(), a.scale))
            .collect();
        let mut logits = session.evaluate_prompt(&forward, &prompt, signature)?;
        let prompt_ms = started.elapsed().as_secs_f64() * 1e3;

        let mut sampler = Sampler::new(&request.sampling);
        prompt.iter().for_each(|&token| sampler.accept(token));
        let mut decoder = StreamDecoder::new();
        let mut stops =
            StopMatcher::new(request.stop.iter().map(abi_stable::std_types::RString::as_str));
        let max_tokens = if request.max_tokens == 0 { u32::MAX } else { request.max_tokens };
        let mut generated = 0u32;
        let mut stopped_by_string = false;
        let finish_reason = loop {
            let token = sampler.sample(&logits);
            if self.tokenizer.is_end_of_generation(token) {
                break FinishReason::Stop;
            }
            generated += 1;
            sampler.accept(token);
            let released = stops.push(&decoder.push(self.tokenizer.token_bytes(token)));
            if !released.text.is_empty() && sink.on_token(&released.text) == SinkControl::Stop {
                break FinishReason::Cancelled;
            }
            if released.stopped {
                stopped_by_string = true;
                break FinishReason::Stop;
            }
            if generated >= max_tokens || session.cache.tokens() + 1 >= self.ctx {
                break FinishReason::Length;
            }
            logits = forward.run(&mut session.cache, &[token])?;
            session.tokens.push(token);
        };
        if finish_reason != FinishReason::Cancelled && !stopped_by_string {
            // Text held back for a stop string that never came, and a cut character.
            let released = stops.push(&decoder.finish());
            let rest =
                if released.stopped { released.text } else { released.text + &stops.finish() };
            if !rest.is_empty() && sink.on_token(&rest) == SinkControl::Stop {
                return Ok(stats(
                    prompt.len(),
                    generated,
                    prompt_ms,
                    started,
                    FinishReason::Cancelled,
                ));
            }
        }
        Ok(stats(prompt.len(), generated, prompt_ms, started, finish_reason))
    }
}

impl Model for MlxModel {
    fn generate(
        &self,
        request: &GenerateRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<GenerateStats, PluginError> {
        // One generation at a time per model: they share the KV cache.
        let mut session = self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = self.generate_locked(&mut session, request, sink);
        if result.is_err() {
            // A failed step may have left some layers' cache longer than others.
            *session = Session::default();
        }
        result
    }

    fn trim(&self) {
        *self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Session::default();
        ffi::clear_cache();
    }

    fn memory(&self) -> MemoryUsage {
        // This model's own arrays (weights, adapters, KV cache), plus MLX's buffer cache,
        // which is process-wide: MLX has one allocator for every model it runs.
        let session =
            self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner).cache.nbytes();
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

fn stats(
    prompt: usize,
    generated: u32,
    prompt_ms: f64,
    started: Instant,
    finish_reason: FinishReason,
) -> GenerateStats {
    GenerateStats {
        prompt_tokens: prompt as u32,
        completion_tokens: generated,
        prompt_ms,
        decode_ms: started.elapsed().as_secs_f64() * 1e3 - prompt_ms,
        finish_reason,
    }
}
