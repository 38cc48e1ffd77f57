//! The forward pass: the model layer's transformer, following its [`Config`] and each
//! layer's plan (a dense feed-forward or routed experts, [`crate::experts`]), over the
//! KV cache, recorded as one
//! batch of kernel dispatches per chunk of up to [`Scratch::batch`] tokens, so a prompt
//! is processed a chunk at a time rather than token by token.

use std::sync::Mutex;

use hearth_model::{Config, Role, RopePairs};
use hearth_sdk::helpers::{CandidateSampling, LogitAdjustments};
use hearth_sdk::PluginError;

use crate::altup::AltUpScratch;
use crate::batch::{adjustment_entries, AttentionShape, Batch, Bindings, Rotation, View};
use crate::device::{Gpu, GpuBuffer};
use crate::kernels::{argmax_parts, top_k_parts, Kernels, ADJUSTMENTS_MAX, TOP_K_MAX};
use crate::lora::{LoraAdapter, RANK_PAD};
use crate::weights::Weights;

/// Most tokens evaluated in one batch unless the kernels ask for more
/// ([`Kernels::batch_tokens`]); always so for Gemma 3n, whose AltUp streams are laid
/// out this many rows a stream.
pub const UBATCH: u32 = 32;

/// The most bytes attention's partial results of one batch may take: they grow with the
/// batch and the context, so a long context halves the batch (not below [`UBATCH`])
/// until they fit.
const PARTIALS_BUDGET: u64 = 256 << 20;

/// The KV cache and the activations of one batch: everything `trim` may free.
pub struct Scratch {
    pub ctx: u32,
    /// The most tokens a batch takes.
    pub batch: u32,
    pub(crate) h: GpuBuffer,
    pub(crate) xn: GpuBuffer,
    q: GpuBuffer,
    /// Q and K before their per-head norm (QK-norm models only).
    q_raw: Option<GpuBuffer>,
    k_raw: Option<GpuBuffer>,
    pub(crate) attn: GpuBuffer,
    pub(crate) gate: GpuBuffer,
    up: GpuBuffer,
    /// A mixture of experts' router logits and chosen (expert, weight) slots, per
    /// token, and (with sandwich norms) the experts' sum before its norm.
    router: Option<GpuBuffer>,
    route: Option<GpuBuffer>,
    experts_out: Option<GpuBuffer>,
    /// Attention's per-split partial results ([`AttentionShape::partials`]).
    attention_sums: GpuBuffer,
    attention_stats: GpuBuffer,
    logits: GpuBuffer,
    /// Greedy decoding's parts and total (argmax.wgsl).
    argmax_parts: GpuBuffer,
    argmax_total: GpuBuffer,
    /// Top-k sampling's parts and total (top_k.wgsl), where the kernels find them.
    top_k: Option<[GpuBuffer; 2]>,
    /// adjust.wgsl's entries, [`ADJUSTMENTS_MAX`] of them, where top-k runs.
    adjustments: Option<GpuBuffer>,
    pub(crate) ids: GpuBuffer,
    /// `A x` of a LoRA pair, [`RANK_PAD`] values per token.
    low_rank: GpuBuffer,
    /// The batch's own keys and values in f32, as its products, norms and rotation
    /// leave them; attention moves them into the cache.
    k_new: GpuBuffer,
    v_new: GpuBuffer,
    /// By the layer that writes them ([`hearth_model::LayerPlan::kv_layer`]): a layer
    /// that shares KV has none of its own. Values of [`Kernels::cache`]'s type.
    pub(crate) k_cache: Vec<GpuBuffer>,
    pub(crate) v_cache: Vec<GpuBuffer>,
    /// Gemma 3n's AltUp streams and the other activations of its block.
    pub(crate) altup: Option<AltUpScratch>,
    /// The logits' (or a batch's hidden states') copy on the host side, filled by the
    /// step's own command buffer.
    readback: wgpu::Buffer,
    /// The picks of steps that pick their token on the device, on the host side, two,
    /// so that one step's pick is read while the next step, queued behind it, fills the
    /// other ([`PickStep`]).
    picks: [wgpu::Buffer; 2],
    /// Kept across steps: the same dispatches bind the same buffers every token.
    bindings: Mutex<Bindings>,
}

