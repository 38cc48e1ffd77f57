//! A model's weights as MLX arrays, from a GGUF file or (through
//! [`crate::mlx_format`]) an MLX-format folder, assembled by walking the model layer's
//! tensor table ([`Config::layer_tensors`]).
//!
//! What MLX cannot load is refused before MLX reads a byte, with an `Unsupported` error
//! naming the tensor type, so the router falls back to another backend. Every tensor's shape is checked against
//! the config as the model is assembled, so a malformed file fails at load, naming the
//! tensor, rather than inside a matmul at the first request.

use std::collections::HashMap;

use hearth_model::roles::{gguf_layer_name, gguf_to_hf, hf_expert_name};
use hearth_model::{Architecture, Config, Global, LayerTensors, Role, Shape};
use hearth_sdk::helpers::{GgmlType, Gguf};
use hearth_sdk::PluginError;

use crate::ffi::{self, Array};
use crate::gguf_tensors;

/// Tensor types the backend loads: those `mx::load_gguf` decodes, and the rest through
/// [`crate::gguf_tensors`] (MLX affine-quantized weights of 4, 5 or 8 bits in groups of
/// 32 where the format maps exactly, f32 otherwise).
pub const SUPPORTED_TYPES: [GgmlType; 11] = hearth_model::arch::TENSOR_TYPES;

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

