//! A llama-family model's shape from GGUF metadata, and its weights as MLX arrays,
//! from a GGUF file or (through [`crate::mlx_format`]) an MLX-format folder.
//!
//! What MLX or the forward pass cannot run is refused before MLX reads a byte, with an
//! `Unsupported` error naming the reason (tensor type, architecture, rope scaling), so
//! the router falls back to another backend. Every tensor's shape is checked against
//! the config as the model is assembled, so a malformed file fails at load, naming the
//! tensor, rather than inside a matmul at the first request.

use std::collections::HashMap;

use hearth_sdk::helpers::{GgmlType, Gguf};
use hearth_sdk::PluginError;

use crate::ffi::{self, Array};
use crate::gguf_tensors;

/// Tensor types the backend loads: those `mx::load_gguf` decodes, and the rest through
/// [`crate::gguf_tensors`] (MLX affine-quantized weights of 4, 5 or 8 bits in groups of
/// 32 where the format maps exactly, f32 otherwise).
pub const SUPPORTED_TYPES: [GgmlType; 11] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Bf16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
];

/// Refuse a file holding any tensor type MLX cannot load, naming the types found.
pub fn check_types(gguf: &Gguf) -> Result<(), PluginError> {
    let mut unsupported: Vec<(GgmlType, &str)> = gguf
        .tensors()
        .iter()
        .filter(|t| !SUPPORTED_TYPES.contains(&t.ty))
        .map(|t| (t.ty, t.name.as_str()))
        .collect();
    if unsupported.is_empty() {
        return Ok(());
    }
    unsupported.sort_by_key(|(ty, _)| ty.name());
    let mut types: Vec<&str> = unsupported.iter().map(|(ty, _)| ty.name()).collect();
    types.dedup();
    let supported: Vec<&str> = SUPPORTED_TYPES.iter().map(|ty| ty.name()).collect();
    Err(PluginError::unsupported(format!(
        "tensor type {} (e.g. `{}`): the MLX backend loads GGUF weights of types {}",
        types.join(", "),
        unsupported[0].1,
        supported.join(", ")
    )))
}

/// The hyper-parameters the forward pass needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub arch: String,
    pub n_embd: i32,
    pub n_layer: i32,
    pub heads: i32,
    pub kv_heads: i32,
    pub head_dim: i32,
    pub n_rot: i32,
    pub eps: f32,
    pub freq_base: f32,
    /// Feed-forward width and vocabulary size, which the tensors' shapes must match.
    pub ffn: i32,
    pub vocab: i32,
    /// Rotate adjacent pairs (llama.cpp's layout for Llama GGUFs, whose Q and K rows
    /// the converter permuted) rather than the two halves of each head (Qwen, and every
    /// Hugging Face layout).
    pub traditional_rope: bool,
    /// Per-head RMSNorm of Q and K before RoPE (Qwen3).
    pub qk_norm: bool,
    pub context_length: u32,
}

fn meta_error(error: impl std::fmt::Display) -> PluginError {
    PluginError::model_file(error.to_string())
}

impl Config {
    pub fn from_gguf(gguf: &Gguf) -> Result<Self, PluginError> {
        let arch = gguf.str("general.architecture").map_err(meta_error)?.to_string();
        let (traditional_rope, qk_norm) = match arch.as_str() {
            "llama" => (true, false),
            "qwen3" => (false, true),
            other => {
                return Err(PluginError::unsupported(format!(
                    "architecture `{other}` (the MLX backend runs llama and qwen3)"
                )))
            }
        };
        let key = |name: &str| format!("{arch}.{name}");
        let int = |name: &str| -> Result<i32, PluginError> {
            let value = gguf.u64(&key(name)).map_err(meta_error)?;
            i32::try_from(value).ok().filter(|&v| v > 0).ok_or_else(|| {
                PluginError::model_file(format!("`{}` = {value} is out of range", key(name)))
            })
        };
        let optional = |name: &str, default: i32| {
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
            return Err(PluginError::model_file(format!(
                "inconsistent attention shape: {heads} heads, {kv_heads} KV heads, rope over {n_rot} of {head_dim}"
            )));
        }
        Ok(Self {
            n_embd,
            n_layer: int("block_count")?,
            heads,
            kv_heads,
            head_dim,
            n_rot,
            eps: gguf.f64(&key("attention.layer_norm_rms_epsilon")).map_err(meta_error)? as f32,
            freq_base: gguf.f64(&key("rope.freq_base")).unwrap_or(10_000.0) as f32,
            ffn: int("feed_forward_length")?,
            vocab: gguf
                .tensor("token_embd.weight")
                .and_then(|t| i32::try_from(t.rows()).ok())
                .ok_or_else(|| PluginError::model_file("tensor `token_embd.weight` is missing"))?,
            traditional_rope,
            qk_norm,
            context_length: optional("context_length", 2048)? as u32,
            arch,
        })
    }
}

/// A weight matrix `[out, in]`, applied as `x @ Wᵀ`.
pub enum Linear {
    /// Float weights, kept in f32 (CPU matmuls are fastest and exact in f32).
    Dense(Array),
    /// MLX affine quantization: `W = scales * q + biases` per group of `group_size`.
    Quantized { w: Array, scales: Array, biases: Array, group_size: i32, bits: i32 },
}