pub(crate) const F32: u64 = 4;

/// What argmax.wgsl leaves for the host: the largest logit, its index and the sum of
/// the logits (a word each), padded to a whole vector.
const PICK_BYTES: u64 = 16;

/// What a batch of the forward pass evaluates.
#[derive(Clone, Copy)]
pub enum Input<'t> {
    /// Tokens the host gives.
    Tokens(&'t [u32]),
    /// One token: the one the last step picked on the device, copied there from where
    /// argmax.wgsl and sample.wgsl leave it, so that the step can be queued before
    /// that pick is read ([`Forward::submit_pick`]).
    LastPick,
}

/// How a step picks its last token's next token on the device.
#[derive(Clone, Copy)]
pub enum Pick {
    /// The most likely (argmax.wgsl).
    Greedy,
    /// The one `draw` picks from the top-k candidates with `sampling` (top_k.wgsl, then
    /// sample.wgsl); only where [`Forward::samples_on_device`].
    Sampled { sampling: CandidateSampling, draw: f32 },
}

/// A step that picks its token on the device, submitted, its pick not read yet
/// ([`Forward::read_pick`]).
pub struct PickStep {
    submission: wgpu::SubmissionIndex,
    slot: usize,
}

impl Scratch {
    /// Buffers for `kernels`' batches (fewer tokens where the context is long:
    /// attention's partial results are kept under 256 MiB) and a cache of `ctx`.
    pub fn new(
        gpu: &Gpu,
        config: &Config,
        ctx: u32,
        kernels: &Kernels,
    ) -> Result<Self, PluginError> {
        let batch_tokens = kernels.batch_tokens();
        if config.head_dim > AttentionShape::MAX_HEAD_DIM || !config.head_dim.is_multiple_of(4) {
            return Err(PluginError::unsupported(format!(
                "heads of {} values; the WebGPU attention kernel takes a multiple of 4 up to {}",
                config.head_dim,
                AttentionShape::MAX_HEAD_DIM
            )));
        }
        let kv_layer = u64::from(ctx) * u64::from(config.kv_dim()) * kernels.cache().bytes();
        let attention = attention_shape(config, ctx);
        let mut batch = if config.altup.is_some() { UBATCH } else { batch_tokens.max(UBATCH) };
        while batch > UBATCH && attention.partials(batch)[0] * F32 > PARTIALS_BUDGET {
            batch /= 2;
        }
        let b = u64::from(batch);
        let [sums, stats] = attention.partials(batch).map(|n| n * F32);
        let limit = gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size);
        if kv_layer > limit || sums > limit {
            return Err(PluginError::out_of_memory(format!(
                "a context of {ctx} tokens needs buffers of {} MiB, over the device's binding limit of {} MiB",
                kv_layer.max(sums) >> 20,
                limit >> 20
            )));
        }
        let act = |label: &str, width: u32| gpu.storage(label, b * u64::from(width) * F32);
        let qk = |label: &str, width: u32| config.arch.qk_norm.then(|| act(label, width));
        let experts = config.experts;
        // Layers from the first that shares KV on have no cache of their own.
        let kv_layers = config.altup.as_ref().map_or(config.n_layer, |a| a.first_shared_kv);
        Ok(Self {
            ctx,
            batch,
            h: act("h", config.n_embd),
            xn: act("xn", config.n_embd),
            q: act("q", config.q_dim()),
            q_raw: qk("q_raw", config.q_dim()),
            k_raw: qk("k_raw", config.kv_dim()),
            attn: act("attn", config.q_dim()),
            gate: act("gate", config.n_ff),
            up: act("up", config.n_ff),
            router: experts.map(|experts| act("router", experts.count)),
            route: experts.map(|experts| act("route", 2 * experts.used)),
            experts_out: experts
                .filter(|_| config.arch.sandwich_norms)
                .map(|_| act("experts out", config.n_embd)),
            attention_sums: gpu.storage("attention sums", sums),
            attention_stats: gpu.storage("attention stats", stats),
            logits: gpu.storage("logits", u64::from(config.vocab) * F32),
            argmax_parts: gpu.storage("argmax parts", u64::from(argmax_parts(config.vocab)) * 16),
            argmax_total: gpu.storage("argmax total", 16),
            adjustments: kernels
                .top_k_on_device()
                .then(|| gpu.storage("adjustments", u64::from(ADJUSTMENTS_MAX) * 2 * F32)),
            top_k: kernels.top_k_on_device().then(|| {
                let pairs = |parts: u32| u64::from(parts * (TOP_K_MAX + 1)) * 2 * F32;
                [
                    gpu.storage("top-k parts", pairs(top_k_parts(config.vocab))),
                    gpu.storage("top-k total", pairs(1)),
                ]
            }),
            ids: gpu.storage("ids", b * F32),
            low_rank: act("low rank", RANK_PAD),
            k_new: act("k new", config.kv_dim()),
            v_new: act("v new", config.kv_dim()),
            k_cache: (0..kv_layers).map(|_| gpu.storage("k cache", kv_layer)).collect(),
            v_cache: (0..kv_layers).map(|_| gpu.storage("v cache", kv_layer)).collect(),
            altup: config.altup.as_ref().map(|altup| AltUpScratch::new(gpu, config, altup)),
            readback: gpu.readback(u64::from(config.vocab.max(batch * config.n_embd)) * F32),
            picks: [gpu.readback(PICK_BYTES), gpu.readback(PICK_BYTES)],
            bindings: Mutex::default(),
        })
    }
}

