//! The WGSL kernels and the host side of dispatching them: compiled pipelines, quantized
//! weights split to fit the device's binding limit, and a batch that records a whole
//! forward pass into one command buffer with one upload of all kernel parameters.

use std::collections::HashMap;

use hearth_model::Activation;
use hearth_sdk::helpers::GgmlType;
use hearth_sdk::PluginError;

use crate::device::{Gpu, GpuBuffer};

const QUANT: &str = include_str!("shaders/quant.wgsl");
const DECODERS: &str = include_str!("shaders/decode.wgsl");
const ROWS: &str = include_str!("shaders/rows.wgsl");

/// Weight types the kernels read in their stored form.
pub const SUPPORTED_TYPES: [GgmlType; 11] = hearth_model::arch::TENSOR_TYPES;

/// Bytes reserved per dispatch in the parameter buffer; a parameter block is at most
/// 64 bytes, the rest is the device's uniform offset alignment.
const PARAM_BYTES: u64 = 64;

/// The `decode` function of `ty`, cut from decode.wgsl (sections start with `//! TYPE`).
fn decoder(ty: GgmlType) -> &'static str {
    let marker = format!("//! {}\n", ty.name());
    let start = DECODERS
        .find(&marker)
        .map(|at| at + marker.len())
        .expect("every supported type has a decoder");
    let end = DECODERS[start..].find("//! ").map_or(DECODERS.len(), |at| start + at);
    &DECODERS[start..end]
}

fn pipeline(gpu: &Gpu, label: &str, source: &str, entry: &str) -> wgpu::ComputePipeline {
    let module = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: None,
        module: &module,
        entry_point: Some(entry),
        compilation_options: Default::default(),
        cache: None,
    })
}

/// Every pipeline the forward pass uses.
pub struct Kernels {
    matmul: HashMap<GgmlType, wgpu::ComputePipeline>,
    get_rows: HashMap<GgmlType, wgpu::ComputePipeline>,
    rmsnorm: wgpu::ComputePipeline,
    rope: wgpu::ComputePipeline,
    attention: wgpu::ComputePipeline,
    gated: wgpu::ComputePipeline,
    add_bias: wgpu::ComputePipeline,
    scale_rows: wgpu::ComputePipeline,
}

impl Kernels {
    pub fn new(gpu: &Gpu) -> Self {
        let mut matmul = HashMap::new();
        let mut get_rows = HashMap::new();
        for ty in SUPPORTED_TYPES {
            let source = format!("{QUANT}\n{}", decoder(ty));
            matmul.insert(ty, pipeline(gpu, &format!("matmul {ty}"), &source, "matmul"));
            get_rows.insert(ty, pipeline(gpu, &format!("get_rows {ty}"), &source, "get_rows"));
        }
        Self {
            matmul,
            get_rows,
            rmsnorm: pipeline(gpu, "rmsnorm", include_str!("shaders/norm.wgsl"), "rmsnorm"),
            rope: pipeline(gpu, "rope", include_str!("shaders/rope.wgsl"), "rope"),
            attention: pipeline(
                gpu,
                "attention",
                include_str!("shaders/attention.wgsl"),
                "attention",
            ),
            gated: pipeline(gpu, "gated", include_str!("shaders/gated.wgsl"), "gated"),
            add_bias: pipeline(gpu, "add_bias", ROWS, "add_bias"),
            scale_rows: pipeline(gpu, "scale_rows", ROWS, "scale_rows"),
        }
    }
}

/// One buffer range of a weight: whole rows, so every part is a matrix of its own.
pub struct Part {
    pub buffer: GpuBuffer,
    pub row0: u32,
    pub rows: u32,
}

/// A 2-D weight in its GGUF encoding, on the device.
pub struct Weight {
    pub ty: GgmlType,
    pub ncols: u32,
    pub nrows: u32,
    pub parts: Vec<Part>,
}