impl Linear {
    pub fn apply(&self, x: &Array) -> Result<Array, PluginError> {
        match self {
            Linear::Dense(w) => x.matmul(&w.transpose(&[1, 0])?),
            Linear::Quantized { w, scales, biases, group_size, bits } => {
                x.quantized_matmul(w, scales, biases, *group_size, *bits)
            }
        }
    }

    /// The rows at `ids` as f32 (an embedding lookup), dequantizing only those rows.
    pub fn rows(&self, ids: &Array) -> Result<Array, PluginError> {
        match self {
            Linear::Dense(w) => w.take(ids, 0),
            Linear::Quantized { w, scales, biases, group_size, bits } => w
                .take(ids, 0)?
                .dequantize(&scales.take(ids, 0)?, &biases.take(ids, 0)?, *group_size, *bits)?
                .as_f32(),
        }
    }

    /// `(in, out)` features.
    pub fn in_out(&self) -> (i32, i32) {
        match self {
            Linear::Dense(w) => {
                let shape = w.shape();
                (shape[1], shape[0])
            }
            Linear::Quantized { w, bits, .. } => {
                let shape = w.shape();
                (shape[1] * 32 / bits, shape[0])
            }
        }
    }

    fn nbytes(&self) -> u64 {
        match self {
            Linear::Dense(w) => w.nbytes(),
            Linear::Quantized { w, scales, biases, .. } => {
                w.nbytes() + scales.nbytes() + biases.nbytes()
            }
        }
    }
}

/// One transformer block's weights.
pub struct Layer {
    pub attn_norm: Array,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub q_norm: Option<Array>,
    pub k_norm: Option<Array>,
    pub ffn_norm: Array,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

/// All weights of a model.
pub struct Weights {
    pub token_embd: Linear,
    pub layers: Vec<Layer>,
    pub output_norm: Array,
    /// `None` when the output projection is tied to the embedding table.
    pub output: Option<Linear>,
}

/// The arrays of a loaded model, taken out by name as the model is assembled. The
/// assembly asks by GGUF base name (`blk.3.attn_q`); `rename` gives the file's own.
pub struct Tensors {
    arrays: HashMap<String, Array>,
    /// `(group_size, bits)` of each quantized weight, by the file's base name.
    quantized: HashMap<String, (i32, i32)>,
    rename: fn(&str) -> String,
}

/// Refuse `array` unless its shape is `expected`, naming the tensor.
fn check_shape(name: &str, array: &Array, expected: &[i32]) -> Result<(), PluginError> {
    let shape = array.shape();
    if shape != expected {
        return Err(PluginError::model_file(format!(
            "tensor `{name}` has shape {shape:?}; the config needs {expected:?}"
        )));
    }
    Ok(())
}

impl Tensors {
    pub fn new(
        arrays: HashMap<String, Array>,
        quantized: HashMap<String, (i32, i32)>,
        rename: fn(&str) -> String,
    ) -> Self {
        Self { arrays, quantized, rename }
    }

    /// Every tensor of `gguf`, through `mx::load_gguf` when it decodes every type in the
    /// file (Q4_0, Q4_1 and Q8_0 weights arrive as MLX affine-quantized ones in groups of
    /// 32), through [`gguf_tensors::load`] otherwise.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self, PluginError> {
        if !gguf.tensors().iter().all(|t| gguf_tensors::MLX_GGUF_TYPES.contains(&t.ty)) {
            let (arrays, quantized) = gguf_tensors::load(gguf)?;
            return Ok(Self::new(arrays, quantized, str::to_string));
        }
        let path = gguf
            .path()
            .to_str()
            .ok_or_else(|| PluginError::model_file("the model path is not UTF-8"))?;
        let quantized = gguf
            .tensors()
            .iter()
            .filter_map(|t| {
                let bits = match t.ty {
                    GgmlType::Q4_0 | GgmlType::Q4_1 => 4,
                    GgmlType::Q8_0 => 8,
                    _ => return None,
                };
                Some((t.name.strip_suffix(".weight")?.to_string(), (32, bits)))
            })
            .collect();
        Ok(Self::new(ffi::load_gguf(path)?.into_iter().collect(), quantized, str::to_string))
    }

    fn take(&mut self, name: &str) -> Result<Array, PluginError> {
        self.arrays
            .remove(name)
            .ok_or_else(|| PluginError::model_file(format!("tensor `{name}` is missing")))
    }

    fn has(&self, name: &str) -> bool {
        self.arrays.contains_key(&format!("{}.weight", (self.rename)(name)))
    }

    /// A 1-D norm weight of `len`, in f32.
    fn vector(&mut self, name: &str, len: i32) -> Result<Array, PluginError> {
        let name = format!("{}.weight", (self.rename)(name));
        let vector = self.take(&name)?;
        check_shape(&name, &vector, &[len])?;
        vector.as_f32()
    }

