//! The CPU reference of Gemma 3n's block, step by step as [`crate::altup`] describes it.

use hearth_sdk::helpers::Gguf;
use hearth_sdk::PluginError;

use super::{add, attention, matmul, project, rmsnorm, rope, tensor, Attention};
use crate::altup::{sparsity_cutoff, HALF_SQRT_2};
use crate::lora::LoraFile;
use crate::roles::{gguf_layer_name, Global, Role};
use crate::Config;

/// `x` (rows of `w.len()`) scaled by `w`, value by value.
fn scaled(x: &[f32], w: &[f32]) -> Vec<f32> {
    x.chunks(w.len()).flat_map(|row| row.iter().zip(w).map(|(a, b)| a * b)).collect()
}

/// Each row of `of` rescaled to the L2 norm of the same row of `like`.
fn rescale_to_norm(of: &mut [f32], like: &[f32], e: usize) {
    let norm = |row: &[f32]| row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
    for (row, target) in of.chunks_mut(e).zip(like.chunks(e)) {
        let factor = norm(target) / norm(row);
        row.iter_mut().for_each(|v| *v = (f64::from(*v) * factor) as f32);
    }
}

/// `streams − 1` stacked `e × e` matrices applied to their streams (`stream_of(i)` for
/// matrix `i`), each result rescaled to the norm of `like`.
fn stream_projections(
    stacked: &[f32],
    e: usize,
    count: usize,
    stream_of: impl Fn(usize) -> Vec<f32>,
    like: &[f32],
) -> Vec<Vec<f32>> {
    (0..count)
        .map(|i| {
            let x = stream_of(i);
            let mut y = matmul(&stacked[i * e * e..][..e * e], e, &x, x.len() / e);
            rescale_to_norm(&mut y, like, e);
            y
        })
        .collect()
}

fn gelu(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| crate::Activation::GeluTanh.apply(f64::from(v)) as f32).collect()
}

