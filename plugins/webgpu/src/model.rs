//! A loaded model: the generation loop (template, tokenizer, forward pass, sampling,
//! stop strings, streaming, cancellation, stats), the LoRA adapters loaded for it so
//! far, and the lifecycle calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hearth_sdk::helpers::{ChatTemplate, Gguf, Sampler, StopMatcher, StreamDecoder, Tokenizer};
use hearth_sdk::{
    AdapterUse, FinishReason, GenerateRequest, GenerateStats, MemoryUsage, Model, PluginError,
    SinkControl, TokenSink,
};

use crate::device::Gpu;
use crate::forward::{Forward, Scratch};
use crate::kernels::Kernels;
use crate::lora::LoraAdapter;
use crate::weights::{check_types, Config, Weights};

/// Context used when the request leaves it to the backend: enough for chat, small
/// enough that the KV cache stays modest on a software adapter.
const DEFAULT_CONTEXT: u32 = 2048;

pub struct WebGpuModel {
    // Field order is drop order: buffers go before the device that made them.
    scratch: Mutex<Option<Scratch>>,
    /// Adapters by file path, loaded on first use and kept like the weights: a later
    /// request with the same adapter pays nothing.
    adapters: Mutex<HashMap<String, Arc<LoraAdapter>>>,
    weights: Weights,
    kernels: Kernels,
    gpu: Gpu,
    config: Config,
    ctx: u32,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
}

impl WebGpuModel {
    /// Load `path`: validate, refuse what the kernels cannot run, then upload.
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
        let requested = if context_size == 0 { DEFAULT_CONTEXT } else { context_size };
        let ctx = requested.min(config.context_length);
        let gpu = Gpu::new()?;
        let kernels = Kernels::new(&gpu);
        let weights = Weights::load(&gpu, &gguf, &config)?;
        Ok(Self {
            scratch: Mutex::new(None),
            adapters: Mutex::default(),
            weights,
            kernels,
            gpu,
            config,
            ctx,
            tokenizer,
            template,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Logits after evaluating `tokens` from position 0 with `adapters` applied (used by
    /// the cross-checks).
    pub fn logits(&self, tokens: &[u32], adapters: &[AdapterUse]) -> Result<Vec<f32>, PluginError> {
        let adapters = self.resolve_adapters(adapters)?;
        let mut scratch = self.scratch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let scratch = self.ensure_scratch(&mut scratch)?;
        self.forward(&applied(&adapters)).run(scratch, tokens, 0)
    }

    fn forward<'a>(&'a self, adapters: &'a [(&'a LoraAdapter, f32)]) -> Forward<'a> {
        Forward {
            gpu: &self.gpu,
            kernels: &self.kernels,
            config: &self.config,
            weights: &self.weights,
            adapters,
        }
    }

    /// Load (once) the request's adapters; those at scale 0 are left out, so such a
    /// request runs exactly the base model.
    fn resolve_adapters(
        &self,
        wanted: &[AdapterUse],
    ) -> Result<Vec<(Arc<LoraAdapter>, f32)>, PluginError> {
        let mut loaded = self.adapters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut resolved = Vec::new();
        for adapter in wanted.iter().filter(|adapter| adapter.scale != 0.0) {
            let path = adapter.path.as_str();
            let entry = match loaded.get(path) {
                Some(entry) => entry.clone(),
                None => {
                    let entry = Arc::new(LoraAdapter::load(
                        &self.gpu,
                        &self.config,
                        adapter.name.as_str(),
                        path,
                    )?);
                    loaded.insert(path.to_string(), entry.clone());
                    entry
                }
            };
            resolved.push((entry, adapter.scale));
        }
        Ok(resolved)
    }

    fn ensure_scratch<'a>(
        &self,
        slot: &'a mut Option<Scratch>,
    ) -> Result<&'a Scratch, PluginError> {
        if slot.is_none() {
            *slot = Some(Scratch::new(&self.gpu, &self.config, self.ctx)?);
        }
        Ok(slot.as_ref().expect("just filled"))
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
}

impl Model for WebGpuModel {
    fn generate(
        &self,
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
        let adapters = self.resolve_adapters(&request.adapters)?;
        let adapters = applied(&adapters);
        // One generation at a time per model: they share the KV cache.
        let mut slot = self.scratch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let scratch = self.ensure_scratch(&mut slot)?;
        let forward = self.forward(&adapters);
        let mut logits = forward.run(scratch, &prompt, 0)?;
        let prompt_ms = started.elapsed().as_secs_f64() * 1e3;

        let mut sampler = Sampler::new(&request.sampling);
        prompt.iter().for_each(|&token| sampler.accept(token));
        let mut decoder = StreamDecoder::new();
        let mut stops =
            StopMatcher::new(request.stop.iter().map(abi_stable::std_types::RString::as_str));
        let max_tokens = if request.max_tokens == 0 { u32::MAX } else { request.max_tokens };
        let mut pos = prompt.len() as u32;
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
            if generated >= max_tokens || pos + 1 >= self.ctx {
                break FinishReason::Length;
            }
            logits = forward.run(scratch, &[token], pos)?;
            pos += 1;
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

    fn trim(&self) {
        *self.scratch.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    fn memory(&self) -> MemoryUsage {
        // The GGUF map is closed after upload; the host keeps only the tokenizer and the
        // template (a few MB), which are not counted. On a software adapter the
        // "device" bytes live in host RAM too.
        MemoryUsage { host_bytes: 0, device_bytes: self.gpu.allocated() }
    }
}

fn applied(adapters: &[(Arc<LoraAdapter>, f32)]) -> Vec<(&LoraAdapter, f32)> {
    adapters.iter().map(|(adapter, scale)| (adapter.as_ref(), *scale)).collect()
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
