//! The llama-family transformer, written in Rust over the bridge's MLX operations:
//! RMSNorm, rotary embeddings and attention from `mlx::fast`, quantized matmuls for the
//! projections, SwiGLU feed-forward, and a KV cache that grows by concatenation.
//!
//! Each call builds the graph for a batch of tokens and returns the last token's
//! logits; MLX evaluates the whole graph (the cache updates included) when they are
//! read.

use hearth_sdk::PluginError;

use crate::ffi::Array;
use crate::lora::ActiveAdapters;
use crate::weights::{Config, Linear, Weights};

/// Keys and values of every layer, `[1, kv_heads, tokens, head_dim]` each.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<(Array, Array)>,
    len: i32,
}

impl KvCache {
    /// Tokens the cache holds.
    pub fn tokens(&self) -> u32 {
        self.len as u32
    }

    pub fn nbytes(&self) -> u64 {
        self.layers.iter().map(|(k, v)| k.nbytes() + v.nbytes()).sum()
    }

    /// Keep only the first `keep` tokens (a new prompt sharing that prefix).
    pub fn truncate(&mut self, keep: u32) -> Result<(), PluginError> {
        let keep = keep as i32;
        if keep >= self.len {
            return Ok(());
        }
        if keep == 0 {
            *self = Self::default();
            return Ok(());
        }
        for (k, v) in &mut self.layers {
            let shape = k.shape();
            let stop = [shape[0], shape[1], keep, shape[3]];
            *k = k.slice(&[0, 0, 0, 0], &stop)?;
            *v = v.slice(&[0, 0, 0, 0], &stop)?;
        }
        self.len = keep;
        Ok(())
    }

    /// Append this step's keys and values for `layer`; returns the whole history.
    fn extend(
        &mut self,
        layer: usize,
        k: Array,
        v: Array,
    ) -> Result<(&Array, &Array), PluginError> {
        if layer == self.layers.len() {
            self.layers.push((k, v));
        } else {
            let (old_k, old_v) = &self.layers[layer];
            self.layers[layer] = (old_k.concatenate(&k, 2)?, old_v.concatenate(&v, 2)?);
        }
        let (k, v) = &self.layers[layer];
        Ok((k, v))
    }
}

/// One model's forward pass: its shape, weights, and the adapters of this request.
pub struct Forward<'a> {
    pub config: &'a Config,
    pub weights: &'a Weights,
    pub adapters: &'a ActiveAdapters,
}

impl Forward<'_> {
    /// `x @ Wᵀ` for the weight named `name` (its GGUF base name), plus any adapters' deltas.
    fn linear(&self, name: &str, linear: &Linear, x: &Array) -> Result<Array, PluginError> {
        self.adapters.apply(name, linear.apply(x)?, x)
    }

    /// Evaluate `tokens` after the cached ones; return the last token's logits.
    pub fn run(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Vec<f32>, PluginError> {
        let c = self.config;
        let n = tokens.len() as i32;
        let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
        let ids = Array::from_i32(&ids, &[n])?;
        let mut x = self.weights.token_embd.rows(&ids)?.reshape(&[1, n, c.n_embd])?;
        let offset = cache.len;
        let scale = 1.0 / (c.head_dim as f32).sqrt();
        for (index, layer) in self.weights.layers.iter().enumerate() {
            let name = |part: &str| format!("blk.{index}.{part}");
            let h = x.rms_norm(&layer.attn_norm, c.eps)?;
            // [1, n, heads * head_dim] -> [1, heads, n, head_dim]
            let heads = |y: Array,
                         count: i32,
                         norm: Option<&Array>|
             -> Result<Array, PluginError> {
                let mut y = y.reshape(&[1, n, count, c.head_dim])?;
                if let Some(norm) = norm {
                    y = y.rms_norm(norm, c.eps)?;
                }
                y.transpose(&[0, 2, 1, 3])?.rope(c.n_rot, c.traditional_rope, c.freq_base, offset)
            };
            let q =
                heads(self.linear(&name("attn_q"), &layer.q, &h)?, c.heads, layer.q_norm.as_ref())?;
            let k = heads(
                self.linear(&name("attn_k"), &layer.k, &h)?,
                c.kv_heads,
                layer.k_norm.as_ref(),
            )?;
            let v = self
                .linear(&name("attn_v"), &layer.v, &h)?
                .reshape(&[1, n, c.kv_heads, c.head_dim])?
                .transpose(&[0, 2, 1, 3])?;
            let (k, v) = cache.extend(index, k, v)?;
            // MLX aligns the causal mask to the end, so a chunk after cached tokens sees them all.
            let attended = q
                .attention(k, v, scale, n > 1)?
                .transpose(&[0, 2, 1, 3])?
                .reshape(&[1, n, c.heads * c.head_dim])?;
            x = x.add(&self.linear(&name("attn_output"), &layer.o, &attended)?)?;

            let h = x.rms_norm(&layer.ffn_norm, c.eps)?;
            let gate = self.linear(&name("ffn_gate"), &layer.gate, &h)?.silu()?;
            let up = self.linear(&name("ffn_up"), &layer.up, &h)?;
            x = x.add(&self.linear(&name("ffn_down"), &layer.down, &gate.multiply(&up)?)?)?;
        }
        let last = x
            .slice(&[0, n - 1, 0], &[1, n, c.n_embd])?
            .rms_norm(&self.weights.output_norm, c.eps)?;
        let logits = self.linear("output", self.weights.output(), &last)?.to_f32_vec()?;
        cache.len += n;
        Ok(logits)
    }
}
