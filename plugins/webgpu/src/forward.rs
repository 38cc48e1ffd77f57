//! The forward pass: a llama-family transformer over the KV cache, recorded as one
//! batch of kernel dispatches per chunk of up to [`UBATCH`] tokens, so a prompt is
//! processed a chunk at a time rather than token by token.

use hearth_sdk::PluginError;

use crate::device::{Gpu, GpuBuffer};
use crate::kernels::{AttentionShape, Batch, Kernels, View};
use crate::lora::{LoraAdapter, Projection, RANK_PAD};
use crate::weights::{Config, Weights};

/// Most tokens evaluated in one batch; bounds the scratch buffers.
pub const UBATCH: u32 = 32;

/// The KV cache and the activations of one batch: everything `trim` may free.
pub struct Scratch {
    pub ctx: u32,
    h: GpuBuffer,
    xn: GpuBuffer,
    q: GpuBuffer,
    /// Q and K before their per-head norm (QK-norm models only).
    q_raw: Option<GpuBuffer>,
    k_raw: Option<GpuBuffer>,
    attn: GpuBuffer,
    gate: GpuBuffer,
    up: GpuBuffer,
    scores: GpuBuffer,
    logits: GpuBuffer,
    ids: GpuBuffer,
    /// `A x` of a LoRA pair, [`RANK_PAD`] values per token.
    low_rank: GpuBuffer,
    k_cache: Vec<GpuBuffer>,
    v_cache: Vec<GpuBuffer>,
}

const F32: u64 = 4;