fn attention_shape(config: &Config, ctx: u32) -> AttentionShape {
    AttentionShape {
        heads: config.heads,
        kv_heads: config.kv_heads,
        head_dim: config.head_dim,
        ctx,
        scale: config.attention_scale,
    }
}

/// What a batch leaves for the host to read, in `xn` or `logits`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Readout {
    /// Nothing: a prompt's chunk before its last.
    Nothing,
    /// The last token's logits.
    Logits,
    /// Every token's final-normed hidden state.
    HiddenStates,
}

/// The model pieces a forward pass reads.
pub struct Forward<'a> {
    pub gpu: &'a Gpu,
    pub kernels: &'a Kernels,
    pub config: &'a Config,
    pub weights: &'a Weights,
    /// The request's LoRA adapters with their scales (none at scale 0).
    pub adapters: &'a [(&'a LoraAdapter, f32)],
}

impl Forward<'_> {
    /// Evaluate `tokens` at positions `pos0..`, filling the KV cache; returns the logits
    /// of the last token.
    pub fn run(
        &self,
        scratch: &Scratch,
        tokens: &[u32],
        pos0: u32,
    ) -> Result<Vec<f32>, PluginError> {
        let bytes = u64::from(self.config.vocab) * F32;
        self.evaluate(scratch, Input::Tokens(tokens), pos0, |batch| {
            batch.copy(&scratch.logits.buffer, &scratch.readback, bytes);
        })?;
        self.gpu.read_mapped(&scratch.readback, self.config.vocab as usize)
    }

    /// [`Forward::run`] for a step that picks its token on the device, submitted and
    /// not waited for: `input` at positions `pos0..`, whose last token's next token is
    /// picked as `pick` says, so three numbers come back instead of the vocabulary's
    /// logits, into `scratch`'s pick buffer `slot` (0 or 1); [`Forward::read_pick`]
    /// reads it.
    pub fn submit_pick(
        &self,
        scratch: &Scratch,
        input: Input<'_>,
        pos0: u32,
        pick: Pick,
        slot: usize,
    ) -> Result<PickStep, PluginError> {
        let vocab = self.config.vocab;
        let logits = &scratch.logits.buffer;
        let (parts, total) = (&scratch.argmax_parts.buffer, &scratch.argmax_total.buffer);
        let picked = &scratch.picks[slot];
        let submission = self.evaluate(scratch, input, pos0, |batch| {
            match pick {
                Pick::Greedy => batch.argmax(logits, vocab, parts, total),
                Pick::Sampled { sampling, draw } => {
                    let [top_parts, candidates] =
                        scratch.top_k.as_ref().expect("sampled on the device where top-k runs");
                    batch.top_k(logits, vocab, &top_parts.buffer, &candidates.buffer);
                    batch.sample(&candidates.buffer, vocab, &sampling, draw, total);
                }
            }
            batch.copy(total, picked, PICK_BYTES);
        })?;
        Ok(PickStep { submission, slot })
    }

    /// The token a submitted step picks, once that step is done (steps queued after it
    /// may still run). Logits that are not all finite numbers are an error, as the
    /// generation loop makes them when it computes log-probabilities.
    pub fn read_pick(&self, scratch: &Scratch, step: PickStep) -> Result<u32, PluginError> {
        let pick = &scratch.picks[step.slot];
        let picked = self.gpu.read_mapped_after(pick, 3, Some(step.submission))?;
        let (index, sum) = (picked[1].to_bits(), picked[2]);
        if !sum.is_finite() || index >= self.config.vocab {
            return Err(PluginError::non_finite_logits());
        }
        Ok(index)
    }

    /// Whether top-k sampling of `k` candidates can pick its tokens on the device
    /// ([`Pick::Sampled`]): where the kernels find the candidates there, up to
    /// [`TOP_K_MAX`] of them.
    pub fn samples_on_device(&self, scratch: &Scratch, k: u32) -> bool {
        scratch.top_k.is_some() && (1..=TOP_K_MAX).contains(&k)
    }

    /// [`Forward::run`] for top-k sampling: the last token's `k` largest logits (at most
    /// [`TOP_K_MAX`]) with their token ids, largest first, found on the device
    /// (top_k.wgsl), so `k` pairs come back instead of the vocabulary's logits; with
    /// `adjustments`, of the logits adjusted there first (adjust.wgsl). `None` where the
    /// kernels do not find them there, `k` is larger or the adjustments have more than
    /// [`ADJUSTMENTS_MAX`] entries, evaluating nothing. Logits that are not all finite
    /// numbers are an error, as for greedy decoding.
    pub fn run_top_k(
        &self,
        scratch: &Scratch,
        tokens: &[u32],
        pos0: u32,
        k: u32,
        adjustments: Option<&LogitAdjustments>,
    ) -> Result<Option<Vec<(u32, f32)>>, PluginError> {
        let Some([parts, total]) = scratch.top_k.as_ref().filter(|_| k <= TOP_K_MAX) else {
            return Ok(None);
        };
        let adjusting = match (adjustments, &scratch.adjustments) {
            (None, _) => None,
            (Some(adjustments), Some(buffer)) => {
                let entries = adjustment_entries(adjustments);
                if entries.len() > 2 * ADJUSTMENTS_MAX as usize {
                    return Ok(None);
                }
                // Written before this step's commands run, after those of every step
                // submitted before it.
                self.gpu.queue.write_buffer(&buffer.buffer, 0, bytemuck::cast_slice(&entries));
                Some((adjustments, &buffer.buffer))
            }
            (Some(_), None) => return Ok(None),
        };
        let vocab = self.config.vocab;
        let pairs = TOP_K_MAX as usize + 1;
        self.evaluate(scratch, Input::Tokens(tokens), pos0, |batch| {
            if let Some((adjustments, entries)) = adjusting {
                batch.adjust(&scratch.logits.buffer, vocab, adjustments, entries);
            }
            batch.top_k(&scratch.logits.buffer, vocab, &parts.buffer, &total.buffer);
            batch.copy(&total.buffer, &scratch.readback, (pairs * 2) as u64 * F32);
        })?;
        let picked = self.gpu.read_mapped(&scratch.readback, pairs * 2)?;
        if !picked[pairs * 2 - 2].is_finite() {
            return Err(PluginError::non_finite_logits());
        }
        let candidates = picked
            .chunks(2)
            .take(k as usize)
            .map(|pair| (pair[1].to_bits(), pair[0]))
            .filter(|&(token, _)| token < vocab)
            .collect();
        Ok(Some(candidates))
    }

    /// Record and submit `input` at positions `pos0..` in chunks of [`Scratch::batch`],
    /// the last chunk's batch ending with what `read_out` records; returns the last
    /// submission's index.
    fn evaluate<'b>(
        &'b self,
        scratch: &'b Scratch,
        input: Input<'_>,
        pos0: u32,
        read_out: impl FnOnce(&mut Batch<'b>),
    ) -> Result<wgpu::SubmissionIndex, PluginError> {
        let tokens = match input {
            Input::Tokens(tokens) => tokens,
            // One token, which the device fills in.
            Input::LastPick => &[0],
        };
        let end = pos0 as usize + tokens.len();
        if tokens.is_empty() || end > scratch.ctx as usize {
            return Err(PluginError::invalid_request(format!(
                "{end} tokens do not fit the context of {}",
                scratch.ctx
            )));
        }
        let chunks: Vec<&[u32]> = tokens.chunks(scratch.batch as usize).collect();
        let (last, before) = chunks.split_last().expect("the tokens are not empty");
        let recorded = |chunk: &[u32], pos: u32, readout: Readout| {
            let mut batch = Batch::new(self.gpu, self.kernels);
            match input {
                Input::Tokens(_) => {
                    let ids = bytemuck::cast_slice(chunk);
                    self.gpu.queue.write_buffer(&scratch.ids.buffer, 0, ids);
                }
                // The pick's index is argmax.wgsl's (and sample.wgsl's) second word.
                Input::LastPick => {
                    batch.copy_first(&scratch.argmax_total.buffer, 4, &scratch.ids.buffer, 4);
                }
            }
            self.record(&mut batch, scratch, chunk.len() as u32, pos, readout);
            batch
        };
        let mut bindings =
            scratch.bindings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut pos = pos0;
        for chunk in before {
            recorded(chunk, pos, Readout::Nothing).submit_with(&mut bindings);
            pos += chunk.len() as u32;
        }
        let mut batch = recorded(last, pos, Readout::Logits);
        read_out(&mut batch);
        let submitted = batch.submit_with(&mut bindings);
        submitted.ok_or_else(|| PluginError::internal("a forward pass recorded nothing"))
    }

    /// Evaluate `tokens` from position 0, filling the KV cache; returns every one's
    /// final-normed hidden state, `n_embd` values per token: what an embedding pools.
    pub fn hidden_states(
        &self,
        scratch: &Scratch,
        tokens: &[u32],
    ) -> Result<Vec<f32>, PluginError> {
        if tokens.len() > scratch.ctx as usize {
            return Err(PluginError::invalid_request(format!(
                "{} tokens do not fit the context of {}",
                tokens.len(),
                scratch.ctx
            )));
        }
        if self.config.arch.altup {
            return Err(PluginError::unsupported(format!(
                "WebGPU computes no embeddings of {}",
                self.config.arch.gguf_name
            )));
        }
        let e = self.config.n_embd;
        let mut states = Vec::with_capacity(tokens.len() * e as usize);
        let mut bindings =
            scratch.bindings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (index, chunk) in tokens.chunks(scratch.batch as usize).enumerate() {
            let (ntok, pos) = (chunk.len() as u32, index as u32 * scratch.batch);
            self.gpu.queue.write_buffer(&scratch.ids.buffer, 0, bytemuck::cast_slice(chunk));
            let mut batch = Batch::new(self.gpu, self.kernels);
            self.record(&mut batch, scratch, ntok, pos, Readout::HiddenStates);
            batch.copy(&scratch.xn.buffer, &scratch.readback, u64::from(ntok * e) * F32);
            batch.submit_with(&mut bindings);
            states.extend(self.gpu.read_mapped(&scratch.readback, (ntok * e) as usize)?);
        }
        Ok(states)
    }

    fn record<'b>(
        &'b self,
        batch: &mut Batch<'b>,
        s: &'b Scratch,
        ntok: u32,
        pos: u32,
        readout: Readout,
    ) {
        let c = self.config;
        let e = c.n_embd;
        let row = |buffer: &'b GpuBuffer, width: u32| View::new(&buffer.buffer, 0, width);
        match (&self.weights.altup, &s.altup) {
            (Some(weights), Some(altup)) => {
                self.record_altup(batch, s, altup, weights, ntok, pos, readout == Readout::Logits);
            }
            _ => self.record_blocks(batch, s, ntok, pos),
        }
        if readout == Readout::HiddenStates {
            let w = &self.weights.output_norm.buffer;
            batch.rmsnorm(row(&s.h, e), w, row(&s.xn, e), ntok, e, c.eps, false);
        }
        if readout == Readout::Logits {
            let last = (ntok - 1) * e;
            batch.rmsnorm(
                View::new(&s.h.buffer, last, e),
                &self.weights.output_norm.buffer,
                row(&s.xn, e),
                1,
                e,
                c.eps,
                false,
            );
            let logits = row(&s.logits, c.vocab);
            batch.logits(self.weights.output(), row(&s.xn, e), logits);
            if let Some(altup) = &c.altup {
                batch.soft_cap(logits, 1, c.vocab, altup.logit_softcap);
            }
        }
    }

    /// The embeddings of the batch's tokens and every block, leaving the residual stream
    /// in `s.h`.
    fn record_blocks<'b>(&'b self, batch: &mut Batch<'b>, s: &'b Scratch, ntok: u32, pos: u32) {
        let c = self.config;
        let arch = c.arch;
        let e = c.n_embd;
        let row = |buffer: &'b GpuBuffer, width: u32| View::new(&buffer.buffer, 0, width);
        batch.get_rows(&self.weights.token_embd, &s.ids.buffer, row(&s.h, e), ntok);
        if arch.scale_embeddings {
            batch.scale_rows(row(&s.h, e), ntok, e, c.embedding_scale());
        }
        for (index, layer) in self.weights.layers.iter().enumerate() {
            let norm = |batch: &mut Batch<'b>, x, role, y, accumulate| {
                batch.rmsnorm(x, &layer.vector(role).buffer, y, ntok, e, c.eps, accumulate);
            };
            let project = |batch: &mut Batch<'b>, role, x, y: View<'b>, accumulate| {
                self.project(batch, s, index, role, x, y, ntok, accumulate);
            };
            norm(batch, row(&s.h, e), Role::AttnNorm, row(&s.xn, e), false);
            self.attend(batch, s, index, ntok, pos);
            let q_dim = c.q_dim();
            if arch.sandwich_norms {
                // The output is normed before it joins the residual stream.
                project(batch, Role::O, row(&s.attn, q_dim), row(&s.xn, e), false);
                norm(batch, row(&s.xn, e), Role::PostAttnNorm, row(&s.h, e), true);
            } else {
                project(batch, Role::O, row(&s.attn, q_dim), row(&s.h, e), true);
            }
            norm(batch, row(&s.h, e), Role::FfnNorm, row(&s.xn, e), false);
            if let (Some(experts), Some(router), Some(route)) = (c.experts, &s.router, &s.route) {
                let router = row(router, experts.count);
                batch.matmul(layer.weight(Role::Router), row(&s.xn, e), router, ntok, false, 1.0);
                batch.route(router.buffer, &route.buffer, ntok, experts);
                let out = s.experts_out.as_ref().unwrap_or(&s.h);
                let [gate_w, up_w, down_w] =
                    [Role::GateExps, Role::UpExps, Role::DownExps].map(|role| layer.weight(role));
                for t in 0..ntok {
                    let x = View::new(&s.xn.buffer, t * e, e);
                    let gate = View::new(&s.gate.buffer, t * c.n_ff, c.n_ff);
                    let y = View::new(&out.buffer, t * e, e);
                    for k in 0..experts.used {
                        let slot = t * experts.used + k;
                        let route = &route.buffer;
                        batch.expert_gate_up(gate_w, up_w, route, slot, x, gate, arch.activation);
                        // Into the residual stream, or summed apart for the norm.
                        let accumulate = s.experts_out.is_none() || k > 0;
                        batch.expert_down(down_w, route, slot, gate, y, accumulate);
                    }
                }
                if let Some(out) = &s.experts_out {
                    norm(batch, row(out, e), Role::PostFfnNorm, row(&s.h, e), true);
                }
                continue;
            }
            self.gate_and_up(batch, s, index, ntok, None);
            if arch.sandwich_norms {
                project(batch, Role::Down, row(&s.gate, c.n_ff), row(&s.xn, e), false);
                norm(batch, row(&s.xn, e), Role::PostFfnNorm, row(&s.h, e), true);
            } else {
                project(batch, Role::Down, row(&s.gate, c.n_ff), row(&s.h, e), true);
            }
        }
    }

    /// Layer `index`'s attention of the normed `s.xn` into `s.attn`: Q, and K and V into
    /// the cache unless the layer reads an earlier layer's
    /// ([`hearth_model::LayerPlan::kv_layer`]).
    pub(crate) fn attend<'b>(
        &'b self,
        batch: &mut Batch<'b>,
        s: &'b Scratch,
        index: usize,
        ntok: u32,
        pos: u32,
    ) {
        let c = self.config;
        let (e, q_dim, kv_dim) = (c.n_embd, c.q_dim(), c.kv_dim());
        let layer = &self.weights.layers[index];
        let plan = c.layer(index as u32);
        let row = |buffer: &'b GpuBuffer, width: u32| View::new(&buffer.buffer, 0, width);
        let cache = plan.kv_layer as usize;
        let (k_cache, v_cache) = (&s.k_cache[cache].buffer, &s.v_cache[cache].buffer);
        let (new_k, new_v) = (row(&s.k_new, kv_dim), row(&s.v_new, kv_dim));
        let xn = row(&s.xn, e);
        // Q, K and V before their per-head norms (QK-norm models, Gemma 3n's V), or
        // straight into the query rows and the batch's new keys and values.
        let q_out = s.q_raw.as_ref().map_or(row(&s.q, q_dim), |q_raw| row(q_raw, q_dim));
        let k_out = s.k_raw.as_ref().map_or(new_k, |k_raw| row(k_raw, kv_dim));
        let v_out = s.altup.as_ref().map_or(new_v, |altup| row(&altup.v_raw, kv_dim));
        let computes_kv = plan.kv_layer == index as u32;
        let rotation = Rotation {
            head_dim: c.head_dim,
            n_rot: c.n_rot,
            pos0: pos,
            neox: c.rope_pairs == RopePairs::Halves,
            freq_base: plan.rope_base,
        };
        // Q and K rotated as the product stores them, where nothing comes between the
        // two (a bias, an adapter's update, a per-head norm) and its kernel can.
        let adapted = |role| self.adapters.iter().any(|(a, _)| a.pair(index, role).is_some());
        let rotated_in_product = layer.qkv.as_ref().is_some_and(|qkv| {
            computes_kv
                && !rotation.neox
                && s.q_raw.is_none()
                && s.k_raw.is_none()
                && [Role::QBias, Role::KBias].iter().all(|&bias| layer.vectors.get(bias).is_none())
                && !adapted(Role::Q)
                && !adapted(Role::K)
                && batch.rotates_pairs(qkv, ntok)
        });
        let outputs: &[(Role, View<'b>)] = if computes_kv {
            &[(Role::Q, q_out), (Role::K, k_out), (Role::V, v_out)]
        } else {
            &[(Role::Q, q_out)]
        };
        match &layer.qkv {
            Some(qkv) if computes_kv => {
                let split = [(q_dim, q_out), (kv_dim, k_out), (kv_dim, v_out)];
                if rotated_in_product {
                    batch.matmul_split_rotated(qkv, xn, &split, ntok, rotation);
                } else {
                    batch.matmul_split(qkv, xn, &split, ntok);
                }
                for &(role, y) in outputs {
                    self.adapt(batch, s, index, role, xn, y, ntok);
                }
            }
            _ => {
                for &(role, y) in outputs {
                    self.project(batch, s, index, role, xn, y, ntok, false);
                }
            }
        }
        for &(role, y) in outputs {
            let bias = match role {
                Role::Q => layer.vectors.get(Role::QBias),
                Role::K => layer.vectors.get(Role::KBias),
                _ => layer.vectors.get(Role::VBias),
            };
            if let Some(bias) = bias {
                batch.add_bias(y, &bias.buffer, ntok, y.stride);
            }
        }
        // Per-head RMSNorm, with the layer's weights or (Gemma 3n's V) unit ones.
        let head_norm = |batch: &mut Batch<'b>, x, w: &'b GpuBuffer, y, heads: u32| {
            batch.rmsnorm(x, &w.buffer, y, ntok * heads, c.head_dim, c.eps, false);
        };
        if s.q_raw.is_some() {
            head_norm(batch, q_out, layer.vector(Role::QNorm), row(&s.q, q_dim), c.heads);
        }
        if computes_kv {
            if s.k_raw.is_some() {
                head_norm(batch, k_out, layer.vector(Role::KNorm), new_k, c.kv_heads);
            }
            if let Some(altup) = &s.altup {
                head_norm(batch, v_out, &altup.unit_norm, new_v, c.kv_heads);
            }
        }
        if !rotated_in_product {
            let new_keys = computes_kv.then_some(new_k);
            batch.rope(row(&s.q, q_dim), new_keys, ntok, [c.heads, c.kv_heads], rotation);
        }
        batch.attention(
            &s.q.buffer,
            [k_cache, v_cache],
            computes_kv.then_some([&s.k_new.buffer, &s.v_new.buffer]),
            [&s.attention_sums.buffer, &s.attention_stats.buffer],
            &s.attn.buffer,
            attention_shape(c, s.ctx),
            ntok,
            pos,
            plan.window,
        );
    }

    /// `s.gate = act(gate x) · up x` for layer `index`, `x` the normed `s.xn`, with
    /// Gemma 3n's activation sparsity (`sparsity`) on the gate's values: one paired
    /// product where the layer's gate and up projections are stacked and neither an
    /// adapter's update nor sparsity comes between the products and the activation.
    pub(crate) fn gate_and_up<'b>(
        &'b self,
        batch: &mut Batch<'b>,
        s: &'b Scratch,
        index: usize,
        ntok: u32,
        sparsity: Option<f32>,
    ) {
        let (c, activation) = (self.config, self.config.arch.activation);
        let (xn, gate) =
            (View::new(&s.xn.buffer, 0, c.n_embd), View::new(&s.gate.buffer, 0, c.n_ff));
        let adapted =
            |role| self.adapters.iter().any(|(adapter, _)| adapter.pair(index, role).is_some());
        match &self.weights.layers[index].gate_up {
            Some(gate_up)
                if sparsity.is_none()
                    && !adapted(Role::Gate)
                    && !adapted(Role::Up)
                    && self.kernels.pair(ntok) =>
            {
                batch.matmul_paired(gate_up, xn, gate, ntok, activation);
                return;
            }
            _ => {}
        }
        self.project(batch, s, index, Role::Gate, xn, gate, ntok, false);
        if let Some(k) = sparsity {
            batch.sparsify(gate, ntok, c.n_ff, k);
        }
        if adapted(Role::Up) {
            // An adapter's update joins the up projection before the activation's
            // product, so the two stay separate passes.
            let up = View::new(&s.up.buffer, 0, c.n_ff);
            self.project(batch, s, index, Role::Up, xn, up, ntok, false);
            batch.gated(&s.gate.buffer, up, ntok, c.n_ff, activation);
        } else {
            let up = self.weights.layers[index].weight(Role::Up);
            batch.matmul_gated(up, xn, gate, ntok, activation);
        }
    }

    /// `y (+)= W x` for one of layer `index`'s projections, then each adapter's update
    /// added on top ([`Forward::adapt`]).
    #[allow(clippy::too_many_arguments)] // the matmul's operands plus where the weight sits
    pub(crate) fn project<'b>(
        &'b self,
        batch: &mut Batch<'b>,
        s: &'b Scratch,
        index: usize,
        role: Role,
        x: View<'b>,
        y: View<'b>,
        ntok: u32,
        accumulate: bool,
    ) {
        batch.matmul(self.weights.layers[index].weight(role), x, y, ntok, accumulate, 1.0);
        self.adapt(batch, s, index, role, x, y, ntok);
    }

    /// Each adapter's `scale · alpha/r · B (A x)` added to `y`, the output of one of layer
    /// `index`'s projections, through the low-rank scratch row.
    #[allow(clippy::too_many_arguments)] // the projection's operands plus where it sits
    pub(crate) fn adapt<'b>(
        &'b self,
        batch: &mut Batch<'b>,
        s: &'b Scratch,
        index: usize,
        role: Role,
        x: View<'b>,
        y: View<'b>,
        ntok: u32,
    ) {
        let low_rank = View::new(&s.low_rank.buffer, 0, RANK_PAD);
        for &(adapter, scale) in self.adapters {
            if let Some(pair) = adapter.pair(index, role) {
                batch.matmul(&pair.a, x, low_rank, ntok, false, 1.0);
                batch.matmul(&pair.b, low_rank, y, ntok, true, scale * adapter.factor);
            }
        }
    }
}
