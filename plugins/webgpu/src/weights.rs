//! A llama-family model's shape from GGUF metadata and its weights on the device.
//!
//! Everything the kernels cannot run is refused here, at load, with an `Unsupported`
//! error that names the reason (architecture, tensor type, rope scaling, biases), so
//! the router falls back to another backend before any memory is spent.

use hearth_sdk::helpers::{dequantize, Gguf, TensorInfo};
use hearth_sdk::PluginError;

use crate::device::{Gpu, GpuBuffer};
use crate::kernels::{Weight, SUPPORTED_TYPES};
use crate::lora::Projection;

/// The hyper-parameters the forward pass needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub arch: String,
    pub n_embd: u32,
    pub n_layer: u32,
    pub n_ff: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub n_rot: u32,
    pub eps: f32,
    pub freq_base: f32,
    /// Rotate (i, i + n_rot/2) pairs (Qwen) instead of adjacent ones (Llama GGUFs).
    pub neox: bool,
    /// Per-head RMSNorm of Q and K before RoPE (Qwen3).
    pub qk_norm: bool,
    pub context_length: u32,
    pub vocab: u32,
}

fn meta_error(error: impl std::fmt::Display) -> PluginError {
    PluginError::model_file(error.to_string())
}

impl Config {
    pub fn from_gguf(gguf: &Gguf) -> Result<Self, PluginError> {
        let arch = gguf.str("general.architecture").map_err(meta_error)?.to_string();
        let (neox, qk_norm) = match arch.as_str() {
            "llama" => (false, false),
            "qwen3" => (true, true),
            other => {
                return Err(PluginError::unsupported(format!(
                    "architecture `{other}` (the WebGPU backend runs llama and qwen3)"
                )))
            }
        };
        let key = |name: &str| format!("{arch}.{name}");
        let int = |name: &str| -> Result<u32, PluginError> {
            let value = gguf.u64(&key(name)).map_err(meta_error)?;
            u32::try_from(value).ok().filter(|&v| v > 0).ok_or_else(|| {
                PluginError::model_file(format!("`{}` = {value} is out of range", key(name)))
            })
        };
        let optional = |name: &str, default: u32| {
            if gguf.get(&key(name)).is_some() {
                int(name)
            } else {
                Ok(default)
            }
        };
        if let Ok(kind) = gguf.str(&key("rope.scaling.type")) {
            if kind != "none" {
                return Err(PluginError::unsupported(format!("rope scaling `{kind}`")));
            }
        }
        let n_embd = int("embedding_length")?;
        let heads = int("attention.head_count")?;
        let kv_heads = optional("attention.head_count_kv", heads)?;
        let head_dim = optional("attention.key_length", n_embd / heads)?;
        let n_rot = optional("rope.dimension_count", head_dim)?;
        if heads % kv_heads != 0 || n_rot > head_dim || n_rot % 2 != 0 {
            return Err(PluginError::model_file(format!("inconsistent attention shape: {heads} heads, {kv_heads} KV heads, rope over {n_rot} of {head_dim}")));
        }
        let embd = gguf
            .tensor("token_embd.weight")
            .ok_or_else(|| PluginError::model_file("no token_embd.weight tensor"))?;
        Ok(Self {
            n_embd,
            n_layer: int("block_count")?,
            n_ff: int("feed_forward_length")?,
            heads,
            kv_heads,
            head_dim,
            n_rot,
            eps: gguf.f64(&key("attention.layer_norm_rms_epsilon")).map_err(meta_error)? as f32,
            freq_base: gguf.f64(&key("rope.freq_base")).unwrap_or(10_000.0) as f32,
            neox,
            qk_norm,
            context_length: optional("context_length", 2048)?,
            vocab: embd.rows() as u32,
            arch,
        })
    }

    pub fn q_dim(&self) -> u32 {
        self.heads * self.head_dim
    }
    pub fn kv_dim(&self) -> u32 {
        self.kv_heads * self.head_dim
    }
}

/// One transformer block's weights.
pub struct Layer {
    pub attn_norm: GpuBuffer,
    pub q: Weight,
    pub k: Weight,
    pub v: Weight,
    pub o: Weight,
    pub q_norm: Option<GpuBuffer>,
    pub k_norm: Option<GpuBuffer>,
    pub ffn_norm: GpuBuffer,
    pub gate: Weight,
    pub up: Weight,
    pub down: Weight,
}

impl Layer {
    pub fn weight(&self, projection: Projection) -> &Weight {
        match projection {
            Projection::Q => &self.q,
            Projection::K => &self.k,
            Projection::V => &self.v,
            Projection::O => &self.o,
            Projection::Gate => &self.gate,
            Projection::Up => &self.up,
            Projection::Down => &self.down,
        }
    }
}

/// All weights of a model.
pub struct Weights {
    pub token_embd: Weight,
    pub layers: Vec<Layer>,
    pub output_norm: GpuBuffer,
    /// `None` when the output projection is tied to the embedding table.
    pub output: Option<Weight>,
}