impl Weight {
    /// Upload `bytes` (rows of `ncols` elements of `ty`), split into parts no larger than
    /// the device's storage binding limit.
    pub fn upload(
        gpu: &Gpu,
        name: &str,
        ty: GgmlType,
        ncols: u64,
        nrows: u64,
        bytes: &[u8],
    ) -> Result<Self, PluginError> {
        let limit = gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size) - 8;
        Self::upload_in_parts(gpu, name, ty, [ncols, nrows], bytes, limit)
    }

    /// [`Weight::upload`] with parts of at most `part_limit` bytes (tests use a small
    /// limit to exercise splitting without a huge tensor).
    pub fn upload_in_parts(
        gpu: &Gpu,
        name: &str,
        ty: GgmlType,
        shape: [u64; 2],
        bytes: &[u8],
        part_limit: u64,
    ) -> Result<Self, PluginError> {
        let [ncols, nrows] = shape;
        if !SUPPORTED_TYPES.contains(&ty) {
            return Err(PluginError::unsupported(format!(
                "tensor `{name}` has type {ty}, which the WebGPU kernels do not read"
            )));
        }
        let (block, block_bytes) = ty.block();
        // The kernels expand 32 elements at a time, within a block of the type.
        let multiple = block.max(32);
        if ncols % multiple != 0 || ncols > u64::from(u32::MAX) || nrows > u64::from(u32::MAX) {
            return Err(PluginError::unsupported(format!(
                "tensor `{name}` ({ty}) has rows of {ncols} elements; the kernels need a multiple of {multiple}"
            )));
        }
        let row_bytes = ncols / block * block_bytes;
        let rows_per_part = (part_limit / row_bytes).max(1);
        let mut parts = Vec::new();
        let mut row0 = 0;
        while row0 < nrows {
            let rows = rows_per_part.min(nrows - row0);
            let start = (row0 * row_bytes) as usize;
            let chunk = bytes.get(start..start + (rows * row_bytes) as usize).ok_or_else(|| {
                PluginError::model_file(format!("tensor `{name}` is shorter than its shape"))
            })?;
            parts.push(Part {
                buffer: gpu.upload(name, chunk),
                row0: row0 as u32,
                rows: rows as u32,
            });
            row0 += rows;
        }
        Ok(Self { ty, ncols: ncols as u32, nrows: nrows as u32, parts })
    }
}

/// A matrix of f32 rows inside a buffer: row `t` starts at `offset + t * stride`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u32,
    pub stride: u32,
}

impl<'a> View<'a> {
    pub fn new(buffer: &'a wgpu::Buffer, offset: u32, stride: u32) -> Self {
        Self { buffer, offset, stride }
    }
}

struct Op<'a> {
    pipeline: &'a wgpu::ComputePipeline,
    bindings: Vec<(u32, &'a wgpu::Buffer)>,
    params: u64,
    groups: [u32; 3],
}

/// Dispatches recorded for one submission.
pub struct Batch<'a> {
    gpu: &'a Gpu,
    kernels: &'a Kernels,
    stride: u64,
    params: Vec<u8>,
    ops: Vec<Op<'a>>,
}

/// Work groups for `count` items when one dimension holds at most 65535.
fn split_groups(count: u32) -> [u32; 2] {
    [count.min(65535), count.div_ceil(65535)]
}

impl<'a> Batch<'a> {
    pub fn new(gpu: &'a Gpu, kernels: &'a Kernels) -> Self {
        let stride =
            PARAM_BYTES.next_multiple_of(u64::from(gpu.limits.min_uniform_buffer_offset_alignment));
        Self { gpu, kernels, stride, params: Vec::new(), ops: Vec::new() }
    }