    /// The projection `name` from `inputs` to `outputs` features.
    fn linear(&mut self, name: &str, inputs: i32, outputs: i32) -> Result<Linear, PluginError> {
        let base = (self.rename)(name);
        let weight = format!("{base}.weight");
        let w = self.take(&weight)?;
        let Some(&(group_size, bits)) = self.quantized.get(&base) else {
            check_shape(&weight, &w, &[outputs, inputs])?;
            return Ok(Linear::Dense(w.as_f32()?));
        };
        check_shape(&weight, &w, &[outputs, inputs * bits / 32])?;
        // Scales and biases arrive as f16; f32 keeps the CPU kernels on their exact path.
        let mut per_group = |part: &str| -> Result<Array, PluginError> {
            let name = format!("{base}.{part}");
            let array = self.take(&name)?;
            check_shape(&name, &array, &[outputs, inputs / group_size])?;
            array.as_f32()
        };
        Ok(Linear::Quantized {
            w,
            scales: per_group("scales")?,
            biases: per_group("biases")?,
            group_size,
            bits,
        })
    }
}

impl Weights {
    /// Assemble the model from `tensors`, checking every shape against `config`.
    pub fn assemble(mut tensors: Tensors, config: &Config) -> Result<Self, PluginError> {
        let c = config;
        let (q_width, kv_width) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let layers = (0..c.n_layer)
            .map(|i| {
                let name = |part: &str| format!("blk.{i}.{part}");
                let t = &mut tensors;
                Ok(Layer {
                    attn_norm: t.vector(&name("attn_norm"), c.n_embd)?,
                    q: t.linear(&name("attn_q"), c.n_embd, q_width)?,
                    k: t.linear(&name("attn_k"), c.n_embd, kv_width)?,
                    v: t.linear(&name("attn_v"), c.n_embd, kv_width)?,
                    o: t.linear(&name("attn_output"), q_width, c.n_embd)?,
                    q_norm: c
                        .qk_norm
                        .then(|| t.vector(&name("attn_q_norm"), c.head_dim))
                        .transpose()?,
                    k_norm: c
                        .qk_norm
                        .then(|| t.vector(&name("attn_k_norm"), c.head_dim))
                        .transpose()?,
                    ffn_norm: t.vector(&name("ffn_norm"), c.n_embd)?,
                    gate: t.linear(&name("ffn_gate"), c.n_embd, c.ffn)?,
                    up: t.linear(&name("ffn_up"), c.n_embd, c.ffn)?,
                    down: t.linear(&name("ffn_down"), c.ffn, c.n_embd)?,
                })
            })
            .collect::<Result<Vec<_>, PluginError>>()?;
        let output = if tensors.has("output") {
            Some(tensors.linear("output", c.n_embd, c.vocab)?)
        } else {
            None
        };
        let weights = Self {
            token_embd: tensors.linear("token_embd", c.n_embd, c.vocab)?,
            layers,
            output_norm: tensors.vector("output_norm", c.n_embd)?,
            output,
        };
        weights.eval()?;
        Ok(weights)
    }

    pub fn output(&self) -> &Linear {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }

    /// A projection by its GGUF base name (`blk.3.attn_q`, `output`), as adapters name them.
    pub fn linear(&self, name: &str) -> Option<&Linear> {
        if name == "output" {
            return Some(self.output());
        }
        let (index, part) = name.strip_prefix("blk.")?.split_once('.')?;
        let layer = self.layers.get(index.parse::<usize>().ok()?)?;
        Some(match part {
            "attn_q" => &layer.q,
            "attn_k" => &layer.k,
            "attn_v" => &layer.v,
            "attn_output" => &layer.o,
            "ffn_gate" => &layer.gate,
            "ffn_up" => &layer.up,
            "ffn_down" => &layer.down,
            _ => return None,
        })
    }

    /// Run the f32 conversions now, on the loading thread, and drop the f16 originals.
    fn eval(&self) -> Result<(), PluginError> {
        let linears =
            self.layers.iter().flat_map(|l| [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down]);
        for linear in linears.chain([&self.token_embd]).chain(self.output.as_ref()) {
            match linear {
                Linear::Dense(w) => w.eval()?,
                Linear::Quantized { scales, biases, .. } => {
                    scales.eval()?;
                    biases.eval()?;
                }
            }
        }
        let norms = self.layers.iter().flat_map(|l| {
            [Some(&l.attn_norm), Some(&l.ffn_norm), l.q_norm.as_ref(), l.k_norm.as_ref()]
        });
        norms.flatten().chain([&self.output_norm]).try_for_each(Array::eval)
    }

    /// Bytes the weights hold.
    pub fn nbytes(&self) -> u64 {
        let linears: u64 = self
            .layers
            .iter()
            .flat_map(|l| [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down])
            .chain([&self.token_embd])
            .chain(self.output.as_ref())
            .map(Linear::nbytes)
            .sum();
        let norms: u64 = self
            .layers
            .iter()
            .flat_map(|l| {
                [Some(&l.attn_norm), Some(&l.ffn_norm), l.q_norm.as_ref(), l.k_norm.as_ref()]
            })
            .flatten()
            .map(Array::nbytes)
            .sum();
        linears + norms + self.output_norm.nbytes()
    }
}
