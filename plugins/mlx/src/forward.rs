//! The model layer's transformer, following its [`Config`] and each layer's plan, over
//! the bridge's MLX operations: RMSNorm, rotary embeddings and attention from
//! `mlx::fast`, quantized matmuls for the projections, the gated feed-forward (or a
//! mixture of experts, routed on the host), and a KV
//! cache that grows by concatenation.
//!
//! Gemma 3n's block runs in the `altup` module.
//!
//! Each call builds the graph for a batch of tokens and returns the last token's
//! logits, or every token's final-normed hidden state for an embedding; MLX evaluates
//! the whole graph (the cache updates included) when they are read.

use hearth_model::{Activation, Config, Experts, LayerPlan, Role, RopePairs};
use hearth_sdk::PluginError;

use crate::ffi::Array;
use crate::lora::ActiveAdapters;
use crate::weights::Weights;

/// Keys and values of every layer, `[1, kv_heads, tokens, head_dim]` each.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<(Array, Array)>,
    pub(crate) len: i32,
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

    /// The keys and values of `layer`, which has already run this step.
    fn layer(&self, layer: u32) -> Result<(&Array, &Array), PluginError> {
        let (k, v) = self.layers.get(layer as usize).ok_or_else(|| {
            PluginError::internal(format!("layer {layer}'s KV is read before it is written"))
        })?;
        Ok((k, v))
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

/// The additive mask of a sliding-window layer for `n` queries after `offset` cached
/// tokens: query `t` (at position `offset + t`) sees keys `offset + t − window + 1 ..=
/// offset + t`. `None` when plain causal masking already sees only those.
fn window_mask(n: i32, offset: i32, window: u32) -> Result<Option<Array>, PluginError> {
    let keys = offset + n;
    if keys <= window as i32 {
        return Ok(None);
    }
    let mut mask = Vec::with_capacity((n * keys) as usize);
    for t in 0..n {
        let last = offset + t;
        mask.extend((0..keys).map(|j| {
            if j <= last && last - j < window as i32 {
                0.0
            } else {
                f32::NEG_INFINITY
            }
        }));
    }
    Array::from_f32(&mask, &[n, keys]).map(Some)
}

/// `act(gate) · up`.
pub(crate) fn gated(activation: Activation, gate: Array, up: &Array) -> Result<Array, PluginError> {
    let gate = match activation {
        Activation::Silu => gate.silu()?,
        Activation::GeluTanh => gate.gelu_tanh()?,
    };
    gate.multiply(up)
}

impl Forward<'_> {
    /// A mixture of experts' feed-forward over `h` (`[1, n, n_embd]`): the router's
    /// logits are read back and routed by the model layer ([`Experts::route`]); each
    /// expert some token chose then runs over the batch, its output weighted per token
    /// (0 where the token did not choose it), and the outputs are summed.
    fn experts(&self, index: usize, experts: Experts, h: &Array) -> Result<Array, PluginError> {
        let layer = &self.weights.layers[index];
        let logits = layer.matrices.required(Role::Router).apply(h)?.to_f32_vec()?;
        let n = logits.len() / experts.count as usize;
        let mut weights = vec![vec![0.0f32; n]; experts.count as usize];
        for (token, logits) in logits.chunks(experts.count as usize).enumerate() {
            for (expert, weight) in experts.route(logits) {
                weights[expert as usize][token] = weight;
            }
        }
        let [gate, up, down] = [Role::GateExps, Role::UpExps, Role::DownExps]
            .map(|role| layer.matrices.required(role));
        let mut sum: Option<Array> = None;
        for (expert, weights) in weights.iter().enumerate() {
            if weights.iter().all(|&w| w == 0.0) {
                continue;
            }
            let expert = expert as u32;
            let inner = gated(
                self.config.arch.activation,
                gate.expert(expert)?.apply(h)?,
                &up.expert(expert)?.apply(h)?,
            )?;
            let y = down
                .expert(expert)?
                .apply(&inner)?
                .multiply(&Array::from_f32(weights, &[1, n as i32, 1])?)?;
            sum = Some(match sum {
                Some(sum) => sum.add(&y)?,
                None => y,
            });
        }
        sum.ok_or_else(|| PluginError::internal("the router chose no expert"))
    }

    /// `x @ Wᵀ` for layer `index`'s `role`, plus its bias and any adapters' deltas.
    pub(crate) fn project(
        &self,
        index: usize,
        role: Role,
        x: &Array,
    ) -> Result<Array, PluginError> {
        let layer = &self.weights.layers[index];
        let y = self.adapters.apply(index, role, layer.matrices.required(role).apply(x)?, x)?;
        let bias = match role {
            Role::Q => layer.vectors.get(Role::QBias),
            Role::K => layer.vectors.get(Role::KBias),
            Role::V => layer.vectors.get(Role::VBias),
            _ => None,
        };
        match bias {
            Some(bias) => y.add(bias),
            None => Ok(y),
        }
    }

    /// Layer `index`'s attention over `h` (`[1, n, n_embd]`, normed) for `n` tokens
    /// after `offset` cached ones, projected by its output matrix: on its own keys and
    /// values (normed and rotated as the architecture says, then cached), or on those
    /// of the earlier layer its plan names.
    pub(crate) fn attention(
        &self,
        index: usize,
        plan: LayerPlan,
        h: &Array,
        cache: &mut KvCache,
    ) -> Result<Array, PluginError> {
        let c = self.config;
        let layer = &self.weights.layers[index];
        let (n, offset, head_dim) = (h.shape()[1], cache.len, c.head_dim as i32);
        let traditional = c.rope_pairs == RopePairs::Adjacent;
        // [1, n, heads * head_dim] -> [1, heads, n, head_dim]
        let heads = |y: Array, count: u32, norm: Option<&Array>| -> Result<Array, PluginError> {
            let mut y = y.reshape(&[1, n, count as i32, head_dim])?;
            if let Some(norm) = norm {
                y = y.rms_norm(norm, c.eps)?;
            }
            y.transpose(&[0, 2, 1, 3])?.rope(c.n_rot as i32, traditional, plan.rope_base, offset)
        };
        let q = heads(self.project(index, Role::Q, h)?, c.heads, layer.vectors.get(Role::QNorm))?;
        let (k, v) = if plan.kv_layer == index as u32 {
            let k = heads(
                self.project(index, Role::K, h)?,
                c.kv_heads,
                layer.vectors.get(Role::KNorm),
            )?;
            let mut v =
                self.project(index, Role::V, h)?.reshape(&[1, n, c.kv_heads as i32, head_dim])?;
            if c.arch.altup {
                v = v.rms_norm(
                    &Array::from_f32(&vec![1.0; head_dim as usize], &[head_dim])?,
                    c.eps,
                )?;
            }
            cache.extend(index, k, v.transpose(&[0, 2, 1, 3])?)?
        } else {
            cache.layer(plan.kv_layer)?
        };
        let mask = match plan.window {
            Some(window) => window_mask(n, offset, window)?,
            None => None,
        };
        // MLX aligns the causal mask to the end, so a chunk after cached tokens sees them all.
        let attended = match mask {
            Some(mask) => q.attention_masked(k, v, c.attention_scale, &mask)?,
            None => q.attention(k, v, c.attention_scale, n > 1)?,
        };
        let attended = attended.transpose(&[0, 2, 1, 3])?.reshape(&[1, n, c.q_dim() as i32])?;
        self.project(index, Role::O, &attended)
    }

    /// Evaluate `tokens` after the cached ones; return the last token's logits.
    pub fn run(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Vec<f32>, PluginError> {
        let (n, n_embd) = (tokens.len() as i32, self.config.n_embd as i32);
        if let Some(altup) = &self.weights.altup {
            let (ids, x) = self.embeddings(tokens)?;
            return self.run_altup(altup, cache, &ids, x);
        }
        let x = self.residual_stream(cache, tokens)?;
        self.logits(&x.slice(&[0, n - 1, 0], &[1, n, n_embd])?)
    }

    /// The logits of `last` (`[1, 1, n_embd]`), a step's final hidden state: the output
    /// norm, the output matrix and the soft cap where the model has one.
    pub(crate) fn logits(&self, last: &Array) -> Result<Vec<f32>, PluginError> {
        let c = self.config;
        let mut logits =
            self.weights.output().apply(&last.rms_norm(&self.weights.output_norm, c.eps)?)?;
        if let Some(cap) = c.altup.as_ref().map(|altup| altup.logit_softcap) {
            logits = logits.scale(1.0 / cap)?.tanh()?.scale(cap)?;
        }
        logits.to_f32_vec()
    }

    /// Evaluate `tokens` after the cached ones; return every one's final-normed hidden
    /// state, `n_embd` values per token: what an embedding pools.
    pub fn hidden_states(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
    ) -> Result<Vec<f32>, PluginError> {
        if self.weights.altup.is_some() {
            return Err(PluginError::unsupported(format!(
                "MLX computes no embeddings of {}",
                self.config.arch.gguf_name
            )));
        }
        let x = self.residual_stream(cache, tokens)?;
        x.rms_norm(&self.weights.output_norm, self.config.eps)?.to_f32_vec()
    }

    /// The token ids of `tokens` and their embeddings, `[1, n, n_embd]`, scaled where the
    /// architecture scales them.
    fn embeddings(&self, tokens: &[u32]) -> Result<(Array, Array), PluginError> {
        let c = self.config;
        let n = tokens.len() as i32;
        let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
        let ids = Array::from_i32(&ids, &[n])?;
        let mut x = self.weights.token_embd.rows(&ids)?.reshape(&[1, n, c.n_embd as i32])?;
        if c.arch.scale_embeddings {
            x = x.scale(c.embedding_scale())?;
        }
        Ok((ids, x))
    }

    /// The residual stream after the last layer, `[1, n, n_embd]`, for `tokens` after
    /// the cached ones; the cache holds them afterwards.
    fn residual_stream(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Array, PluginError> {
        let c = self.config;
        let arch = c.arch;
        let n = tokens.len() as i32;
        let (_, mut x) = self.embeddings(tokens)?;
        for (index, layer) in self.weights.layers.iter().enumerate() {
            let plan = c.layer(index as u32);
            let norm = |x: &Array, role: Role| x.rms_norm(layer.vectors.required(role), c.eps);
            let h = norm(&x, Role::AttnNorm)?;
            let mut o = self.attention(index, plan, &h, cache)?;
            if arch.sandwich_norms {
                o = norm(&o, Role::PostAttnNorm)?;
            }
            x = x.add(&o)?;

            let h = norm(&x, Role::FfnNorm)?;
            let mut down = match c.experts {
                None => {
                    let gate = self.project(index, Role::Gate, &h)?;
                    let up = self.project(index, Role::Up, &h)?;
                    self.project(index, Role::Down, &gated(arch.activation, gate, &up)?)?
                }
                Some(experts) => self.experts(index, experts, &h)?,
            };
            if arch.sandwich_norms {
                down = norm(&down, Role::PostFfnNorm)?;
            }
            x = x.add(&down)?;
        }
        cache.len += n;
        Ok(x)
    }
}
