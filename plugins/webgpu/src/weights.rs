//! A model's weights on the device, uploaded by walking the model layer's tensor table
//! ([`Config::layer_tensors`]): matrices (and stacks of experts' matrices) keep their
//! GGUF encoding, vectors (norms and
//! biases) are expanded to f32.
//!
//! Q, K and V, and the gate and up projections, are uploaded stacked where they share a
//! type and width, so one product computes each group.
//!
//! A tensor type the kernels cannot read is refused here, at load, with an
//! `Unsupported` error naming it, so the router falls back before memory is spent.

use hearth_model::roles::gguf_layer_name;
use hearth_model::{Config, Global, LayerTensors, Role, Shape};
use hearth_sdk::helpers::{dequantize, Gguf, TensorInfo};
use hearth_sdk::PluginError;

use crate::device::{Gpu, GpuBuffer};
use crate::kernels::{Weight, SUPPORTED_TYPES};
use crate::quantized::part_limit;

/// One transformer block's weights by role.
#[derive(Default)]
pub struct Layer {
    pub matrices: LayerTensors<Weight>,
    pub vectors: LayerTensors<GpuBuffer>,
    /// Q, K and V stacked in one weight, where they share a type and width and fit one
    /// buffer (`matrices` then holds views of its rows).
    pub qkv: Option<Weight>,
    /// The gate projection stacked on the up projection, likewise.
    pub gate_up: Option<Weight>,
}

impl Layer {
    pub fn weight(&self, role: Role) -> &Weight {
        self.matrices.required(role)
    }

    pub fn vector(&self, role: Role) -> &GpuBuffer {
        self.vectors.required(role)
    }
}

/// All weights of a model.
pub struct Weights {
    pub token_embd: Weight,
    pub layers: Vec<Layer>,
    pub output_norm: GpuBuffer,
    /// `None` when the output projection is tied to the embedding table.
    pub output: Option<Weight>,
    /// Gemma 3n's tensors outside the blocks.
    pub altup: Option<AltUpWeights>,
}

/// Gemma 3n's tensors outside the blocks ([`hearth_model::altup`]).
pub struct AltUpWeights {
    /// `n_layer · per_layer_dim` values per token id, read by rows.
    pub per_layer_token_embd: Weight,
    pub per_layer_model_proj: Weight,
    pub per_layer_proj_norm: GpuBuffer,
    /// One `n_embd × n_embd` matrix per stream after the first, into it and back.
    pub altup_proj: Vec<Weight>,
    pub altup_unembd_proj: Vec<Weight>,
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
    Ok(())
}

fn tensor<'a>(gguf: &'a Gguf, name: &str) -> Result<&'a TensorInfo, PluginError> {
    gguf.tensor(name).ok_or_else(|| {
        PluginError::model_file(format!("{}: no tensor `{name}`", gguf.path().display()))
    })
}

/// Upload a matrix, checking it maps `inputs` to `outputs`.
fn matrix(
    gpu: &Gpu,
    gguf: &Gguf,
    name: &str,
    inputs: u32,
    outputs: u32,
) -> Result<Weight, PluginError> {
    let info = tensor(gguf, name)?;
    if info.dims != [u64::from(inputs), u64::from(outputs)] {
        return Err(PluginError::model_file(format!(
            "tensor `{name}` has shape {:?}, expected [{inputs}, {outputs}]",
            info.dims
        )));
    }
    Weight::upload(gpu, name, info.ty, info.dims[0], info.dims[1], gguf.tensor_data(info))
}

/// Upload `count` stacked matrices (a 3-D expert tensor), checking their shape.
fn experts(
    gpu: &Gpu,
    gguf: &Gguf,
    name: &str,
    [inputs, outputs, count]: [u32; 3],
) -> Result<Weight, PluginError> {
    let info = tensor(gguf, name)?;
    let shape = [inputs, outputs, count].map(u64::from);
    if info.dims != shape {
        return Err(PluginError::model_file(format!(
            "tensor `{name}` has shape {:?}, expected {shape:?}",
            info.dims
        )));
    }
    Weight::upload_stacked(gpu, name, info.ty, shape, gguf.tensor_data(info))
}

/// Upload each of the `count` square `n × n` matrices stacked in a 3-D tensor as a
/// weight of its own.
fn square_matrices(
    gpu: &Gpu,
    gguf: &Gguf,
    name: &str,
    n: u32,
    count: u32,
) -> Result<Vec<Weight>, PluginError> {
    let info = tensor(gguf, name)?;
    let shape = [n, n, count].map(u64::from);
    if info.dims != shape {
        return Err(PluginError::model_file(format!(
            "tensor `{name}` has shape {:?}, expected {shape:?}",
            info.dims
        )));
    }
    let (block, block_bytes) = info.ty.block();
    let matrix_bytes = (u64::from(n) * u64::from(n) / block * block_bytes) as usize;
    gguf.tensor_data(info)
        .chunks(matrix_bytes)
        .map(|bytes| Weight::upload(gpu, name, info.ty, info.dims[0], info.dims[1], bytes))
        .collect()
}

