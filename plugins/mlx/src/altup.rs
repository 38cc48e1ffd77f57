//! Gemma 3n's block on MLX: the program [`hearth_model::altup`] describes, step by step.
//! The AltUp streams are one array `[1, n, streams, n_embd]`, so prediction is one
//! batched matmul of each token's `streams × streams` coefficients with its streams.

use hearth_model::altup::HALF_SQRT_2;
use hearth_model::{Activation, Role};
use hearth_sdk::PluginError;

use crate::ffi::Array;
use crate::forward::{gated, Forward, KvCache};
use crate::weights::AltUpWeights;

/// Each row's L2 norm over the last axis, kept as an axis of 1.
fn magnitude(x: &Array) -> Result<Array, PluginError> {
    x.multiply(x)?.sum_last()?.sqrt()
}

/// `y` rescaled, row by row, to the L2 norm of the same row of `like`.
fn rescale_to_norm(y: Array, like: &Array) -> Result<Array, PluginError> {
    y.multiply(&magnitude(like)?)?.divide(&magnitude(&y)?)
}

/// Activation sparsity: `relu(g − mean − k · std)` over each row of `g` (`f` wide), the
/// standard deviation with `f − 1` in its denominator.
fn sparse(g: &Array, k: f32, f: i32) -> Result<Array, PluginError> {
    let mean = g.sum_last()?.scale(1.0 / f as f32)?;
    let deviation = g.subtract(&mean)?;
    let std = deviation.multiply(&deviation)?.sum_last()?.scale(1.0 / (f - 1) as f32)?.sqrt()?;
    g.subtract(&mean.add(&std.scale(k)?)?)?.maximum(&Array::from_f32(&[0.0], &[1])?)
}

impl Forward<'_> {
    /// [`Forward::run`] for Gemma 3n: `x` is the scaled token embeddings of `ids`,
    /// `[1, n, n_embd]`.
    pub(crate) fn run_altup(
        &self,
        weights: &AltUpWeights,
        cache: &mut KvCache,
        ids: &Array,
        x: Array,
    ) -> Result<Vec<f32>, PluginError> {
        let c = self.config;
        let altup = c.altup.as_ref().expect("an AltUp model's config");
        let (n, e) = (x.shape()[1], c.n_embd as i32);
        let (s, p, layers) = (altup.streams as i32, altup.per_layer_dim as i32, c.n_layer as i32);

        // Per-layer inputs, [1, n, layers, p].
        let token_part = weights
            .per_layer_token_embd
            .rows(ids)?
            .reshape(&[1, n, layers, p])?
            .scale((p as f32).sqrt())?;
        let inputs = weights
            .per_layer_model_proj
            .apply(&x)?
            .scale(1.0 / (e as f32).sqrt())?
            .reshape(&[1, n, layers, p])?
            .rms_norm(&weights.per_layer_proj_norm, c.eps)?
            .add(&token_part)?
            .scale(HALF_SQRT_2)?;

        let as_stream = |y: &Array| y.reshape(&[1, n, 1, e]);
        let mut streams = as_stream(&x)?;
        for i in 0..s - 1 {
            let y = rescale_to_norm(weights.altup_proj.expert(i as u32)?.apply(&x)?, &x)?;
            streams = streams.concatenate(&as_stream(&y)?, 2)?;
        }
        let stream = |all: &Array, i: i32, tokens: [i32; 2]| {
            all.slice(&[0, tokens[0], i, 0], &[1, tokens[1], i + 1, e])?.reshape(&[
                1,
                tokens[1] - tokens[0],
                e,
            ])
        };
        // Adds the per-layer input to every stream but the first.
        let mut others = vec![1.0; s as usize];
        others[0] = 0.0;
        let others = Array::from_f32(&others, &[1, 1, s, 1])?;
        let ones = Array::from_f32(&[1.0], &[1])?;

        for (index, layer) in self.weights.layers.iter().enumerate() {
            let plan = c.layer(index as u32);
            let vector = |role: Role| layer.vectors.required(role);
            let norm = |x: &Array, role: Role| x.rms_norm(vector(role), c.eps);
            let project = |role: Role, x: &Array| self.project(index, role, x);
            let router = |v: &Array| {
                project(Role::AltupRouter, &norm(v, Role::AltupRouterNorm)?.scale(1.0 / e as f32)?)?
                    .tanh()
            };

            let active = stream(&streams, 0, [0, n])?;
            let coefs = project(Role::AltupPredict, &router(&active)?)?.reshape(&[1, n, s, s])?;
            let predictions = coefs.matmul(&streams)?.add(&streams)?;
            let active = stream(&predictions, 0, [0, n])?;
            let h = norm(&active, Role::AttnNorm)?;

            let laurel =
                norm(&project(Role::LaurelR, &project(Role::LaurelL, &h)?)?, Role::LaurelNorm)?
                    .add(&h)?;
            let attended = norm(&self.attention(index, plan, &h, cache)?, Role::PostAttnNorm)?;
            let h = attended.add(&active)?.add(&laurel)?.scale(HALF_SQRT_2)?;

            let normed = norm(&h, Role::FfnNorm)?;
            let mut gate = project(Role::Gate, &normed)?;
            if let Some(k) = plan.sparsity {
                gate = sparse(&gate, k, c.n_ff as i32)?;
            }
            let inner = gated(c.arch.activation, gate, &project(Role::Up, &normed)?)?;
            let out = norm(&project(Role::Down, &inner)?, Role::PostFfnNorm)?.add(&h)?;

            let corrections =
                project(Role::AltupCorrect, &router(&out)?)?.add(&ones)?.reshape(&[1, n, s, 1])?;
            let innovation = as_stream(&out.subtract(&active)?)?;
            streams = predictions.add(&innovation.multiply(&corrections)?)?;

            let corrected =
                stream(&streams, 0, [0, n])?.multiply(vector(Role::AltupCorrectScale))?;
            let this_layer = inputs
                .slice(&[0, 0, index as i32, 0], &[1, n, index as i32 + 1, p])?
                .reshape(&[1, n, p])?;
            let gate =
                gated(Activation::GeluTanh, project(Role::PerLayerGate, &corrected)?, &this_layer)?;
            let from_input = norm(&project(Role::PerLayerProj, &gate)?, Role::PerLayerNorm)?;
            streams = streams.add(&as_stream(&from_input)?.multiply(&others)?)?;
        }

        let first = stream(&streams, 0, [n - 1, n])?;
        let mut sum = stream(&streams, 0, [n - 1, n])?;
        for i in 1..s {
            let y = weights.altup_unembd_proj.expert(i as u32 - 1)?.apply(&stream(
                &streams,
                i,
                [n - 1, n],
            )?)?;
            sum = sum.add(&rescale_to_norm(y, &first)?)?;
        }
        cache.len += n;
        self.logits(&sum.scale(1.0 / s as f32)?)
    }
}
