//! GGUF LoRA adapters (llama.cpp's format) on the device, applied per request.
//!
//! An adapter holds, for some of a layer's projections `W` (in → out), a pair
//! `A` (r × in) and `B` (out × r); a request applies `y += scale · (alpha / r) · B(A x)`
//! after the base product, which is what llama.cpp computes. The file is llama.cpp's:
//! `general.type = "adapter"`, `adapter.type = "lora"`, `adapter.lora.alpha`, and
//! tensors `blk.N.<projection>.weight.lora_a` (ggml shape [in, r]) and `.lora_b`
//! ([r, out]), in F32, F16 or BF16.
//!
//! Both factors run through the ordinary matmul kernel, which needs rows of a multiple
//! of 32 elements: `B`'s rows are `r` long, so the rank is padded to [`RANK_PAD`] with
//! zero rows of `A` and zero columns of `B`. That changes no value and costs little:
//! the padded factors are still tiny next to the base weights.

use hearth_sdk::helpers::{dequantize, GgmlType, Gguf, TensorInfo};
use hearth_sdk::PluginError;

use crate::device::Gpu;
use crate::kernels::Weight;
use crate::weights::Config;

/// The rank every adapter is padded to: a whole matmul block.
pub const RANK_PAD: u32 = 32;

/// The projections of a layer, in the order the forward pass runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projection {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Projection {
    pub const ALL: [Projection; 7] =
        [Self::Q, Self::K, Self::V, Self::O, Self::Gate, Self::Up, Self::Down];

    /// llama.cpp's tensor name part, as in `blk.N.attn_v.weight`.
    fn gguf_name(self) -> &'static str {
        match self {
            Self::Q => "attn_q",
            Self::K => "attn_k",
            Self::V => "attn_v",
            Self::O => "attn_output",
            Self::Gate => "ffn_gate",
            Self::Up => "ffn_up",
            Self::Down => "ffn_down",
        }
    }

    /// (in, out) of the base weight.
    fn shape(self, config: &Config) -> (u32, u32) {
        let (e, f, q, kv) = (config.n_embd, config.n_ff, config.q_dim(), config.kv_dim());
        match self {
            Self::Q => (e, q),
            Self::K | Self::V => (e, kv),
            Self::O => (q, e),
            Self::Gate | Self::Up => (e, f),
            Self::Down => (f, e),
        }
    }
}

/// One projection's low-rank update, padded to [`RANK_PAD`].
pub struct LoraPair {
    /// RANK_PAD × in.
    pub a: Weight,
    /// out × RANK_PAD.
    pub b: Weight,
}

/// A loaded adapter: per layer, per [`Projection`], the pair if the adapter has one.
pub struct LoraAdapter {
    /// `alpha / r`, the factor llama.cpp applies on top of the request's scale.
    pub alpha_over_rank: f32,
    layers: Vec<[Option<LoraPair>; 7]>,
}

impl LoraAdapter {
    pub fn pair(&self, layer: usize, projection: Projection) -> Option<&LoraPair> {
        self.layers[layer][projection as usize].as_ref()
    }