/// Upload the matrices of `roles` of layer `index` as one weight (see
/// [`Weight::upload_stack`]) and insert views of it into `layer` by role; `None`, with
/// nothing uploaded, where a role is not a plain matrix of the layer or the roles differ
/// in type or width or do not fit one buffer together.
fn stack(
    gpu: &Gpu,
    gguf: &Gguf,
    config: &Config,
    layer: &mut Layer,
    index: u32,
    roles: &[Role],
) -> Result<Option<Weight>, PluginError> {
    let mut matrices = Vec::with_capacity(roles.len());
    for &role in roles {
        let shape = config.layer_tensors().find(|&(r, _)| r == role).map(|(_, shape)| shape);
        let Some(Shape::Matrix { inputs, outputs }) = shape else { return Ok(None) };
        let name = gguf_layer_name(index, role);
        let info = tensor(gguf, &name)?;
        if info.dims != [u64::from(inputs), u64::from(outputs)] {
            return Err(PluginError::model_file(format!(
                "tensor `{name}` has shape {:?}, expected [{inputs}, {outputs}]",
                info.dims
            )));
        }
        matrices.push(info);
    }
    let first = matrices[0];
    if matrices.iter().any(|info| info.ty != first.ty || info.dims[0] != first.dims[0]) {
        return Ok(None);
    }
    let rows: Vec<(u64, &[u8])> =
        matrices.iter().map(|info| (info.dims[1], gguf.tensor_data(info))).collect();
    let name = format!(
        "blk.{index}.{}",
        roles.iter().map(|r| r.gguf_name()).collect::<Vec<_>>().join("+")
    );
    let stacked =
        Weight::upload_stack(gpu, &name, first.ty, first.dims[0], &rows, part_limit(gpu))?;
    Ok(stacked.map(|(whole, views)| {
        roles.iter().zip(views).for_each(|(&role, view)| layer.matrices.insert(role, view));
        whole
    }))
}

/// Upload a vector as f32 plus `offset` (vectors are tiny; expanding them costs nothing).
fn vector(
    gpu: &Gpu,
    gguf: &Gguf,
    name: &str,
    len: u32,
    offset: f32,
) -> Result<GpuBuffer, PluginError> {
    let info = tensor(gguf, name)?;
    if info.elements() != u64::from(len) {
        return Err(PluginError::model_file(format!(
            "tensor `{name}` has {} elements, expected {len}",
            info.elements()
        )));
    }
    let mut values = vec![0.0f32; len as usize];
    dequantize(info.ty, gguf.tensor_data(info), &mut values).ok_or_else(|| {
        PluginError::unsupported(format!("vector tensor `{name}` has type {}", info.ty))
    })?;
    values.iter_mut().for_each(|value| *value += offset);
    Ok(gpu.upload(name, bytemuck::cast_slice(&values)))
}

impl Weights {
    pub fn load(gpu: &Gpu, gguf: &Gguf, config: &Config) -> Result<Self, PluginError> {
        let e = config.n_embd;
        let mut layers = Vec::with_capacity(config.n_layer as usize);
        for index in 0..config.n_layer {
            let mut layer = Layer::default();
            layer.qkv = stack(gpu, gguf, config, &mut layer, index, &[Role::Q, Role::K, Role::V])?;
            layer.gate_up = stack(gpu, gguf, config, &mut layer, index, &[Role::Gate, Role::Up])?;
            for (role, shape) in config.layer_tensors() {
                let name = gguf_layer_name(index, role);
                match shape {
                    // Uploaded in a stack above.
                    Shape::Matrix { .. } if layer.matrices.get(role).is_some() => {}
                    // AltUp's coefficient matrices are `streams` wide: the AltUp kernels
                    // read them whole, in f32.
                    Shape::Matrix { inputs, outputs }
                        if matches!(role, Role::AltupPredict | Role::AltupCorrect) =>
                    {
                        let values = vector(gpu, gguf, &name, inputs * outputs, 0.0)?;
                        layer.vectors.insert(role, values);
                    }
                    Shape::Matrix { inputs, outputs } => {
                        layer.matrices.insert(role, matrix(gpu, gguf, &name, inputs, outputs)?);
                    }
                    Shape::Experts { inputs, outputs, count } => {
                        let weight = experts(gpu, gguf, &name, [inputs, outputs, count])?;
                        layer.matrices.insert(role, weight);
                    }
                    Shape::Vector(len) => {
                        let offset = if role.is_norm() { config.norm_offset } else { 0.0 };
                        layer.vectors.insert(role, vector(gpu, gguf, &name, len, offset)?);
                    }
                }
            }
            layers.push(layer);
        }
        let output = match gguf.tensor(Global::Output.gguf_name()) {
            Some(_) => Some(matrix(gpu, gguf, Global::Output.gguf_name(), e, config.vocab)?),
            None => None,
        };
        let altup = match &config.altup {
            Some(altup) => {
                let per_layer = config.n_layer * altup.per_layer_dim;
                let global = |global: Global, inputs, outputs| {
                    matrix(gpu, gguf, global.gguf_name(), inputs, outputs)
                };
                let stacked = |global: Global| {
                    square_matrices(gpu, gguf, global.gguf_name(), e, altup.streams - 1)
                };
                Some(AltUpWeights {
                    per_layer_token_embd: global(
                        Global::PerLayerTokenEmbd,
                        per_layer,
                        config.vocab,
                    )?,
                    per_layer_model_proj: global(Global::PerLayerModelProj, e, per_layer)?,
                    per_layer_proj_norm: vector(
                        gpu,
                        gguf,
                        Global::PerLayerProjNorm.gguf_name(),
                        altup.per_layer_dim,
                        config.norm_offset,
                    )?,
                    altup_proj: stacked(Global::AltupProj)?,
                    altup_unembd_proj: stacked(Global::AltupUnembdProj)?,
                })
            }
            None => None,
        };
        Ok(Self {
            token_embd: matrix(gpu, gguf, Global::TokenEmbd.gguf_name(), e, config.vocab)?,
            layers,
            output_norm: vector(gpu, gguf, Global::OutputNorm.gguf_name(), e, config.norm_offset)?,
            output,
            altup,
        })
    }
}
