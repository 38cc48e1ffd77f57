//! Gemma 3n's block ([`crate::Architecture::altup`]), described once: its sizes from
//! GGUF metadata, which layers share KV, and the program every engine runs for it.
//!
//! The hidden state is [`AltUp::streams`] parallel streams of `n_embd` (AltUp). Per
//! token, with `e = n_embd`, `S` streams, `p` = [`AltUp::per_layer_dim`], `L` layers:
//!
//! 1. **Embeddings.** `x = embd[t] · √e`. The per-layer inputs: `per_layer_token_embd[t]`
//!    (`L·p` values) `· √p`, plus `rmsnorm_p(per_layer_model_proj · x / √e)` with
//!    `per_layer_proj_norm` (each `p`-chunk normed apart), all `· 1/√2`: `inp[l]` per layer.
//!    Stream 0 is `x`; stream `i ≥ 1` is `altup_proj[i−1] · x` rescaled to `x`'s L2 norm.
//! 2. **Each layer** (`a` = stream 0, the active one):
//!    - *router*: `r(v) = tanh(altup_router · rmsnorm(v, altup_router_norm) / e)` (`S`);
//!    - *predict*: `c = altup_predict_coef · r(a)` (`S·S`, row `j` at `c[j·S..]`);
//!      `pred[j] = stream[j] + Σ_k c[j·S + k] · stream[k]`;
//!    - `n = rmsnorm(pred[0], attn_norm)`; *LAuReL*:
//!      `lau = n + rmsnorm(laurel_r · laurel_l · n, laurel_post_norm)`;
//!    - *attention* as Gemma 3's (Q/K norms, RoPE), with V also RMS-normed without a
//!      weight and q·k unscaled; a layer past [`AltUp::first_shared_kv`] computes only Q
//!      and attends to an earlier layer's K and V ([`kv_layer`]);
//!      `h = rmsnorm(o, post_attention_norm) + pred[0]`, then `h = (h + lau) / √2`;
//!    - *feed-forward*: `g = ffn_gate · rmsnorm(h, ffn_norm)`, cut by the layer's
//!      sparsity ([`crate::LayerPlan::sparsity`]: `relu(g − mean − k·std)`), then
//!      `out = h + rmsnorm(ffn_down · (gelu(g) ⊙ ffn_up · …), post_ffw_norm)`;
//!    - *correct*: `d = altup_correct_coef · r(out) + 1` (`S`);
//!      `stream[j] = pred[j] + d[j] · (out − pred[0])`;
//!    - *per-layer input*: `q = per_layer proj · (gelu(inp_gate · (stream[0] ⊙
//!      altup_correct_scale)) ⊙ inp[l])`, `stream[j] += rmsnorm(q, post_norm)` for `j ≥ 1`.
//! 3. **Output.** Stream `i ≥ 1` becomes `altup_unembd_proj[i−1] · stream[i]`, rescaled
//!    to stream 0's L2 norm; the hidden state is the mean of the `S` streams; logits as
//!    usual, then `cap · tanh(logit / cap)` ([`AltUp::logit_softcap`]).

use hearth_sdk::helpers::{Gguf, Value};
use hearth_sdk::PluginError;

use crate::config::AltUp;

/// `1/√2`: the scale of the per-layer inputs' sum and of the attention and LAuReL sum.
pub const HALF_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// The layer whose K and V layer `index` attends to when it shares them: the last layer
/// before `first_shared` of its kind (local or global); `None` for a layer with its own.
pub fn kv_layer(index: u32, first_shared: u32, local_layers: &[bool]) -> Option<u32> {
    if index < first_shared {
        return None;
    }
    let local = |layer: u32| local_layers.get(layer as usize).copied().unwrap_or(false);
    (0..first_shared).rev().find(|&layer| local(layer) == local(index))
}

/// Gemma 3n's sizes from a GGUF file's metadata (keys as llama.cpp's converter writes
/// them), refusing what no engine here runs.
pub fn from_gguf(gguf: &Gguf, n_layer: u32, local_layers: &[bool]) -> Result<AltUp, PluginError> {
    let key = |name: &str| format!("gemma3n.{name}");
    let int = |name: &str, default: u64| -> Result<u32, PluginError> {
        let value = gguf.get(&key(name)).map_or(Some(default), Value::as_u64);
        value.and_then(|v| u32::try_from(v).ok()).ok_or_else(|| {
            PluginError::model_file(format!("`{}` is not a 32-bit count", key(name)))
        })
    };
    if int("altup.active_idx", 0)? != 0 {
        return Err(PluginError::unsupported("an AltUp active stream other than the first"));
    }
    let streams = int("altup.num_inputs", 4)?;
    let per_layer_dim = int("embedding_length_per_layer_input", 256)?;
    let first_shared_kv = n_layer.saturating_sub(int("attention.shared_kv_layers", 0)?);
    if streams < 2 || per_layer_dim == 0 {
        return Err(PluginError::model_file(format!(
            "{streams} AltUp streams, per-layer inputs of {per_layer_dim}"
        )));
    }
    if let Some(layer) =
        (first_shared_kv..n_layer).find(|&l| kv_layer(l, first_shared_kv, local_layers).is_none())
    {
        return Err(PluginError::model_file(format!(
            "layer {layer} shares KV but no earlier layer of its kind has its own"
        )));
    }
    let sparsity = match gguf.get(&key("activation_sparsity_scale")) {
        Some(Value::Array(scales)) if scales.len() == n_layer as usize => scales
            .iter()
            .map(|scale| scale.as_f64().map(|k| k.is_finite().then_some(k as f32)))
            .collect::<Option<Vec<_>>>(),
        None => Some(vec![None; n_layer as usize]),
        Some(_) => None,
    }
    .ok_or_else(|| {
        PluginError::model_file(format!(
            "`{}` is not {n_layer} numbers",
            key("activation_sparsity_scale")
        ))
    })?;
    let laurel_rank = gguf
        .tensor("blk.0.laurel_l.weight")
        .and_then(|t| u32::try_from(t.rows()).ok())
        .ok_or_else(|| PluginError::model_file("tensor `blk.0.laurel_l.weight` is missing"))?;
    Ok(AltUp {
        streams,
        per_layer_dim,
        laurel_rank,
        first_shared_kv,
        sparsity,
        logit_softcap: gguf.f64(&key("final_logit_softcapping")).map_or(30.0, |cap| cap as f32),
    })
}

/// Activation sparsity's cutoff of one row of gate values: `mean + k · std`, the
/// standard deviation with `n − 1` in its denominator.
pub fn sparsity_cutoff(row: &[f32], k: f32) -> f32 {
    let n = row.len() as f64;
    let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = row.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean + f64::from(k) * var.sqrt()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_layers_reuse_the_last_layer_of_their_own_kind_before_sharing_begins() {
        let local: Vec<bool> = (0..25).map(|i| i % 5 != 4).collect();
        assert_eq!(kv_layer(19, 20, &local), None);
        assert_eq!(kv_layer(20, 20, &local), Some(18));
        assert_eq!(kv_layer(23, 20, &local), Some(18));
        assert_eq!(kv_layer(24, 20, &local), Some(19));
        assert_eq!(kv_layer(3, 25, &local), None);
    }

    #[test]
    fn the_sparsity_cutoff_lies_k_sample_deviations_above_the_mean() {
        // Mean 2.5, sample variance 5/3.
        let cutoff = sparsity_cutoff(&[1.0, 2.0, 3.0, 4.0], 1.5);
        assert!((f64::from(cutoff) - (2.5 + 1.5 * (5.0f64 / 3.0).sqrt())).abs() < 1e-6);
    }
}
