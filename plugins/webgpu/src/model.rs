//! A loaded model: its weights, the LoRA adapters loaded for it so far, the KV cache,
//! and the lifecycle calls; generation is the model layer's loop over this engine's
//! forward pass, and an embedding the model layer's pooling of its hidden states.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hearth_model::{context_size, embed, generate, Config, Executor, Session, Text};
use hearth_sdk::helpers::{CandidateSampling, Gguf, LogitAdjustments};
use hearth_sdk::{
    AdapterUse, Embedding, GenerateRequest, GenerateStats, MemoryUsage, Model, PluginError,
    TokenSink,
};

use crate::cache::CacheType;
use crate::device::Gpu;
use crate::forward::{Forward, Input, Pick, PickStep, Scratch};
use crate::kernels::Kernels;
use crate::lora::LoraAdapter;
use crate::plan::KernelPlan;
use crate::weights::{check_types, Weights};

/// The KV cache and activations (allocated on first use, freed by `trim`) and what
/// the cache holds.
#[derive(Default)]
struct State {
    scratch: Option<Scratch>,
    session: Session,
}

pub struct WebGpuModel {
    // Field order is drop order: buffers go before the device that made them.
    state: Mutex<State>,
    /// Adapters by file path, loaded on first use and kept like the weights: a later
    /// request with the same adapter pays nothing.
    adapters: Mutex<HashMap<String, Arc<LoraAdapter>>>,
    weights: Weights,
    kernels: Kernels,
    gpu: Gpu,
    config: Config,
    ctx: u32,
    text: Text,
}

/// A forward pass over one model's scratch: what the generation loop drives.
///
/// Decoding that picks its tokens on the device, greedy or top-k sampling, keeps the GPU
/// a step ahead of the host: each such step queues the next one, fed on the device the
/// token this one picks ([`Input::LastPick`]), before reading its pick, so the GPU goes
/// from one step to the next without waiting for the host to read a pick, then record
/// and submit the step after it. The generation loop's next call finds that step
/// already running when its token, position and way of picking are the ones it was
/// queued with, which in a generation they always are.
struct GpuExecutor<'a> {
    forward: Forward<'a>,
    scratch: &'a Scratch,
    ahead: Option<Ahead>,
    /// The pick buffer the next step submitted takes: they alternate.
    slot: usize,
}

/// The step queued ahead.
struct Ahead {
    /// The position it evaluates.
    pos: u32,
    /// The token it was fed: the last pick, once read.
    fed: Option<u32>,
    /// How it picks: greedy where `None`.
    sampling: Option<CandidateSampling>,
    step: PickStep,
}

impl<'a> GpuExecutor<'a> {
    fn new(forward: Forward<'a>, scratch: &'a Scratch) -> Self {
        Self { forward, scratch, ahead: None, slot: 0 }
    }

    fn submit(
        &mut self,
        input: Input<'_>,
        pos: u32,
        sampling: Option<CandidateSampling>,
        draw: &mut dyn FnMut() -> f32,
    ) -> Result<PickStep, PluginError> {
        let pick = match sampling {
            None => Pick::Greedy,
            Some(sampling) => Pick::Sampled { sampling, draw: draw() },
        };
        let step = self.forward.submit_pick(self.scratch, input, pos, pick, self.slot)?;
        self.slot = 1 - self.slot;
        Ok(step)
    }

    /// Evaluate `tokens` at `pos` and return the token picked on the device, greedy
    /// where `sampling` is `None`; the step ahead is queued before that token is read.
    fn forward_picked(
        &mut self,
        tokens: &[u32],
        pos: u32,
        sampling: Option<CandidateSampling>,
        draw: &mut dyn FnMut() -> f32,
    ) -> Result<u32, PluginError> {
        let step = match self.ahead.take() {
            Some(ahead)
                if ahead.pos == pos
                    && ahead.fed.is_some_and(|fed| tokens == [fed])
                    && ahead.sampling == sampling =>
            {
                ahead.step
            }
            // Anything else queued ahead evaluated positions from `pos` on, which this
            // step writes again; a draw it took is not given back, as a sampler's
            // draws are not.
            _ => self.submit(Input::Tokens(tokens), pos, sampling, draw)?,
        };
        let next = pos + tokens.len() as u32;
        if next + 1 < self.scratch.ctx {
            let step = self.submit(Input::LastPick, next, sampling, draw)?;
            self.ahead = Some(Ahead { pos: next, fed: None, sampling, step });
        }
        match self.forward.read_pick(self.scratch, step) {
            Ok(picked) => {
                if let Some(ahead) = &mut self.ahead {
                    ahead.fed = Some(picked);
                }
                Ok(picked)
            }
            Err(error) => {
                // The step ahead was fed what this one failed to pick.
                self.ahead = None;
                Err(error)
            }
        }
    }
}

impl Drop for GpuExecutor<'_> {
    /// A step queued ahead that nobody reads (the generation stopped) is waited for,
    /// so that the GPU is idle when the generation returns, as it was before it.
    fn drop(&mut self) {
        if let Some(ahead) = self.ahead.take() {
            // Its pick, or its error, is nobody's: the generation has ended.
            let _ = self.forward.read_pick(self.scratch, ahead.step);
        }
    }
}