pub(super) fn forward(
    gguf: &Gguf,
    c: &Config,
    tokens: &[u32],
    lora: Option<(&LoraFile, f32)>,
) -> Result<Vec<f32>, PluginError> {
    let altup = c.altup.as_ref().expect("an AltUp model");
    let (e, hd, n) = (c.n_embd as usize, c.head_dim as usize, tokens.len());
    let (heads, kv_heads) = (c.heads as usize, c.kv_heads as usize);
    let (s, p, layers) = (altup.streams as usize, altup.per_layer_dim as usize, c.n_layer as usize);
    let global = |g: Global| tensor(gguf, g.gguf_name());
    let embd = global(Global::TokenEmbd)?;
    let x: Vec<f32> = tokens
        .iter()
        .flat_map(|&t| embd[t as usize * e..][..e].iter().map(|v| v * c.embedding_scale()))
        .collect();

    // Per-layer inputs, [token][layer][p].
    let per_layer_embd = global(Global::PerLayerTokenEmbd)?;
    let token_part = tokens
        .iter()
        .flat_map(|&t| per_layer_embd[t as usize * layers * p..][..layers * p].iter())
        .map(|v| v * (p as f32).sqrt());
    let model_part = matmul(&global(Global::PerLayerModelProj)?, e, &x, n);
    let model_part: Vec<f32> = model_part.iter().map(|v| v / (e as f32).sqrt()).collect();
    let model_part = rmsnorm(&model_part, &global(Global::PerLayerProjNorm)?, c.eps);
    let inputs: Vec<f32> =
        model_part.iter().zip(token_part).map(|(a, b)| (a + b) * HALF_SQRT_2).collect();

    let mut streams = vec![x.clone()];
    streams.extend(stream_projections(&global(Global::AltupProj)?, e, s - 1, |_| x.clone(), &x));

    let mut kv_cache: Vec<(Vec<f32>, Vec<f32>)> = Vec::with_capacity(layers);
    for layer in 0..c.n_layer {
        let w = |role: Role| tensor(gguf, &gguf_layer_name(layer, role));
        let project = |role: Role, x: &[f32]| project(gguf, c, layer, role, x, lora);
        let plan = c.layer(layer);
        let router = |v: &[f32]| -> Result<Vec<f32>, PluginError> {
            let normed = rmsnorm(v, &w(Role::AltupRouterNorm)?, c.eps);
            let normed: Vec<f32> = normed.iter().map(|v| v / e as f32).collect();
            Ok(matmul(&w(Role::AltupRouter)?, e, &normed, n).iter().map(|v| v.tanh()).collect())
        };

        // Predict.
        let coefs = matmul(&w(Role::AltupPredict)?, s, &router(&streams[0])?, n);
        let predictions: Vec<Vec<f32>> = (0..s)
            .map(|j| {
                let mut out = streams[j].clone();
                for t in 0..n {
                    for k in 0..s {
                        let coef = coefs[t * s * s + j * s + k];
                        let from = &streams[k][t * e..][..e];
                        out[t * e..][..e].iter_mut().zip(from).for_each(|(o, v)| *o += coef * v);
                    }
                }
                out
            })
            .collect();
        let active = &predictions[0];
        let xn = rmsnorm(active, &w(Role::AttnNorm)?, c.eps);

        // LAuReL.
        let low = project(Role::LaurelL, &xn)?;
        let mut laurel = rmsnorm(&project(Role::LaurelR, &low)?, &w(Role::LaurelNorm)?, c.eps);
        add(&mut laurel, &xn);

        // Attention, on this layer's K and V or an earlier layer's.
        let n_rot = c.n_rot as usize;
        let mut q = rmsnorm(&project(Role::Q, &xn)?, &w(Role::QNorm)?, c.eps);
        rope(&mut q, heads, hd, n_rot, 0, c.rope_pairs, plan.rope_base);
        if plan.kv_layer == layer {
            let mut k = rmsnorm(&project(Role::K, &xn)?, &w(Role::KNorm)?, c.eps);
            rope(&mut k, kv_heads, hd, n_rot, 0, c.rope_pairs, plan.rope_base);
            let v = rmsnorm(&project(Role::V, &xn)?, &vec![1.0; hd], c.eps);
            kv_cache.push((k, v));
        } else {
            kv_cache.push(kv_cache[plan.kv_layer as usize].clone());
        }
        let (k, v) = &kv_cache[layer as usize];
        let o = project(Role::O, &attention(&q, k, v, Attention::of_layer(c, &plan)))?;
        let mut h = rmsnorm(&o, &w(Role::PostAttnNorm)?, c.eps);
        add(&mut h, active);
        add(&mut h, &laurel);
        h.iter_mut().for_each(|v| *v *= HALF_SQRT_2);

        // Feed-forward, its gate cut first on the sparse layers.
        let xn = rmsnorm(&h, &w(Role::FfnNorm)?, c.eps);
        let mut g = project(Role::Gate, &xn)?;
        if let Some(k) = plan.sparsity {
            for row in g.chunks_mut(c.n_ff as usize) {
                let cutoff = sparsity_cutoff(row, k);
                row.iter_mut().for_each(|v| *v = (*v - cutoff).max(0.0));
            }
        }
        let u = project(Role::Up, &xn)?;
        let d = project(Role::Down, &super::gated(c.arch.activation, &g, &u))?;
        let mut out = rmsnorm(&d, &w(Role::PostFfnNorm)?, c.eps);
        add(&mut out, &h);

        // Correct.
        let corrections = matmul(&w(Role::AltupCorrect)?, s, &router(&out)?, n);
        for (j, stream) in streams.iter_mut().enumerate() {
            *stream = predictions[j].clone();
            for t in 0..n {
                let d = corrections[t * s + j] + 1.0;
                let (o, a) = (&out[t * e..][..e], &active[t * e..][..e]);
                stream[t * e..][..e].iter_mut().zip(o.iter().zip(a)).for_each(|(v, (o, a))| {
                    *v += d * (o - a);
                });
            }
        }

        // The per-layer input, into every stream but the active one.
        let gate =
            gelu(&project(Role::PerLayerGate, &scaled(&streams[0], &w(Role::AltupCorrectScale)?))?);
        let this_layer: Vec<f32> = (0..n)
            .flat_map(|t| &inputs[(t * layers + layer as usize) * p..][..p])
            .copied()
            .collect();
        let gated: Vec<f32> = gate.iter().zip(&this_layer).map(|(a, b)| a * b).collect();
        let from_input =
            rmsnorm(&project(Role::PerLayerProj, &gated)?, &w(Role::PerLayerNorm)?, c.eps);
        streams[1..].iter_mut().for_each(|stream| add(stream, &from_input));
    }

    let unembedded = stream_projections(
        &global(Global::AltupUnembdProj)?,
        e,
        s - 1,
        |i| streams[i + 1].clone(),
        &streams[0],
    );
    let mut h = streams[0][(n - 1) * e..].to_vec();
    unembedded.iter().for_each(|stream| add(&mut h, &stream[(n - 1) * e..]));
    h.iter_mut().for_each(|v| *v /= s as f32);
    super::logits(gguf, c, &h, embd)
}
