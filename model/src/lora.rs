//! LoRA adapters in llama.cpp's GGUF format, read and checked once for every engine:
//! `general.type = "adapter"`, `adapter.type = "lora"`, `adapter.lora.alpha`, and per
//! adapted projection `blk.N.<proj>.weight.lora_a` (ggml shape `[in, r]`) and
//! `.lora_b` (`[r, out]`) in F32, F16 or BF16. A request applies
//! `y += scale · factor · B (A x)` after the base product, with `factor = alpha / r`
//! (1 when alpha is 0 or missing), as llama.cpp does.
//!
//! Why engines apply the low-rank path instead of merging `W + s·BA`: the base weights
//! are quantized (a merge means dequantize, add, requantize: lossy and slow per change),
//! and each request may name different adapters and scales.
//!
//! llama.cpp's converter permutes a Llama adapter's Q and K output rows as it does the
//! model's (to rotate adjacent pairs); for a model whose rows keep Hugging Face order
//! those `lora_b` rows are put back in that order here.

use hearth_sdk::helpers::{dequantize, GgmlType, Gguf, TensorInfo};
use hearth_sdk::PluginError;

use crate::arch::RopePairs;
use crate::roles::Role;
use crate::Config;

/// One adapted projection's factors, as f32 rows.
pub struct LoraPair {
    pub layer: u32,
    pub role: Role,
    pub rank: u32,
    /// `rank` rows of the projection's inputs.
    pub a: Vec<f32>,
    /// The projection's outputs, rows of `rank`.
    pub b: Vec<f32>,
}

/// An adapter file's pairs and its `alpha / r` factor.
pub struct LoraFile {
    pub pairs: Vec<LoraPair>,
    pub factor: f32,
}

impl LoraFile {
    /// Read the adapter at `path` (called `name` in errors) and check it against a model
    /// of `config`. A file that is not a LoRA adapter for this model is the request's
    /// fault (`InvalidRequest`).
    pub fn read(name: &str, path: &str, config: &Config) -> Result<Self, PluginError> {
        let refuse =
            |why: String| PluginError::invalid_request(format!("adapter `{name}` ({path}): {why}"));
        let gguf = Gguf::open(path).map_err(|error| refuse(error.to_string()))?;
        let text = |key: &str| gguf.str(key).unwrap_or("");
        if text("general.type") != "adapter" || text("adapter.type") != "lora" {
            return Err(refuse(
                "not a LoRA adapter (general.type must be `adapter`, adapter.type `lora`)".into(),
            ));
        }
        if text("general.architecture") != config.arch.gguf_name {
            return Err(refuse(format!(
                "made for architecture `{}`, the model is `{}`",
                text("general.architecture"),
                config.arch.gguf_name
            )));
        }
        let mut pairs = Vec::new();
        let mut ranks = Vec::new();
        for tensor in gguf.tensors() {
            let Some(stem) = tensor.name.strip_suffix(".lora_a") else {
                if !tensor.name.ends_with(".lora_b") {
                    return Err(refuse(format!("tensor `{}` is not a LoRA factor", tensor.name)));
                }
                continue;
            };
            let (layer, role) = target(stem, config.n_layer).ok_or_else(|| {
                refuse(format!(
                    "tensor `{}`: only the layers' attention and feed-forward projections can be adapted",
                    tensor.name
                ))
            })?;
            let b_name = format!("{stem}.lora_b");
            let b_info = gguf
                .tensor(&b_name)
                .ok_or_else(|| refuse(format!("`{}` has no `{b_name}`", tensor.name)))?;
            let (inputs, outputs) = config.projection_shape(role).ok_or_else(|| {
                refuse(format!("tensor `{}`: this model has no {role:?} projection", tensor.name))
            })?;
            let rank = tensor.dims.get(1).copied().unwrap_or(0);
            let shapes_fit = tensor.dims.len() == 2
                && b_info.dims.len() == 2
                && tensor.dims[0] == u64::from(inputs)
                && b_info.dims == [rank, u64::from(outputs)]
                && rank > 0;
            if !shapes_fit {
                return Err(refuse(format!(
                    "`{stem}` has lora_a {:?} and lora_b {:?}; this model needs [{inputs}, r] and [r, {outputs}]",
                    tensor.dims, b_info.dims
                )));
            }
            let rank = rank as u32;
            let a = factor(&gguf, tensor).map_err(refuse)?;
            let mut b = factor(&gguf, b_info).map_err(refuse)?;
            let heads = match role {
                Role::Q => config.heads,
                Role::K => config.kv_heads,
                _ => 0,
            };
            if heads > 0
                && config.arch.gguf_rope == RopePairs::Adjacent
                && config.rope_pairs == RopePairs::Halves
            {
                b = unpermute_rows(&b, rank as usize, heads as usize);
            }
            ranks.push(rank);
            pairs.push(LoraPair { layer, role, rank, a, b });
        }
        let Some(&rank) = ranks.first() else {
            return Err(refuse("the file holds no lora_a/lora_b tensor pairs".into()));
        };
        if let Some(other) = ranks.iter().find(|&&r| r != rank) {
            return Err(refuse(format!(
                "tensors of ranks {rank} and {other}; an adapter has one rank"
            )));
        }
        let alpha = gguf.f64("adapter.lora.alpha").unwrap_or(0.0) as f32;
        let factor = if alpha == 0.0 { 1.0 } else { alpha / rank as f32 };
        Ok(Self { pairs, factor })
    }
}

/// `blk.N.<projection>.weight` → (N, role), for layers the model has.
fn target(stem: &str, n_layer: u32) -> Option<(u32, Role)> {
    let rest = stem.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: u32 = layer.parse().ok().filter(|&layer| layer < n_layer)?;
    let role = Role::PROJECTIONS.into_iter().find(|role| role.gguf_name() == part)?;
    Some((layer, role))
}

/// A factor's values as f32, row-major as stored.
fn factor(gguf: &Gguf, tensor: &TensorInfo) -> Result<Vec<f32>, String> {
    if !matches!(tensor.ty, GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16) {
        return Err(format!(
            "tensor `{}` has type {}; LoRA factors must be F32, F16 or BF16",
            tensor.name, tensor.ty
        ));
    }
    let mut values = vec![0.0f32; tensor.elements() as usize];
    dequantize(tensor.ty, gguf.tensor_data(tensor), &mut values)
        .ok_or_else(|| format!("tensor `{}` could not be read", tensor.name))?;
    Ok(values)
}

/// `b`'s rows (each `rank` long) from llama.cpp's order back to Hugging Face's: within
/// each of `heads` heads, GGUF row `2i + j` is Hugging Face row `j·half + i`.
fn unpermute_rows(b: &[f32], rank: usize, heads: usize) -> Vec<f32> {
    let rows = b.len() / rank;
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let mut out = vec![0.0; b.len()];
    for row in 0..rows {
        let (head, within) = (row / head_dim, row % head_dim);
        let source = head * head_dim + 2 * (within % half) + within / half;
        out[row * rank..][..rank].copy_from_slice(&b[source * rank..][..rank]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermuting_puts_interleaved_pairs_back_into_halves() {
        // One head of 4 rows, rank 1: GGUF rows hold HF rows [0, 2, 1, 3].
        let gguf_order = [0.0, 2.0, 1.0, 3.0];
        assert_eq!(unpermute_rows(&gguf_order, 1, 1), vec![0.0, 1.0, 2.0, 3.0]);
    }
}