    /// Read and check the adapter at `path` against the base model, then upload it.
    /// A file that is not a LoRA adapter for this model is the request's fault
    /// (`InvalidRequest`), named after the adapter.
    pub fn load(gpu: &Gpu, config: &Config, name: &str, path: &str) -> Result<Self, PluginError> {
        let refuse =
            |why: String| PluginError::invalid_request(format!("adapter {name}: {path}: {why}"));
        let gguf = Gguf::open(path).map_err(|error| refuse(error.to_string()))?;
        let text = |key: &str| gguf.str(key).unwrap_or("");
        if text("general.type") != "adapter" || text("adapter.type") != "lora" {
            return Err(refuse(
                "not a LoRA adapter (general.type must be \"adapter\", adapter.type \"lora\")"
                    .into(),
            ));
        }
        if text("general.architecture") != config.arch {
            return Err(refuse(format!(
                "made for architecture `{}`, the model is `{}`",
                text("general.architecture"),
                config.arch
            )));
        }
        let mut layers: Vec<[Option<LoraPair>; 7]> =
            (0..config.n_layer).map(|_| Default::default()).collect();
        let mut rank = None;
        for tensor in gguf.tensors() {
            let Some(stem) = tensor.name.strip_suffix(".lora_a") else {
                if !tensor.name.ends_with(".lora_b") {
                    return Err(refuse(format!("tensor `{}` is not a LoRA factor", tensor.name)));
                }
                continue;
            };
            let (layer, projection) = target(stem, config.n_layer)
                .ok_or_else(|| refuse(format!("tensor `{}`: the WebGPU backend adapts only the layers' attention and MLP projections", tensor.name)))?;
            let b_name = format!("{stem}.lora_b");
            let b = gguf
                .tensor(&b_name)
                .ok_or_else(|| refuse(format!("`{}` has no `{b_name}`", tensor.name)))?;
            let (input, output) = projection.shape(config);
            let r = tensor.dims.get(1).copied().unwrap_or(0);
            let shapes_fit = tensor.dims.len() == 2
                && b.dims.len() == 2
                && tensor.dims[0] == u64::from(input)
                && b.dims == [r, u64::from(output)]
                && (1..=u64::from(RANK_PAD)).contains(&r);
            if !shapes_fit {
                return Err(refuse(format!(
                    "`{stem}` has lora_a {:?} and lora_b {:?}; this model needs [{input}, r] and [r, {output}] with r at most {RANK_PAD}",
                    tensor.dims, b.dims
                )));
            }
            if *rank.get_or_insert(r) != r {
                return Err(refuse(format!(
                    "`{stem}` has rank {r}, other tensors rank {}",
                    rank.unwrap_or(r)
                )));
            }
            let r = r as usize;
            // A: r rows of `input`, then zero rows up to the padded rank.
            let mut a = factor(&gguf, tensor).map_err(refuse)?;
            a.resize(RANK_PAD as usize * input as usize, 0.0);
            // B: `output` rows of r, each widened with zeros to the padded rank.
            let b = factor(&gguf, b).map_err(refuse)?;
            let mut b_padded = vec![0.0f32; output as usize * RANK_PAD as usize];
            for (row, padded) in b.chunks_exact(r).zip(b_padded.chunks_exact_mut(RANK_PAD as usize))
            {
                padded[..r].copy_from_slice(row);
            }
            let upload = |label: &str, values: &[f32], ncols: u32, nrows: u32| {
                Weight::upload(
                    gpu,
                    label,
                    GgmlType::F32,
                    u64::from(ncols),
                    u64::from(nrows),
                    bytemuck::cast_slice(values),
                )
            };
            layers[layer][projection as usize] = Some(LoraPair {
                a: upload(&tensor.name, &a, input, RANK_PAD)?,
                b: upload(&b_name, &b_padded, RANK_PAD, output)?,
            });
        }
        let rank = rank.ok_or_else(|| refuse("the file holds no LoRA tensors".into()))?;
        // llama.cpp reads a missing or zero alpha as "no alpha/r factor".
        let alpha = gguf.f64("adapter.lora.alpha").unwrap_or(0.0) as f32;
        let alpha_over_rank = if alpha == 0.0 { 1.0 } else { alpha / rank as f32 };
        Ok(Self { alpha_over_rank, layers })
    }
}

/// `blk.N.<projection>.weight` → (N, projection), for layers the model has.
fn target(stem: &str, n_layer: u32) -> Option<(usize, Projection)> {
    let rest = stem.strip_prefix("blk.")?.strip_suffix(".weight")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: u32 = layer.parse().ok().filter(|&layer| layer < n_layer)?;
    let projection = Projection::ALL.into_iter().find(|p| p.gguf_name() == part)?;
    Some((layer as usize, projection))
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
