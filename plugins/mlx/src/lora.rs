//! GGUF LoRA adapters in llama.cpp's format (`<base>.weight.lora_a` / `.lora_b` tensors,
//! `adapter.lora.alpha`), applied per request on the low-rank path:
//! `y = W x + s · B (A x)` with `s = scale · alpha / rank` (or `scale` when alpha is 0,
//! as llama.cpp does).
//!
//! Why not merge `W + s·BA` into the weights: the base weights are 4- or 8-bit
//! quantized, so a merge means dequantize, add and requantize (lossy, and slow for
//! every change of adapters or scales), and each request may name different adapters.
//! The low-rank path costs two thin matmuls per adapted projection and leaves the base
//! weights shared and untouched.
//!
//! llama.cpp's converter permutes a Llama adapter's Q and K output rows as it does the
//! model's (to rotate adjacent pairs); on an MLX-format Llama, whose rows keep Hugging
//! Face order, those `lora_b` rows are put back in that order at load.

use std::collections::HashMap;
use std::sync::Arc;

use hearth_sdk::helpers::{GgmlType, Gguf};
use hearth_sdk::PluginError;

use crate::ffi::{self, Array};
use crate::weights::Config;

/// One adapter's low-rank pairs by base weight name (e.g. `blk.0.attn_q`).
pub struct Adapter {
    /// `(A [rank, in], B [out, rank], alpha-derived factor per unit of scale)`.
    pairs: HashMap<String, (Array, Array, f32)>,
}

impl Adapter {
    /// Load and check an adapter for a model of shape `config`; `name` is the catalog's
    /// name for it, used in errors.
    pub fn load(name: &str, path: &str, config: &Config) -> Result<Self, PluginError> {
        let arch = config.arch.as_str();
        let invalid = |what: String| {
            PluginError::invalid_request(format!("adapter `{name}` ({path}): {what}"))
        };
        let gguf = Gguf::open(path).map_err(|error| invalid(error.to_string()))?;
        if gguf.str("general.type").ok() != Some("adapter")
            || gguf.str("adapter.type").ok() != Some("lora")
        {
            return Err(invalid(
                "not a LoRA adapter (general.type must be `adapter`, adapter.type `lora`)".into(),
            ));
        }
        match gguf.str("general.architecture") {
            Ok(found) if found == arch => {}
            Ok(found) => {
                return Err(invalid(format!(
                    "made for architecture `{found}`, the model is `{arch}`"
                )))
            }
            Err(error) => return Err(invalid(error.to_string())),
        }
        if let Some(t) =
            gguf.tensors().iter().find(|t| !matches!(t.ty, GgmlType::F32 | GgmlType::F16))
        {
            return Err(invalid(format!(
                "tensor `{}` is {}; adapters must be F32 or F16",
                t.name,
                t.ty.name()
            )));
        }
        let alpha = gguf.f64("adapter.lora.alpha").unwrap_or(0.0) as f32;
        let mut arrays: HashMap<String, Array> = ffi::load_gguf(path)?.into_iter().collect();
        let bases: Vec<String> = arrays
            .keys()
            .filter_map(|key| key.strip_suffix(".weight.lora_a"))
            .map(str::to_string)
            .collect();
        let mut pairs = HashMap::new();
        for base in bases {
            let a =
                arrays.remove(&format!("{base}.weight.lora_a")).expect("listed above").as_f32()?;
            let b = arrays
                .remove(&format!("{base}.weight.lora_b"))
                .ok_or_else(|| invalid(format!("`{base}.weight.lora_a` has no matching lora_b")))?
                .as_f32()?;
            let (a_shape, b_shape) = (a.shape(), b.shape());
            if a_shape.len() != 2 || b_shape.len() != 2 || a_shape[0] != b_shape[1] {
                return Err(invalid(format!(
                    "`{base}`: lora_a {a_shape:?} and lora_b {b_shape:?} do not pair"
                )));
            }
            let heads = match base.rsplit('.').next() {
                Some("attn_q") => config.heads,
                Some("attn_k") => config.kv_heads,
                _ => 0,
            };
            let b = if heads > 0 && config.arch == "llama" && !config.traditional_rope {
                unpermute_rows(&b, heads)?
            } else {
                b
            };
            a.eval()?;
            b.eval()?;
            let factor = if alpha == 0.0 { 1.0 } else { alpha / a_shape[0] as f32 };
            pairs.insert(base, (a, b, factor));
        }
        if pairs.is_empty() {
            return Err(invalid("holds no lora_a/lora_b tensor pairs".into()));
        }
        Ok(Self { pairs })
    }

    pub fn nbytes(&self) -> u64 {
        self.pairs.values().map(|(a, b, _)| a.nbytes() + b.nbytes()).sum()
    }

    /// The `[in, out]` shapes the adapter expects, by base name, for checking against the model.
    pub fn shapes(&self) -> impl Iterator<Item = (&str, i32, i32)> {
        self.pairs.iter().map(|(base, (a, b, _))| (base.as_str(), a.shape()[1], b.shape()[0]))
    }
}

/// `b`'s rows from llama.cpp's order back to Hugging Face's: within each of `heads`
/// heads, GGUF row `2i + j` is Hugging Face row `j·half + i`.
fn unpermute_rows(b: &Array, heads: i32) -> Result<Array, PluginError> {
    let rows = b.shape()[0];
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let order: Vec<i32> = (0..rows)
        .map(|row| {
            let (head, within) = (row / head_dim, row % head_dim);
            head * head_dim + 2 * (within % half) + within / half
        })
        .collect();
    b.take(&Array::from_i32(&order, &[rows])?, 0)
}

/// The adapters one request uses, with their scales (zero-scale ones left out).
#[derive(Default)]
pub struct ActiveAdapters(Vec<(Arc<Adapter>, f32)>);

impl ActiveAdapters {
    pub fn new(adapters: Vec<(Arc<Adapter>, f32)>) -> Self {
        Self(adapters.into_iter().filter(|(_, scale)| *scale != 0.0).collect())
    }

    /// Add every active adapter's `s · B (A x)` for weight `name` to `y`.
    pub fn apply(&self, name: &str, mut y: Array, x: &Array) -> Result<Array, PluginError> {
        for (adapter, scale) in &self.0 {
            if let Some((a, b, factor)) = adapter.pairs.get(name) {
                let delta = x.matmul(&a.transpose(&[1, 0])?)?.matmul(&b.transpose(&[1, 0])?)?;
                y = y.add(&delta.scale(scale * factor)?)?;
            }
        }
        Ok(y)
    }
}