impl Weights {
    pub fn output(&self) -> &Weight {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }
}

/// Refuse the file before uploading anything if any tensor's type cannot be read by
/// the kernels, naming the first such tensor and its type.
pub fn check_types(gguf: &Gguf) -> Result<(), PluginError> {
    if let Some(tensor) = gguf.tensors().iter().find(|t| !SUPPORTED_TYPES.contains(&t.ty)) {
        let names: Vec<&str> = SUPPORTED_TYPES.iter().map(|ty| ty.name()).collect();
        return Err(PluginError::unsupported(format!(
            "tensor `{}` has type {}; the WebGPU backend reads {}",
            tensor.name,
            tensor.ty,
            names.join(", ")
        )));
    }
    if gguf.tensor("rope_freqs.weight").is_some() {
        return Err(PluginError::unsupported("rope frequency factors (rope_freqs.weight)"));
    }
    if let Some(bias) = gguf.tensors().iter().find(|t| t.name.ends_with(".bias")) {
        return Err(PluginError::unsupported(format!("bias tensor `{}`", bias.name)));
    }
    Ok(())
}

fn tensor<'a>(gguf: &'a Gguf, name: &str) -> Result<&'a TensorInfo, PluginError> {
    gguf.tensor(name).ok_or_else(|| {
        PluginError::model_file(format!("{}: no tensor `{name}`", gguf.path().display()))
    })
}

/// Upload a matrix, checking it is `ncols` × `nrows`.
fn matrix(
    gpu: &Gpu,
    gguf: &Gguf,
    name: &str,
    ncols: u32,
    nrows: u32,
) -> Result<Weight, PluginError> {
    let info = tensor(gguf, name)?;
    if info.dims.len() != 2 || info.dims[0] != u64::from(ncols) || info.dims[1] != u64::from(nrows)
    {
        return Err(PluginError::model_file(format!(
            "tensor `{name}` has shape {:?}, expected [{ncols}, {nrows}]",
            info.dims
        )));
    }
    Weight::upload(gpu, name, info.ty, info.dims[0], info.dims[1], gguf.tensor_data(info))
}

/// Upload a norm vector as f32 (norms are tiny; expanding them costs nothing).
fn vector(gpu: &Gpu, gguf: &Gguf, name: &str, len: u32) -> Result<GpuBuffer, PluginError> {
    let info = tensor(gguf, name)?;
    if info.elements() != u64::from(len) {
        return Err(PluginError::model_file(format!(
            "tensor `{name}` has {} elements, expected {len}",
            info.elements()
        )));
    }
    let mut values = vec![0.0f32; len as usize];
    dequantize(info.ty, gguf.tensor_data(info), &mut values).ok_or_else(|| {
        PluginError::unsupported(format!("norm tensor `{name}` has type {}", info.ty))
    })?;
    Ok(gpu.upload(name, bytemuck::cast_slice(&values)))
}

impl Weights {
    pub fn load(gpu: &Gpu, gguf: &Gguf, config: &Config) -> Result<Self, PluginError> {
        let (e, f, q, kv) = (config.n_embd, config.n_ff, config.q_dim(), config.kv_dim());
        let mut layers = Vec::with_capacity(config.n_layer as usize);
        for index in 0..config.n_layer {
            let name = |part: &str| format!("blk.{index}.{part}.weight");
            let head_norm = |part: &str| -> Result<Option<GpuBuffer>, PluginError> {
                config.qk_norm.then(|| vector(gpu, gguf, &name(part), config.head_dim)).transpose()
            };
            layers.push(Layer {
                attn_norm: vector(gpu, gguf, &name("attn_norm"), e)?,
                q: matrix(gpu, gguf, &name("attn_q"), e, q)?,
                k: matrix(gpu, gguf, &name("attn_k"), e, kv)?,
                v: matrix(gpu, gguf, &name("attn_v"), e, kv)?,
                o: matrix(gpu, gguf, &name("attn_output"), q, e)?,
                q_norm: head_norm("attn_q_norm")?,
                k_norm: head_norm("attn_k_norm")?,
                ffn_norm: vector(gpu, gguf, &name("ffn_norm"), e)?,
                gate: matrix(gpu, gguf, &name("ffn_gate"), e, f)?,
                up: matrix(gpu, gguf, &name("ffn_up"), e, f)?,
                down: matrix(gpu, gguf, &name("ffn_down"), f, e)?,
            });
        }
        let output = match gguf.tensor("output.weight") {
            Some(_) => Some(matrix(gpu, gguf, "output.weight", e, config.vocab)?),
            None => None,
        };
        Ok(Self {
            token_embd: matrix(gpu, gguf, "token_embd.weight", e, config.vocab)?,
            layers,
            output_norm: vector(gpu, gguf, "output_norm.weight", e)?,
            output,
        })
    }
}
