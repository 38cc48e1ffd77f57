//! The CPU reference executor: every step of the layer program written straight from
//! the model's equations, in f32 values and f64 sums, over weights the SDK's
//! `dequantize` expands to f32. Slow and exact; the engines' conformance tests and
//! kernel tests compare against it, and it against llama.cpp.

use hearth_sdk::helpers::{dequantize, Gguf};
use hearth_sdk::PluginError;

use crate::arch::{Activation, RopePairs};
use crate::lora::LoraFile;
use crate::roles::{gguf_layer_name, Global, Role};
use crate::{Config, LayerPlan};

mod altup;

/// `y[t][r] = Σ_c w[r][c] · x[t][c]`, accumulated in f64.
pub fn matmul(w: &[f32], ncols: usize, x: &[f32], ntok: usize) -> Vec<f32> {
    let rows = w.len() / ncols;
    let mut y = vec![0.0; ntok * rows];
    for t in 0..ntok {
        let xt = &x[t * ncols..(t + 1) * ncols];
        for r in 0..rows {
            let wr = &w[r * ncols..(r + 1) * ncols];
            y[t * rows + r] =
                wr.iter().zip(xt).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum::<f64>() as f32;
        }
    }
    y
}

/// RMSNorm of each `w.len()`-long row of `x`.
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let n = w.len();
    x.chunks(n)
        .flat_map(|row| {
            let mean = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / n as f64;
            let inv = 1.0 / (mean + f64::from(eps)).sqrt();
            row.iter()
                .zip(w)
                .map(move |(&v, &g)| (f64::from(v) * inv) as f32 * g)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// RoPE in place over `x` = `[tokens][heads][head_dim]`, token t at position pos0 + t.
pub fn rope(
    x: &mut [f32],
    heads: usize,
    head_dim: usize,
    n_rot: usize,
    pos0: usize,
    pairs: RopePairs,
    base: f32,
) {
    for (index, head) in x.chunks_mut(head_dim).enumerate() {
        let pos = (pos0 + index / heads) as f64;
        for pair in 0..n_rot / 2 {
            let theta = pos * f64::from(base).powf(-2.0 * pair as f64 / n_rot as f64);
            let (i0, i1) = match pairs {
                RopePairs::Halves => (pair, pair + n_rot / 2),
                RopePairs::Adjacent => (2 * pair, 2 * pair + 1),
            };
            let (a, b) = (f64::from(head[i0]), f64::from(head[i1]));
            head[i0] = (a * theta.cos() - b * theta.sin()) as f32;
            head[i1] = (a * theta.sin() + b * theta.cos()) as f32;
        }
    }
}

/// The geometry of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct Attention {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Position of the first query; keys cover positions `0..pos0 + queries`.
    pub pos0: usize,
    pub scale: f32,
    /// Keys a query sees, its own included (`None`: all earlier ones).
    pub window: Option<usize>,
}

impl Attention {
    /// Layer `plan`'s attention over a whole prompt from position 0, as the reference
    /// evaluates it.
    pub fn of_layer(c: &Config, plan: &LayerPlan) -> Self {
        Self {
            heads: c.heads as usize,
            kv_heads: c.kv_heads as usize,
            head_dim: c.head_dim as usize,
            pos0: 0,
            scale: c.attention_scale,
            window: plan.window.map(|w| w as usize),
        }
    }
}

/// Causal attention: q = `[ntok][heads·hd]`, k and v = `[positions][kv_heads·hd]`.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], shape: Attention) -> Vec<f32> {
    let Attention { heads, kv_heads, head_dim: hd, pos0, scale, window } = shape;
    let ntok = q.len() / (heads * hd);
    let kv_dim = kv_heads * hd;
    let mut out = vec![0.0; q.len()];
    for t in 0..ntok {
        let last = pos0 + t;
        let first = window.map_or(0, |w| (last + 1).saturating_sub(w));
        for h in 0..heads {
            let kvh = h / (heads / kv_heads);
            let qh = &q[(t * heads + h) * hd..][..hd];
            let scores: Vec<f64> = (first..=last)
                .map(|j| {
                    let kj = &k[j * kv_dim + kvh * hd..][..hd];
                    qh.iter().zip(kj).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum::<f64>()
                        * f64::from(scale)
                })
                .collect();
            let max = scores.iter().copied().fold(f64::MIN, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for d in 0..hd {
                let value: f64 = (first..=last)
                    .zip(&weights)
                    .map(|(j, w)| w * f64::from(v[j * kv_dim + kvh * hd + d]))
                    .sum();
                out[(t * heads + h) * hd + d] = (value / total) as f32;
            }
        }
    }
    out
}

/// The gated feed-forward's activation: `act(g) · u`.
pub fn gated(activation: Activation, g: &[f32], u: &[f32]) -> Vec<f32> {
    g.iter().zip(u).map(|(&a, &b)| (activation.apply(f64::from(a)) * f64::from(b)) as f32).collect()
}

fn add(into: &mut [f32], other: &[f32]) {
    into.iter_mut().zip(other).for_each(|(a, b)| *a += b);
}

/// A tensor's values as f32, or a `ModelFile` error naming it.
pub(crate) fn tensor(gguf: &Gguf, name: &str) -> Result<Vec<f32>, PluginError> {
    let info = gguf
        .tensor(name)
        .ok_or_else(|| PluginError::model_file(format!("tensor `{name}` is missing")))?;
    let mut values = vec![0.0; info.elements() as usize];
    dequantize(info.ty, gguf.tensor_data(info), &mut values)
        .ok_or_else(|| PluginError::unsupported(format!("tensor `{name}` has type {}", info.ty)))?;
    Ok(values)
}

/// A projection of layer `layer` of `x` (`n` tokens): its matrix, its bias where the
/// architecture has one, and `lora`'s pairs for it at their scale.
pub(crate) fn project(
    gguf: &Gguf,
    c: &Config,
    layer: u32,
    role: Role,
    x: &[f32],
    lora: Option<(&LoraFile, f32)>,
) -> Result<Vec<f32>, PluginError> {
    let w = |role: Role| tensor(gguf, &gguf_layer_name(layer, role));
    let (inputs, _) = c.projection_shape(role).expect("a projection");
    let n = x.len() / inputs as usize;
    let mut y = matmul(&w(role)?, inputs as usize, x, n);
    let bias = match role {
        Role::Q => Some(Role::QBias),
        Role::K => Some(Role::KBias),
        Role::V => Some(Role::VBias),
        _ => None,
    };
    if let Some(bias) = bias.filter(|bias| bias.present_in(c.arch)) {
        let b = w(bias)?;
        y.chunks_mut(b.len()).for_each(|row| add(row, &b));
    }
    if let Some((file, scale)) = lora {
        for pair in file.pairs.iter().filter(|p| p.layer == layer && p.role == role) {
            let rank = pair.rank as usize;
            let low = matmul(&pair.a, inputs as usize, x, n);
            let update = matmul(&pair.b, rank, &low, n);
            y.iter_mut().zip(&update).for_each(|(y, u)| *y += scale * file.factor * u);
        }
    }
    Ok(y)
}

/// The logits of the last of `tokens`, evaluated from position 0 on the CPU, with
/// `lora`'s pairs applied at its scale.
pub fn forward(
    gguf: &Gguf,
    tokens: &[u32],
    lora: Option<(&LoraFile, f32)>,
) -> Result<Vec<f32>, PluginError> {
    let c = Config::from_gguf(gguf)?;
    if c.arch.altup {
        return altup::forward(gguf, &c, tokens, lora);
    }
    let e = c.n_embd as usize;
    let (h, embd) = residual_stream(gguf, &c, tokens, lora)?;
    logits(gguf, &c, &h[(tokens.len() - 1) * e..], embd)
}

/// The logits after every one of `tokens`, a row of the vocabulary's each, evaluated
/// from position 0 on the CPU: one pass over a prompt and its answer checks every step
/// of a greedy answer (each row's largest logit picks the next token).
pub fn logits_of_every_token(gguf: &Gguf, tokens: &[u32]) -> Result<Vec<f32>, PluginError> {
    let (c, h, embd) = every_token_stream(gguf, tokens, "logits of every token")?;
    logits(gguf, &c, &h, embd)
}

/// The final-normed hidden state of every one of `tokens`, evaluated from position 0
/// on the CPU: what an embedding pools.
pub fn hidden_states(gguf: &Gguf, tokens: &[u32]) -> Result<Vec<f32>, PluginError> {
    let (c, h, _) = every_token_stream(gguf, tokens, "hidden states")?;
    Ok(rmsnorm(&h, &tensor(gguf, Global::OutputNorm.gguf_name())?, c.eps))
}

/// The model's config, every token's residual stream after the last layer and the token
/// embeddings, for `what` the CPU reference computes of every token: not of Gemma 3n,
/// whose AltUp streams it follows for the last token alone.
fn every_token_stream(
    gguf: &Gguf,
    tokens: &[u32],
    what: &str,
) -> Result<(Config, Vec<f32>, Vec<f32>), PluginError> {
    let c = Config::from_gguf(gguf)?;
    if c.arch.altup {
        return Err(PluginError::unsupported(format!(
            "the CPU reference computes no {what} of {}",
            c.arch.gguf_name
        )));
    }
    let (h, embd) = residual_stream(gguf, &c, tokens, None)?;
    Ok((c, h, embd))
}

/// Every token's residual stream after the last layer, and the token embeddings (the
/// output matrix of a tied model).
fn residual_stream(
    gguf: &Gguf,
    c: &Config,
    tokens: &[u32],
    lora: Option<(&LoraFile, f32)>,
) -> Result<(Vec<f32>, Vec<f32>), PluginError> {
    let (e, hd) = (c.n_embd as usize, c.head_dim as usize);
    let (heads, kv_heads) = (c.heads as usize, c.kv_heads as usize);
    let n = tokens.len();
    let embd = tensor(gguf, Global::TokenEmbd.gguf_name())?;
    let scale = c.embedding_scale();
    let mut h: Vec<f32> = tokens
        .iter()
        .flat_map(|&t| embd[t as usize * e..][..e].iter().map(|v| v * scale))
        .collect();
    for layer in 0..c.n_layer {
        let w = |role: Role| tensor(gguf, &gguf_layer_name(layer, role));
        let project = |role: Role, x: &[f32]| project(gguf, c, layer, role, x, lora);
        let plan = c.layer(layer);
        let xn = rmsnorm(&h, &w(Role::AttnNorm)?, c.eps);
        let mut q = project(Role::Q, &xn)?;
        let mut k = project(Role::K, &xn)?;
        let v = project(Role::V, &xn)?;
        if c.arch.qk_norm {
            q = rmsnorm(&q, &w(Role::QNorm)?, c.eps);
            k = rmsnorm(&k, &w(Role::KNorm)?, c.eps);
        }
        let n_rot = c.n_rot as usize;
        rope(&mut q, heads, hd, n_rot, 0, c.rope_pairs, plan.rope_base);
        rope(&mut k, kv_heads, hd, n_rot, 0, c.rope_pairs, plan.rope_base);
        let mut o = project(Role::O, &attention(&q, &k, &v, Attention::of_layer(c, &plan)))?;
        if c.arch.sandwich_norms {
            o = rmsnorm(&o, &w(Role::PostAttnNorm)?, c.eps);
        }
        add(&mut h, &o);
        let xn = rmsnorm(&h, &w(Role::FfnNorm)?, c.eps);
        let mut d = match c.experts {
            None => {
                let g =
                    gated(c.arch.activation, &project(Role::Gate, &xn)?, &project(Role::Up, &xn)?);
                project(Role::Down, &g)?
            }
            Some(experts) => {
                let router = matmul(&w(Role::Router)?, e, &xn, n);
                let (gate, up, down) = (w(Role::GateExps)?, w(Role::UpExps)?, w(Role::DownExps)?);
                let f = c.n_ff as usize;
                let mut out = vec![0.0; n * e];
                for t in 0..n {
                    let x = &xn[t * e..][..e];
                    let logits = &router[t * experts.count as usize..][..experts.count as usize];
                    for (expert, weight) in experts.route(logits) {
                        let matrix = |all: &[f32]| all[expert as usize * f * e..][..f * e].to_vec();
                        let g = gated(
                            c.arch.activation,
                            &matmul(&matrix(&gate), e, x, 1),
                            &matmul(&matrix(&up), e, x, 1),
                        );
                        let y = matmul(&matrix(&down), f, &g, 1);
                        out[t * e..][..e].iter_mut().zip(&y).for_each(|(o, y)| *o += weight * y);
                    }
                }
                out
            }
        };
        if c.arch.sandwich_norms {
            d = rmsnorm(&d, &w(Role::PostFfnNorm)?, c.eps);
        }
        add(&mut h, &d);
    }
    Ok((h, embd))
}

/// The logits of the tokens' final hidden states `h`, a row each: the output norm, the
/// output matrix (`embd` where it is tied) and the soft cap where the model has one.
fn logits(gguf: &Gguf, c: &Config, h: &[f32], embd: Vec<f32>) -> Result<Vec<f32>, PluginError> {
    let normed = rmsnorm(h, &tensor(gguf, Global::OutputNorm.gguf_name())?, c.eps);
    let output = match gguf.tensor(Global::Output.gguf_name()) {
        Some(_) => tensor(gguf, Global::Output.gguf_name())?,
        None => embd,
    };
    let e = c.n_embd as usize;
    let mut logits = matmul(&output, e, &normed, h.len() / e);
    if let Some(cap) = c.altup.as_ref().map(|altup| f64::from(altup.logit_softcap)) {
        logits.iter_mut().for_each(|l| *l = (cap * (f64::from(*l) / cap).tanh()) as f32);
    }
    Ok(logits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sliding_window_of_one_attends_only_to_the_querys_own_position() {
        // Two positions, one head of 2: the second query sees only the second key/value.
        let q = [1.0, 0.0, 0.0, 1.0];
        let k = [1.0, 0.0, 0.0, 1.0];
        let v = [10.0, 20.0, 30.0, 40.0];
        let shape =
            Attention { heads: 1, kv_heads: 1, head_dim: 2, pos0: 0, scale: 1.0, window: Some(1) };
        assert_eq!(attention(&q, &k, &v, shape), vec![10.0, 20.0, 30.0, 40.0]);
        let global = attention(&q, &k, &v, Attention { window: None, ..shape });
        assert!(global[2] > 10.0 && global[2] < 30.0);
    }
}