/// A weight matrix `[out, in]`, applied as `x @ Wᵀ`, or a stack of them
/// `[experts, out, in]` (a mixture of experts), applied one expert at a time through
/// [`Linear::expert`].
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

    /// Matrix `index` of a stack, as a matrix of its own.
    pub fn expert(&self, index: u32) -> Result<Linear, PluginError> {
        let ids = Array::from_i32(&[index as i32], &[1])?;
        let pick = |array: &Array| -> Result<Array, PluginError> {
            let shape = array.shape();
            array.take(&ids, 0)?.reshape(&shape[1..])
        };
        Ok(match self {
            Linear::Dense(w) => Linear::Dense(pick(w)?),
            Linear::Quantized { w, scales, biases, group_size, bits } => Linear::Quantized {
                w: pick(w)?,
                scales: pick(scales)?,
                biases: pick(biases)?,
                group_size: *group_size,
                bits: *bits,
            },
        })
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

/// One transformer block's weights by role.
#[derive(Default)]
pub struct Layer {
    pub matrices: LayerTensors<Linear>,
    pub vectors: LayerTensors<Array>,
}

/// All weights of a model.
pub struct Weights {
    pub token_embd: Linear,
    pub layers: Vec<Layer>,
    pub output_norm: Array,
    /// `None` when the output projection is tied to the embedding table.
    pub output: Option<Linear>,
    /// Gemma 3n's tensors outside the blocks.
    pub altup: Option<AltUpWeights>,
}

/// Gemma 3n's tensors outside the blocks ([`hearth_model::altup`]).
pub struct AltUpWeights {
    /// `[vocab, n_layer · per_layer_dim]`, read by rows.
    pub per_layer_token_embd: Linear,
    pub per_layer_model_proj: Linear,
    pub per_layer_proj_norm: Array,
    /// Stacks of `streams − 1` matrices `[n_embd, n_embd]`, one per extra stream.
    pub altup_proj: Linear,
    pub altup_unembd_proj: Linear,
}

/// The arrays of a loaded model, taken out by name as the model is assembled. The
/// assembly asks by GGUF name (`blk.3.attn_q.weight`); a Hugging Face checkpoint's
/// names are the model layer's translation of those.
pub struct Tensors {
    arrays: HashMap<String, Array>,
    /// `(group_size, bits)` of each quantized weight, by the file's base name.
    quantized: HashMap<String, (i32, i32)>,
    /// The architecture whose Hugging Face names the file uses; `None` for GGUF names.
    hf_names: Option<&'static Architecture>,
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
        hf_names: Option<&'static Architecture>,
    ) -> Self {
        Self { arrays, quantized, hf_names }
    }

    /// The file's name for the tensor GGUF calls `name`.
    fn file_name(&self, name: &str) -> String {
        match self.hf_names {
            Some(arch) => gguf_to_hf(name, arch),
            None => name.to_string(),
        }
    }

    /// Every tensor of `gguf`, through `mx::load_gguf` when it decodes every type in the
    /// file (Q4_0, Q4_1 and Q8_0 weights arrive as MLX affine-quantized ones in groups of
    /// 32), through [`gguf_tensors::load`] otherwise.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self, PluginError> {
        if !gguf.tensors().iter().all(|t| gguf_tensors::MLX_GGUF_TYPES.contains(&t.ty)) {
            let (arrays, quantized) = gguf_tensors::load(gguf)?;
            return Ok(Self::new(arrays, quantized, None));
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
        Ok(Self::new(ffi::load_gguf(path)?.into_iter().collect(), quantized, None))
    }

    fn take(&mut self, name: &str) -> Result<Array, PluginError> {
        self.arrays
            .remove(name)
            .ok_or_else(|| PluginError::model_file(format!("tensor `{name}` is missing")))
    }

    fn has(&self, name: &str) -> bool {
        self.arrays.contains_key(&self.file_name(name))
    }

    /// A 1-D weight of `len` (a norm or a bias) in f32, plus `offset`.
    fn vector(&mut self, name: &str, len: u32, offset: f32) -> Result<Array, PluginError> {
        let name = self.file_name(name);
        let vector = self.take(&name)?;
        check_shape(&name, &vector, &[len as i32])?;
        let vector = vector.as_f32()?;
        if offset == 0.0 {
            Ok(vector)
        } else {
            vector.add(&Array::from_f32(&[offset], &[1])?)
        }
    }

    /// The projection `name` (`….weight`) from `inputs` to `outputs` features.
    fn linear(&mut self, name: &str, inputs: u32, outputs: u32) -> Result<Linear, PluginError> {
        self.linear_stack(&self.file_name(name), &[], inputs, outputs)
    }

    /// `count` stacked expert matrices from `inputs` to `outputs` features: the tensor
    /// GGUF calls `name` (or an MLX-format checkpoint its translation), or, in a
    /// Hugging Face checkpoint that stores each expert apart, those stacked.
    fn experts(
        &mut self,
        name: &str,
        role: Role,
        layer: u32,
        [inputs, outputs, count]: [u32; 3],
    ) -> Result<Linear, PluginError> {
        let stacked = self.file_name(name);
        if self.hf_names.is_some() && !self.arrays.contains_key(&stacked) {
            let names: Option<Vec<String>> =
                (0..count).map(|expert| hf_expert_name(layer, role, expert)).collect();
            for (part, suffix) in
                [("weight", ".weight"), ("scales", ".scales"), ("biases", ".biases")]
            {
                let parts: Vec<String> = names
                    .iter()
                    .flatten()
                    .map(|n| n.strip_suffix(".weight").unwrap_or(n).to_string() + suffix)
                    .collect();
                if parts.iter().all(|n| self.arrays.contains_key(n)) && !parts.is_empty() {
                    let mut arrays = Vec::with_capacity(parts.len());
                    for name in &parts {
                        let array = self.take(name)?;
                        let mut shape = vec![1];
                        shape.extend(array.shape());
                        arrays.push(array.reshape(&shape)?);
                    }
                    let mut whole = arrays.remove(0);
                    for array in &arrays {
                        whole = whole.concatenate(array, 0)?;
                    }
                    let base = stacked.strip_suffix(".weight").unwrap_or(&stacked);
                    self.arrays.insert(format!("{base}.{part}"), whole);
                    if let Some(&quantized) =
                        parts[0].strip_suffix(suffix).and_then(|first| self.quantized.get(first))
                    {
                        self.quantized.insert(base.to_string(), quantized);
                    }
                }
            }
        }
        self.linear_stack(&stacked, &[count as i32], inputs, outputs)
    }

    /// The file's tensor `weight` (`….weight`), of `stack` leading dimensions before
    /// the `[outputs, inputs]` matrix.
    fn linear_stack(
        &mut self,
        weight: &str,
        stack: &[i32],
        inputs: u32,
        outputs: u32,
    ) -> Result<Linear, PluginError> {
        let base = weight.strip_suffix(".weight").unwrap_or(weight).to_string();
        let (inputs, outputs) = (inputs as i32, outputs as i32);
        let shape = |columns: i32| [stack, &[outputs, columns]].concat();
        let w = self.take(weight)?;
        let Some(&(group_size, bits)) = self.quantized.get(&base) else {
            check_shape(weight, &w, &shape(inputs))?;
            return Ok(Linear::Dense(w.as_f32()?));
        };
        check_shape(weight, &w, &shape(inputs * bits / 32))?;
        // Scales and biases arrive as f16; f32 keeps the CPU kernels on their exact path.
        let mut per_group = |part: &str| -> Result<Array, PluginError> {
            let name = format!("{base}.{part}");
            let array = self.take(&name)?;
            check_shape(&name, &array, &shape(inputs / group_size))?;
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
        let mut layers = Vec::with_capacity(c.n_layer as usize);
        for index in 0..c.n_layer {
            let mut layer = Layer::default();
            for (role, shape) in c.layer_tensors() {
                let name = gguf_layer_name(index, role);
                match shape {
                    Shape::Matrix { inputs, outputs } => {
                        layer.matrices.insert(role, tensors.linear(&name, inputs, outputs)?);
                    }
                    Shape::Experts { inputs, outputs, count } => {
                        let stack =
                            tensors.experts(&name, role, index, [inputs, outputs, count])?;
                        layer.matrices.insert(role, stack);
                    }
                    Shape::Vector(len) => {
                        let offset = if role.is_norm() { c.norm_offset } else { 0.0 };
                        layer.vectors.insert(role, tensors.vector(&name, len, offset)?);
                    }
                }
            }
            layers.push(layer);
        }
        let output_name = Global::Output.gguf_name();
        let output = if tensors.has(output_name) {
            Some(tensors.linear(output_name, c.n_embd, c.vocab)?)
        } else {
            None
        };
        let altup = match &c.altup {
            Some(altup) => {
                let (e, per_layer) = (c.n_embd, altup.per_layer_dim * c.n_layer);
                let mut stack = |global: Global| {
                    let name = tensors.file_name(global.gguf_name());
                    tensors.linear_stack(&name, &[altup.streams as i32 - 1], e, e)
                };
                let (altup_proj, altup_unembd_proj) =
                    (stack(Global::AltupProj)?, stack(Global::AltupUnembdProj)?);
                Some(AltUpWeights {
                    per_layer_token_embd: tensors.linear(
                        Global::PerLayerTokenEmbd.gguf_name(),
                        per_layer,
                        c.vocab,
                    )?,
                    per_layer_model_proj: tensors.linear(
                        Global::PerLayerModelProj.gguf_name(),
                        e,
                        per_layer,
                    )?,
                    per_layer_proj_norm: tensors.vector(
                        Global::PerLayerProjNorm.gguf_name(),
                        altup.per_layer_dim,
                        c.norm_offset,
                    )?,
                    altup_proj,
                    altup_unembd_proj,
                })
            }
            None => None,
        };
        let weights = Self {
            token_embd: tensors.linear(Global::TokenEmbd.gguf_name(), c.n_embd, c.vocab)?,
            layers,
            output_norm: tensors.vector(Global::OutputNorm.gguf_name(), c.n_embd, c.norm_offset)?,
            output,
            altup,
        };
        weights.eval()?;
        Ok(weights)
    }

    pub fn output(&self) -> &Linear {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }

    fn linears(&self) -> impl Iterator<Item = &Linear> {
        let altup = self.altup.iter().flat_map(|altup| {
            [
                &altup.per_layer_token_embd,
                &altup.per_layer_model_proj,
                &altup.altup_proj,
                &altup.altup_unembd_proj,
            ]
        });
        self.layers
            .iter()
            .flat_map(|layer| layer.matrices.iter())
            .chain([&self.token_embd])
            .chain(self.output.as_ref())
            .chain(altup)
    }

    fn vectors(&self) -> impl Iterator<Item = &Array> {
        self.layers
            .iter()
            .flat_map(|layer| layer.vectors.iter())
            .chain([&self.output_norm])
            .chain(self.altup.iter().map(|altup| &altup.per_layer_proj_norm))
    }

    /// Run the f32 conversions now, on the loading thread, and drop the f16 originals.
    fn eval(&self) -> Result<(), PluginError> {
        for linear in self.linears() {
            match linear {
                Linear::Dense(w) => w.eval()?,
                Linear::Quantized { scales, biases, .. } => {
                    scales.eval()?;
                    biases.eval()?;
                }
            }
        }
        self.vectors().try_for_each(Array::eval)
    }

    /// Bytes the weights hold.
    pub fn nbytes(&self) -> u64 {
        self.linears().map(Linear::nbytes).sum::<u64>()
            + self.vectors().map(Array::nbytes).sum::<u64>()
    }
}