impl Scratch {
    pub fn new(gpu: &Gpu, config: &Config, ctx: u32) -> Result<Self, PluginError> {
        let b = u64::from(UBATCH);
        let kv_layer = u64::from(ctx) * u64::from(config.kv_dim()) * F32;
        let scores = b * u64::from(config.heads) * u64::from(ctx) * F32;
        let limit = gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size);
        if kv_layer > limit || scores > limit {
            return Err(PluginError::out_of_memory(format!(
                "a context of {ctx} tokens needs buffers of {} MiB, over the device's binding limit of {} MiB",
                kv_layer.max(scores) >> 20,
                limit >> 20
            )));
        }
        let act = |label: &str, width: u32| gpu.storage(label, b * u64::from(width) * F32);
        let qk = |label: &str, width: u32| config.qk_norm.then(|| act(label, width));
        Ok(Self {
            ctx,
            h: act("h", config.n_embd),
            xn: act("xn", config.n_embd),
            q: act("q", config.q_dim()),
            q_raw: qk("q_raw", config.q_dim()),
            k_raw: qk("k_raw", config.kv_dim()),
            attn: act("attn", config.q_dim()),
            gate: act("gate", config.n_ff),
            up: act("up", config.n_ff),
            scores: gpu.storage("scores", scores),
            logits: gpu.storage("logits", u64::from(config.vocab) * F32),
            ids: gpu.storage("ids", b * F32),
            low_rank: act("low rank", RANK_PAD),
            k_cache: (0..config.n_layer).map(|_| gpu.storage("k cache", kv_layer)).collect(),
            v_cache: (0..config.n_layer).map(|_| gpu.storage("v cache", kv_layer)).collect(),
        })
    }
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
        let end = pos0 as usize + tokens.len();
        if tokens.is_empty() || end > scratch.ctx as usize {
            return Err(PluginError::invalid_request(format!(
                "{end} tokens do not fit the context of {}",
                scratch.ctx
            )));
        }
        let chunks: Vec<&[u32]> = tokens.chunks(UBATCH as usize).collect();
        let mut pos = pos0;
        for (index, chunk) in chunks.iter().enumerate() {
            self.gpu.queue.write_buffer(&scratch.ids.buffer, 0, bytemuck::cast_slice(chunk));
            let mut batch = Batch::new(self.gpu, self.kernels);
            self.record(&mut batch, scratch, chunk.len() as u32, pos, index + 1 == chunks.len());
            batch.submit();
            pos += chunk.len() as u32;
        }
        self.gpu.read_f32(&scratch.logits.buffer, 0, self.config.vocab as usize)
    }

    fn record<'b>(
        &'b self,
        batch: &mut Batch<'b>,
        s: &'b Scratch,
        ntok: u32,
        pos: u32,
        logits: bool,
    ) {
        let c = self.config;
        let (e, q_dim, kv_dim) = (c.n_embd, c.q_dim(), c.kv_dim());
        let row = |buffer: &'b GpuBuffer, width: u32| View::new(&buffer.buffer, 0, width);
        let shape = AttentionShape {
            heads: c.heads,
            kv_heads: c.kv_heads,
            head_dim: c.head_dim,
            ctx: s.ctx,
        };
        batch.get_rows(&self.weights.token_embd, &s.ids.buffer, row(&s.h, e), ntok);
        for (index, layer) in self.weights.layers.iter().enumerate() {
            let (k_cache, v_cache) = (&s.k_cache[index].buffer, &s.v_cache[index].buffer);
            let cached = View::new(k_cache, pos * kv_dim, kv_dim);
            batch.rmsnorm(row(&s.h, e), &layer.attn_norm.buffer, row(&s.xn, e), ntok, e, c.eps);
            let project = |batch: &mut Batch<'b>, projection, x, y, accumulate| {
                self.project(batch, s, index, projection, x, y, ntok, accumulate);
            };
            match (&layer.q_norm, &layer.k_norm, &s.q_raw, &s.k_raw) {
                (Some(q_norm), Some(k_norm), Some(q_raw), Some(k_raw)) => {
                    project(batch, Projection::Q, row(&s.xn, e), row(q_raw, q_dim), false);
                    project(batch, Projection::K, row(&s.xn, e), row(k_raw, kv_dim), false);
                    let heads = ntok * c.heads;
                    batch.rmsnorm(
                        row(q_raw, q_dim),
                        &q_norm.buffer,
                        row(&s.q, q_dim),
                        heads,
                        c.head_dim,
                        c.eps,
                    );
                    batch.rmsnorm(
                        row(k_raw, kv_dim),
                        &k_norm.buffer,
                        cached,
                        ntok * c.kv_heads,
                        c.head_dim,
                        c.eps,
                    );
                }
                _ => {
                    project(batch, Projection::Q, row(&s.xn, e), row(&s.q, q_dim), false);
                    project(batch, Projection::K, row(&s.xn, e), cached, false);
                }
            }
            project(
                batch,
                Projection::V,
                row(&s.xn, e),
                View::new(v_cache, pos * kv_dim, kv_dim),
                false,
            );
            batch.rope(
                row(&s.q, q_dim),
                ntok,
                c.heads,
                c.head_dim,
                c.n_rot,
                pos,
                c.neox,
                c.freq_base,
            );
            batch.rope(cached, ntok, c.kv_heads, c.head_dim, c.n_rot, pos, c.neox, c.freq_base);
            batch.attention(
                &s.q.buffer,
                k_cache,
                v_cache,
                &s.scores.buffer,
                &s.attn.buffer,
                shape,
                ntok,
                pos,
            );
            project(batch, Projection::O, row(&s.attn, q_dim), row(&s.h, e), true);
            batch.rmsnorm(row(&s.h, e), &layer.ffn_norm.buffer, row(&s.xn, e), ntok, e, c.eps);
            project(batch, Projection::Gate, row(&s.xn, e), row(&s.gate, c.n_ff), false);
            project(batch, Projection::Up, row(&s.xn, e), row(&s.up, c.n_ff), false);
            batch.silu_mul(&s.gate.buffer, &s.up.buffer, ntok * c.n_ff);
            project(batch, Projection::Down, row(&s.gate, c.n_ff), row(&s.h, e), true);
        }
        if logits {
            let last = (ntok - 1) * e;
            batch.rmsnorm(
                View::new(&s.h.buffer, last, e),
                &self.weights.output_norm.buffer,
                row(&s.xn, e),
                1,
                e,
                c.eps,
            );
            batch.matmul(
                self.weights.output(),
                row(&s.xn, e),
                row(&s.logits, c.vocab),
                1,
                false,
                1.0,
            );
        }
    }

    /// `y (+)= W x` for one of layer `index`'s projections, then each adapter's
    /// `scale · alpha/r · B (A x)` added on top, through the low-rank scratch row.
    #[allow(clippy::too_many_arguments)] // the matmul's operands plus where the weight sits
    fn project<'b>(
        &'b self,
        batch: &mut Batch<'b>,
        s: &'b Scratch,
        index: usize,
        projection: Projection,
        x: View<'b>,
        y: View<'b>,
        ntok: u32,
        accumulate: bool,
    ) {
        batch.matmul(self.weights.layers[index].weight(projection), x, y, ntok, accumulate, 1.0);
        let low_rank = View::new(&s.low_rank.buffer, 0, RANK_PAD);
        for &(adapter, scale) in self.adapters {
            if let Some(pair) = adapter.pair(index, projection) {
                batch.matmul(&pair.a, x, low_rank, ntok, false, 1.0);
                batch.matmul(&pair.b, low_rank, y, ntok, true, scale * adapter.alpha_over_rank);
            }
        }
    }
}