    fn push(
        &mut self,
        pipeline: &'a wgpu::ComputePipeline,
        bindings: Vec<(u32, &'a wgpu::Buffer)>,
        words: &[u32],
        groups: [u32; 3],
    ) {
        let at = self.params.len() as u64;
        self.params.extend(words.iter().flat_map(|word| word.to_le_bytes()));
        self.params.resize((at + self.stride) as usize, 0);
        self.ops.push(Op { pipeline, bindings, params: at, groups });
    }

    /// `y[t] (+)= scale · W · x[t]` for `ntok` tokens.
    pub fn matmul(
        &mut self,
        w: &'a Weight,
        x: View<'a>,
        y: View<'a>,
        ntok: u32,
        accumulate: bool,
        scale: f32,
    ) {
        let pipeline = &self.kernels.matmul[&w.ty];
        for part in &w.parts {
            let [gx, gy] = split_groups(part.rows.div_ceil(64));
            let words = [
                part.rows,
                w.ncols,
                ntok,
                part.row0,
                x.offset,
                x.stride,
                y.offset,
                y.stride,
                u32::from(accumulate),
                scale.to_bits(),
            ];
            let bindings = vec![(1, &part.buffer.buffer), (2, x.buffer), (3, y.buffer)];
            self.push(pipeline, bindings, &words, [gx, gy, ntok.div_ceil(8)]);
        }
    }

    /// `y[t] = W[ids[t]]`: embedding rows for `ntok` token ids.
    pub fn get_rows(&mut self, w: &'a Weight, ids: &'a wgpu::Buffer, y: View<'a>, ntok: u32) {
        let pipeline = &self.kernels.get_rows[&w.ty];
        for part in &w.parts {
            let words = [part.rows, w.ncols, ntok, part.row0, 0, 0, y.offset, y.stride, 0, 0];
            let bindings = vec![(1, &part.buffer.buffer), (3, y.buffer), (4, ids)];
            self.push(pipeline, bindings, &words, [(w.ncols / 32).div_ceil(64), ntok, 1]);
        }
    }

    /// RMSNorm of `rows` contiguous rows of `n` elements, written to `y` or, with
    /// `accumulate`, added to it.
    #[allow(clippy::too_many_arguments)] // the kernel's parameters, one each
    pub fn rmsnorm(
        &mut self,
        x: View<'a>,
        w: &'a wgpu::Buffer,
        y: View<'a>,
        rows: u32,
        n: u32,
        eps: f32,
        accumulate: bool,
    ) {
        let [gx, gy] = split_groups(rows);
        let words = [rows, n, x.offset, y.offset, eps.to_bits(), u32::from(accumulate)];
        self.push(
            &self.kernels.rmsnorm,
            vec![(1, x.buffer), (2, w), (3, y.buffer)],
            &words,
            [gx, gy, 1],
        );
    }

    /// Rotary embedding in place; `x` holds `ntok` tokens of `heads` heads.
    #[allow(clippy::too_many_arguments)] // the kernel's parameters, one each
    pub fn rope(
        &mut self,
        x: View<'a>,
        ntok: u32,
        heads: u32,
        head_dim: u32,
        n_rot: u32,
        pos0: u32,
        neox: bool,
        freq_base: f32,
    ) {
        let words =
            [ntok, heads, head_dim, n_rot, pos0, x.offset, u32::from(neox), freq_base.to_bits()];
        self.push(
            &self.kernels.rope,
            vec![(1, x.buffer)],
            &words,
            [(heads * n_rot / 2).div_ceil(64), ntok, 1],
        );
    }

    /// Causal attention of `ntok` queries at positions `pos0..` over the cache, each
    /// seeing only its last `window` keys when there is one.
    #[allow(clippy::too_many_arguments)] // the kernel's parameters, one each
    pub fn attention(
        &mut self,
        q: &'a wgpu::Buffer,
        k: &'a wgpu::Buffer,
        v: &'a wgpu::Buffer,
        scores: &'a wgpu::Buffer,
        out: &'a wgpu::Buffer,
        shape: AttentionShape,
        ntok: u32,
        pos0: u32,
        window: Option<u32>,
    ) {
        let words = [
            ntok,
            shape.heads,
            shape.kv_heads,
            shape.head_dim,
            pos0,
            shape.ctx,
            shape.scale.to_bits(),
            window.unwrap_or(0),
        ];
        let bindings = vec![(1, q), (2, k), (3, v), (4, scores), (5, out)];
        self.push(&self.kernels.attention, bindings, &words, [shape.heads, ntok, 1]);
    }

    /// `g = act(g) * u` over `n` elements.
    pub fn gated(
        &mut self,
        g: &'a wgpu::Buffer,
        u: &'a wgpu::Buffer,
        n: u32,
        activation: Activation,
    ) {
        let groups = n.div_ceil(64);
        let words = [n, u32::from(activation == Activation::GeluTanh)];
        self.push(
            &self.kernels.gated,
            vec![(1, g), (2, u)],
            &words,
            [groups.min(65535), groups.div_ceil(65535), 1],
        );
    }

    /// `y[r] += bias` for `rows` rows of `bias`'s length `n`.
    pub fn add_bias(&mut self, y: View<'a>, bias: &'a wgpu::Buffer, rows: u32, n: u32) {
        let words = [rows, n, y.offset, y.stride, 0];
        let bindings = vec![(1, y.buffer), (2, bias)];
        self.push(&self.kernels.add_bias, bindings, &words, [n.div_ceil(64), rows, 1]);
    }

    /// `y[r] *= scale` for `rows` rows of `n` values.
    pub fn scale_rows(&mut self, y: View<'a>, rows: u32, n: u32, scale: f32) {
        let words = [rows, n, y.offset, y.stride, scale.to_bits()];
        self.push(&self.kernels.scale_rows, vec![(1, y.buffer)], &words, [n.div_ceil(64), rows, 1]);
    }

    /// Encode every recorded dispatch into one compute pass and submit it.
    pub fn submit(self) {
        if self.ops.is_empty() {
            return;
        }
        let device = &self.gpu.device;
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kernel parameters"),
            size: self.params.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.gpu.queue.write_buffer(&params, 0, &self.params);
        let bind_groups: Vec<wgpu::BindGroup> =
            self.ops
                .iter()
                .map(|op| {
                    let mut entries = vec![wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &params,
                            offset: op.params,
                            size: wgpu::BufferSize::new(PARAM_BYTES),
                        }),
                    }];
                    entries.extend(op.bindings.iter().map(|&(binding, buffer)| {
                        wgpu::BindGroupEntry { binding, resource: buffer.as_entire_binding() }
                    }));
                    device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: None,
                        layout: &op.pipeline.get_bind_group_layout(0),
                        entries: &entries,
                    })
                })
                .collect();
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for (op, bind_group) in self.ops.iter().zip(&bind_groups) {
                pass.set_pipeline(op.pipeline);
                pass.set_bind_group(0, bind_group, &[]);
                pass.dispatch_workgroups(op.groups[0], op.groups[1], op.groups[2]);
            }
        }
        // The parameter buffer is dropped here; wgpu keeps it alive until the GPU is done.
        self.gpu.queue.submit([encoder.finish()]);
    }
}

/// The attention geometry of a model with a cache of `ctx` positions.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub ctx: u32,
    /// Factor on `q·k`.
    pub scale: f32,
}