impl Executor for GpuExecutor<'_> {
    fn forward(&mut self, tokens: &[u32], pos: u32) -> Result<Vec<f32>, PluginError> {
        // A step queued ahead evaluated positions from `pos` on, which this writes again.
        self.ahead = None;
        self.forward.run(self.scratch, tokens, pos)
    }

    fn forward_greedy(&mut self, tokens: &[u32], pos: u32) -> Result<Option<u32>, PluginError> {
        self.forward_picked(tokens, pos, None, &mut || 0.0).map(Some)
    }

    fn forward_sampled(
        &mut self,
        tokens: &[u32],
        pos: u32,
        sampling: &CandidateSampling,
        draw: &mut dyn FnMut() -> f32,
    ) -> Result<Option<u32>, PluginError> {
        if !self.forward.samples_on_device(self.scratch, sampling.top_k) {
            return Ok(None);
        }
        self.forward_picked(tokens, pos, Some(*sampling), draw).map(Some)
    }

    fn forward_top_k(
        &mut self,
        tokens: &[u32],
        pos: u32,
        k: u32,
        adjustments: Option<&LogitAdjustments>,
    ) -> Result<Option<Vec<(u32, f32)>>, PluginError> {
        self.ahead = None;
        self.forward.run_top_k(self.scratch, tokens, pos, k, adjustments)
    }
}

impl WebGpuModel {
    /// Load `path`: validate, refuse what the kernels cannot run, then upload.
    pub fn load(path: &str, context_size_requested: u32) -> Result<Self, PluginError> {
        Self::load_with_plan(path, context_size_requested, None)
    }

    /// [`WebGpuModel::load`] with `plan`'s kernels instead of the adapter's own (the
    /// tests run every plan on one adapter).
    pub fn load_with_plan(
        path: &str,
        context_size_requested: u32,
        plan: Option<KernelPlan>,
    ) -> Result<Self, PluginError> {
        Self::load_with_kernels(path, context_size_requested, plan, None)
    }

    /// [`WebGpuModel::load_with_plan`] with a KV cache of type `cache` instead of the
    /// device's (the tests that compare with exact arithmetic hold it in f32).
    pub fn load_with_kernels(
        path: &str,
        context_size_requested: u32,
        plan: Option<KernelPlan>,
        cache: Option<CacheType>,
    ) -> Result<Self, PluginError> {
        let gguf = Gguf::open(path).map_err(|error| PluginError::model_file(error.to_string()))?;
        check_types(&gguf)?;
        let config = Config::from_gguf(&gguf)?;
        hearth_model::arch::check_runs(config.arch, "WebGPU", crate::runs)?;
        let text = Text::from_gguf(&gguf, &config)?;
        let ctx = context_size(context_size_requested, &config);
        let gpu = Gpu::new()?;
        let kernels =
            Kernels::with_cache(&gpu, plan.unwrap_or(gpu.plan), cache.unwrap_or(gpu.cache));
        let weights = Weights::load(&gpu, &gguf, &config)?;
        Ok(Self {
            state: Mutex::default(),
            adapters: Mutex::default(),
            weights,
            kernels,
            gpu,
            config,
            ctx,
            text,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Logits after evaluating `tokens` from position 0 with `adapters` applied (used by
    /// the cross-checks).
    pub fn logits(&self, tokens: &[u32], adapters: &[AdapterUse]) -> Result<Vec<f32>, PluginError> {
        let adapters = self.resolve_adapters(adapters)?;
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // The cache is overwritten from position 0: what it held is gone.
        state.session = Session::default();
        let scratch = self.ensure_scratch(&mut state.scratch)?;
        self.forward(&applied(&adapters)).run(scratch, tokens, 0)
    }

    /// The `k` largest logits, adjusted on the device as `adjustments` says, with their
    /// token ids after evaluating `tokens` from position 0, as a biased or penalised
    /// generation step finds them ([`Forward::run_top_k`]); `None` where the kernels do
    /// not find them there (used by the end-to-end checks).
    pub fn adjusted_top_k(
        &self,
        tokens: &[u32],
        k: u32,
        adjustments: &LogitAdjustments,
    ) -> Result<Option<Vec<(u32, f32)>>, PluginError> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.session = Session::default();
        let scratch = self.ensure_scratch(&mut state.scratch)?;
        self.forward(&[]).run_top_k(scratch, tokens, 0, k, Some(adjustments))
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
            *slot = Some(Scratch::new(&self.gpu, &self.config, self.ctx, &self.kernels)?);
        }
        Ok(slot.as_ref().expect("just filled"))
    }
}

impl Model for WebGpuModel {
    fn generate(
        &self,
        request: &GenerateRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<GenerateStats, PluginError> {
        let adapters = self.resolve_adapters(&request.adapters)?;
        let adapters = applied(&adapters);
        // One generation at a time per model: they share the KV cache.
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let State { scratch, session } = &mut *state;
        let scratch = self.ensure_scratch(scratch)?;
        let mut executor = GpuExecutor::new(self.forward(&adapters), scratch);
        generate(&self.text, self.ctx, session, &mut executor, request, sink)
    }

    /// Texts up to the model's context are embedded: the KV cache holds that many.
    fn embed(&self, text: &str, truncate: bool) -> Result<Embedding, PluginError> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let State { scratch, session } = &mut *state;
        embed(&self.text, &self.config, self.ctx, text, truncate, |tokens| {
            // The cache is overwritten from position 0: what it held is gone.
            *session = Session::default();
            let scratch = self.ensure_scratch(scratch)?;
            self.forward(&[]).hidden_states(scratch, tokens)
        })
    }

    fn trim(&self) {
        *self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = State::default();
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
        // The GGUF map is closed after upload; the host keeps only the tokenizer and the
        // template (a few MB), which are not counted. On a software adapter the
        // "device" bytes live in host RAM too.
        MemoryUsage { host_bytes: 0, device_bytes: self.gpu.allocated() }
    }
}

fn applied(adapters: &[(Arc<LoraAdapter>, f32)]) -> Vec<(&LoraAdapter, f32)> {
    adapters.iter().map(|(adapter, scale)| (adapter.as_ref(), *scale)).collect()
}
