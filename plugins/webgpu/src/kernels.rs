//! The WGSL kernels and the host side of dispatching them: compiled pipelines, quantized
//! weights split to fit the device's binding limit, and a batch that records a whole
//! forward pass into one command buffer with one upload of all kernel parameters.

use std::collections::HashMap;

use hearth_model::Activation;
use hearth_sdk::helpers::GgmlType;
use hearth_sdk::PluginError;

use crate::altup::AltUpKernels;
use crate::device::{Gpu, GpuBuffer};
use crate::plan::KernelPlan;

const QUANT: &str = include_str!("shaders/quant.wgsl");
const DECODERS: &str = include_str!("shaders/decode.wgsl");
pub(crate) const NORM: &str = include_str!("shaders/norm.wgsl");
pub(crate) const ROWS: &str = include_str!("shaders/rows.wgsl");
const MATMUL_ROWS: &str = include_str!("shaders/matmul_rows.wgsl");
const MATVEC_ROWS: &str = include_str!("shaders/matvec_rows.wgsl");
const MATVEC: &str = include_str!("shaders/matvec.wgsl");
const MATMUL_TILED: &str = include_str!("shaders/matmul_tiled.wgsl");
const MATMUL_MATRIX: &str = include_str!("shaders/matmul_matrix.wgsl");
/// What the cooperative-matrix kernel enables before anything else in its module.
const MATRIX_DIRECTIVES: &str = "enable f16;\nenable wgpu_cooperative_matrix;\n";
const REDUCE_SUBGROUP: &str = include_str!("shaders/reduce_subgroup.wgsl");
const REDUCE_SHARED: &str = include_str!("shaders/reduce_shared.wgsl");
const ATTENTION: &str = include_str!("shaders/attention.wgsl");
pub(crate) const ACTIVATION: &str = include_str!("shaders/activation.wgsl");
const ROUTE: &str = include_str!("shaders/route.wgsl");

/// On the GPU plan, products of up to this many tokens use the matrix–vector kernel
/// (a workgroup per few rows and token); more use the tiled kernel.
const MATVEC_TOKENS: u32 = 8;

/// On the software plan, only a single token's product takes the matrix–vector kernel:
/// it reads the weights once per token, where the row kernel reads them once for a
/// tile of eight.
const SOFTWARE_MATVEC_TOKENS: u32 = 1;

/// Weight types the kernels read in their stored form.
pub const SUPPORTED_TYPES: [GgmlType; 11] = hearth_model::arch::TENSOR_TYPES;

/// Dispatches per submission: a batch goes to the queue in pieces of this many, so the
/// GPU runs the first layers while the CPU encodes the rest. On an H100 a decode step
/// of a 1B model (some 200 dispatches) ran 8–16 % faster in pieces of 40 than whole.
const SUBMIT_DISPATCHES: usize = 40;

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

/// The checks wgpu compiles into the kernels: bounds checks on every buffer and array
/// access stay; the loop counter that naga adds to every loop (so a shader cannot spin
/// forever) and the guards on integer division go. The counter kept NVIDIA's compiler
/// from unrolling the kernels' fixed inner loops: without it the tiled prompt product
/// ran 4.4× faster on an H100 and the decode products were no slower (docs/BENCHMARKS.md,
/// 2026-12-05 evening). Every loop here is bounded by a parameter the host writes, and
/// no kernel divides by a value that can be zero.
fn runtime_checks() -> wgpu::ShaderRuntimeChecks {
    wgpu::ShaderRuntimeChecks {
        force_loop_bounding: false,
        int_div_checks: false,
        ..wgpu::ShaderRuntimeChecks::checked()
    }
}

pub(crate) fn pipeline(gpu: &Gpu, label: &str, source: &str, entry: &str) -> wgpu::ComputePipeline {
    let descriptor = wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    };
    // SAFETY: wgpu requires that the checks left out cannot be needed: bounds checks
    // stay on, and `runtime_checks` says why the loops end and no divisor is zero.
    let module = unsafe { gpu.device.create_shader_module_trusted(descriptor, runtime_checks()) };
    gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: None,
        module: &module,
        entry_point: Some(entry),
        compilation_options: Default::default(),
        cache: None,
    })
}

/// A matrix-product kernel for every weight type, and the rows and tokens one of its
/// workgroups covers.
struct Product {
    pipelines: HashMap<GgmlType, wgpu::ComputePipeline>,
    rows: u32,
    tokens: u32,
}

/// The value of `const NAME: u32 = Nu;` in a kernel's source: each product kernel says
/// there how many rows and tokens a workgroup covers, so the dispatch follows it.
fn shader_constant(source: &str, name: &str) -> u32 {
    let declaration = format!("const {name}: u32 = ");
    let start = source.find(&declaration).map(|at| at + declaration.len());
    start
        .and_then(|at| source[at..].split_once("u;"))
        .and_then(|(value, _)| value.parse().ok())
        .unwrap_or_else(|| panic!("a product kernel declares `{declaration}Nu;`"))
}

/// The source of a product kernel for weights of type `ty`: the `enable` directives it
/// needs, then the shared quantized-weight code, `ty`'s decoder and the kernel.
fn product_source(directives: &str, kernel: &str, ty: GgmlType) -> String {
    format!("{directives}{QUANT}\n{ACTIVATION}\n{}\n{kernel}", decoder(ty))
}

impl Product {
    /// `kernel`'s entry point `entry` compiled after each type's decoder.
    fn new(gpu: &Gpu, directives: &str, kernel: &str, entry: &str) -> Self {
        let (rows, tokens) = (shader_constant(kernel, "ROWS"), shader_constant(kernel, "TOKENS"));
        let pipelines = SUPPORTED_TYPES
            .into_iter()
            .map(|ty| {
                let source = product_source(directives, kernel, ty);
                (ty, pipeline(gpu, &format!("{entry} {ty}"), &source, entry))
            })
            .collect();
        Self { pipelines, rows, tokens }
    }
}

/// Every pipeline the forward pass uses.
pub struct Kernels {
    /// Products of a few tokens (decode steps) and of many (prompt chunks); `None`
    /// where one kernel serves both.
    few: Product,
    many: Option<Product>,
    /// The most tokens a product takes `few` for, where there is `many`.
    few_tokens: u32,
    get_rows: HashMap<GgmlType, wgpu::ComputePipeline>,
    rmsnorm: wgpu::ComputePipeline,
    rope: wgpu::ComputePipeline,
    attention_split: wgpu::ComputePipeline,
    attention_combine: wgpu::ComputePipeline,
    gated: wgpu::ComputePipeline,
    add_bias: wgpu::ComputePipeline,
    scale_rows: wgpu::ComputePipeline,
    pub(crate) route: wgpu::ComputePipeline,
    pub(crate) altup: AltUpKernels,
    /// What plain products bind where routed ones bind their routing (quant.wgsl).
    unrouted: GpuBuffer,
}

impl Kernels {
    /// The pipelines of `plan`; a plan with subgroups needs a device that has them.
    pub fn new(gpu: &Gpu, plan: KernelPlan) -> Self {
        let (few, many, few_tokens) = match plan {
            KernelPlan::Software => (
                Product::new(gpu, "", MATVEC_ROWS, "matvec_rows"),
                Some(Product::new(gpu, "", MATMUL_ROWS, "matmul")),
                SOFTWARE_MATVEC_TOKENS,
            ),
            KernelPlan::Gpu { subgroups, matrices } => {
                let reduce = if subgroups { REDUCE_SUBGROUP } else { REDUCE_SHARED };
                let many = if matrices {
                    Product::new(gpu, MATRIX_DIRECTIVES, MATMUL_MATRIX, "matmul_matrix")
                } else {
                    Product::new(gpu, "", MATMUL_TILED, "matmul_tiled")
                };
                let few = Product::new(gpu, "", &format!("{MATVEC}\n{reduce}"), "matvec");
                (few, Some(many), MATVEC_TOKENS)
            }
        };
        let get_rows = SUPPORTED_TYPES
            .into_iter()
            .map(|ty| {
                let source = format!("{QUANT}\n{ACTIVATION}\n{}", decoder(ty));
                (ty, pipeline(gpu, &format!("get_rows {ty}"), &source, "get_rows"))
            })
            .collect();
        let rows = format!("{ROWS}\n{ACTIVATION}");
        Self {
            few,
            many,
            few_tokens,
            get_rows,
            rmsnorm: pipeline(gpu, "rmsnorm", NORM, "rmsnorm"),
            rope: pipeline(gpu, "rope", include_str!("shaders/rope.wgsl"), "rope"),
            attention_split: pipeline(gpu, "attention split", ATTENTION, "attention_split"),
            attention_combine: pipeline(gpu, "attention combine", ATTENTION, "attention_combine"),
            gated: pipeline(
                gpu,
                "gated",
                &format!("{}\n{ACTIVATION}", include_str!("shaders/gated.wgsl")),
                "gated",
            ),
            add_bias: pipeline(gpu, "add_bias", &rows, "add_bias"),
            scale_rows: pipeline(gpu, "scale_rows", &rows, "scale_rows"),
            route: pipeline(gpu, "route", ROUTE, "route_tokens"),
            altup: AltUpKernels::new(gpu),
            unrouted: gpu.storage("unrouted", 16),
        }
    }
}

/// The largest part of a weight the device binds.
fn part_limit(gpu: &Gpu) -> u64 {
    gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size) - 8
}

/// One buffer range of a weight: whole rows, so every part is a matrix of its own.
pub struct Part {
    pub buffer: GpuBuffer,
    pub row0: u32,
    pub rows: u32,
}

/// A 2-D weight in its GGUF encoding, on the device: one matrix, or `matrices` of
/// `nrows / matrices` rows each, stacked (a mixture of experts' 3-D tensor), which no
/// part splits.
pub struct Weight {
    pub ty: GgmlType,
    pub ncols: u32,
    pub nrows: u32,
    pub matrices: u32,
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
        Self::upload_in_parts(gpu, name, ty, [ncols, nrows], bytes, part_limit(gpu))
    }

    /// Upload `shape[2]` stacked matrices of `shape[1]` rows of `shape[0]` elements (a
    /// 3-D expert tensor), split into parts of whole matrices.
    pub fn upload_stacked(
        gpu: &Gpu,
        name: &str,
        ty: GgmlType,
        shape: [u64; 3],
        bytes: &[u8],
    ) -> Result<Self, PluginError> {
        Self::upload_matrices(gpu, name, ty, shape, bytes, part_limit(gpu))
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
        Self::upload_matrices(gpu, name, ty, [ncols, nrows, 1], bytes, part_limit)
    }

    /// `shape[2]` matrices of `shape[1]` rows of `shape[0]` elements, stacked, in parts
    /// of at most `part_limit` bytes (or one matrix, where a matrix is larger) that
    /// hold whole matrices.
    pub fn upload_matrices(
        gpu: &Gpu,
        name: &str,
        ty: GgmlType,
        shape: [u64; 3],
        bytes: &[u8],
        part_limit: u64,
    ) -> Result<Self, PluginError> {
        let [ncols, matrix_rows, matrices] = shape;
        let nrows = matrix_rows * matrices;
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
        let together = if matrices > 1 { matrix_rows } else { 1 };
        let rows_per_part = (part_limit / row_bytes / together).max(1) * together;
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
        Ok(Self { ty, ncols: ncols as u32, nrows: nrows as u32, matrices: matrices as u32, parts })
    }
}

/// Which matrix of a stacked weight a routed product multiplies by: the expert that
/// slot `slot` of `route` names (route.wgsl writes them), its output scaled by that
/// slot's weight when `weighted`.
#[derive(Clone, Copy)]
pub struct Routed<'a> {
    pub route: &'a wgpu::Buffer,
    pub slot: u32,
    pub weighted: bool,
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

pub(crate) struct Op<'a> {
    pipeline: &'a wgpu::ComputePipeline,
    bindings: Vec<(u32, &'a wgpu::Buffer)>,
    params: u64,
    groups: [u32; 3],
}

/// A bind group and what it binds besides the parameters.
struct Bound {
    pipeline: wgpu::ComputePipeline,
    buffers: Vec<(u32, wgpu::Buffer)>,
    group: wgpu::BindGroup,
}

/// The parameter buffer and bind groups kept from one submission to the next. A decode
/// step records the same dispatches over the same buffers every token (positions and
/// offsets live in the parameters), so after the first step only the parameter bytes
/// are written: no buffer or bind group is created per token.
#[derive(Default)]
pub struct Bindings {
    params: Option<wgpu::Buffer>,
    /// By dispatch index within a batch.
    bound: Vec<Bound>,
}

impl Bindings {
    /// The parameter buffer, replaced by a larger one (and every bind group with it)
    /// when `bytes` do not fit.
    fn params(&mut self, device: &wgpu::Device, bytes: u64) -> wgpu::Buffer {
        match &self.params {
            Some(buffer) if buffer.size() >= bytes => buffer.clone(),
            _ => {
                let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("kernel parameters"),
                    size: bytes.next_power_of_two(),
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                self.bound.clear();
                self.params = Some(buffer.clone());
                buffer
            }
        }
    }

    /// The bind group of dispatch `index`: the one kept if it binds the same, else a
    /// new one, kept for next time.
    fn group(&mut self, device: &wgpu::Device, params: &wgpu::Buffer, index: usize, op: &Op<'_>) {
        let same = self.bound.get(index).is_some_and(|bound| {
            bound.pipeline == *op.pipeline
                && bound.buffers.len() == op.bindings.len()
                && bound.buffers.iter().zip(&op.bindings).all(|(a, b)| a.0 == b.0 && a.1 == *b.1)
        });
        if same {
            return;
        }
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: params,
                offset: op.params,
                size: wgpu::BufferSize::new(PARAM_BYTES),
            }),
        }];
        entries.extend(op.bindings.iter().map(|&(binding, buffer)| wgpu::BindGroupEntry {
            binding,
            resource: buffer.as_entire_binding(),
        }));
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &op.pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let bound = Bound {
            pipeline: op.pipeline.clone(),
            buffers: op
                .bindings
                .iter()
                .map(|&(binding, buffer)| (binding, buffer.clone()))
                .collect(),
            group,
        };
        if index < self.bound.len() {
            self.bound[index] = bound;
        } else {
            self.bound.push(bound);
        }
    }
}

/// Dispatches recorded for one submission, and copies to make after them.
pub struct Batch<'a> {
    gpu: &'a Gpu,
    pub(crate) kernels: &'a Kernels,
    stride: u64,
    params: Vec<u8>,
    ops: Vec<Op<'a>>,
    copies: Vec<(&'a wgpu::Buffer, &'a wgpu::Buffer, u64)>,
}

/// Work groups for `count` items when one dimension holds at most 65535.
fn split_groups(count: u32) -> [u32; 2] {
    [count.min(65535), count.div_ceil(65535)]
}

impl<'a> Batch<'a> {
    pub fn new(gpu: &'a Gpu, kernels: &'a Kernels) -> Self {
        let stride =
            PARAM_BYTES.next_multiple_of(u64::from(gpu.limits.min_uniform_buffer_offset_alignment));
        Self { gpu, kernels, stride, params: Vec::new(), ops: Vec::new(), copies: Vec::new() }
    }

    pub(crate) fn push(
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
        self.product(w, x, y, ntok, u32::from(accumulate), scale, None);
    }

    /// `gate[t] = act(gate[t]) · W · x[t]`: a gated feed-forward's up projection with
    /// the activation of the gate projection already in `gate`, in one pass.
    pub fn matmul_gated(
        &mut self,
        w: &'a Weight,
        x: View<'a>,
        gate: View<'a>,
        ntok: u32,
        activation: Activation,
    ) {
        let output = if activation == Activation::GeluTanh { 3 } else { 2 };
        self.product(w, x, gate, ntok, output, 1.0, None);
    }

    /// A matrix product whose results `store` (quant.wgsl) writes as `output` says; a
    /// routed one multiplies by the matrix of the expert in its slot of the routing.
    #[allow(clippy::too_many_arguments)] // the kernel's parameters, one each
    pub(crate) fn product(
        &mut self,
        w: &'a Weight,
        x: View<'a>,
        y: View<'a>,
        ntok: u32,
        output: u32,
        scale: f32,
        routed: Option<Routed<'a>>,
    ) {
        let kernels = self.kernels;
        let product = match &kernels.many {
            Some(many) if ntok > kernels.few_tokens => many,
            _ => &kernels.few,
        };
        let pipeline = &product.pipelines[&w.ty];
        let matrix_rows = w.nrows / w.matrices;
        for part in &w.parts {
            // A routed product computes one matrix's rows; a plain one the part's.
            let (rows, row0, route, route_words) = match routed {
                Some(r) => (
                    matrix_rows,
                    0,
                    r.route,
                    [
                        r.slot,
                        part.row0 / matrix_rows,
                        part.rows / matrix_rows,
                        u32::from(r.weighted),
                    ],
                ),
                None => (part.rows, part.row0, &kernels.unrouted.buffer, [u32::MAX, 0, 0, 0]),
            };
            let [gx, gy] = split_groups(rows.div_ceil(product.rows));
            let [slot, expert0, experts, weighted] = route_words;
            let words = [
                rows,
                w.ncols,
                ntok,
                row0,
                x.offset,
                x.stride,
                y.offset,
                y.stride,
                output,
                scale.to_bits(),
                slot,
                expert0,
                experts,
                weighted,
            ];
            let bindings = vec![(1, &part.buffer.buffer), (2, x.buffer), (3, y.buffer), (5, route)];
            self.push(pipeline, bindings, &words, [gx, gy, ntok.div_ceil(product.tokens)]);
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
    /// seeing only its last `window` keys when there is one; `partials` holds what
    /// [`AttentionShape::partials`] says.
    #[allow(clippy::too_many_arguments)] // the kernel's parameters, one each
    pub fn attention(
        &mut self,
        q: &'a wgpu::Buffer,
        k: &'a wgpu::Buffer,
        v: &'a wgpu::Buffer,
        partials: [&'a wgpu::Buffer; 2],
        out: &'a wgpu::Buffer,
        shape: AttentionShape,
        ntok: u32,
        pos0: u32,
        window: Option<u32>,
    ) {
        let splits = attention_splits(pos0 + ntok, window);
        let words = [
            ntok,
            shape.heads,
            shape.kv_heads,
            shape.head_dim,
            pos0,
            splits,
            shape.scale.to_bits(),
            window.unwrap_or(0),
        ];
        let [sums, stats] = partials;
        let bindings = vec![(1, q), (2, k), (3, v), (4, sums), (5, stats)];
        let groups = [shape.heads, ntok, splits];
        self.push(&self.kernels.attention_split, bindings, &words, groups);
        let bindings = vec![(4, sums), (5, stats), (6, out)];
        self.push(&self.kernels.attention_combine, bindings, &words, [shape.heads, ntok, 1]);
    }

    /// `g = act(g) * u` over `rows` rows of `n` values, `g` contiguous.
    pub fn gated(
        &mut self,
        g: &'a wgpu::Buffer,
        u: View<'a>,
        rows: u32,
        n: u32,
        activation: Activation,
    ) {
        let words = [rows, n, u.offset, u.stride, u32::from(activation == Activation::GeluTanh)];
        let bindings = vec![(1, g), (2, u.buffer)];
        self.push(&self.kernels.gated, bindings, &words, [n.div_ceil(64), rows, 1]);
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

    /// Copy the first `bytes` of `from` to `to` once the dispatches are done.
    pub fn copy(&mut self, from: &'a wgpu::Buffer, to: &'a wgpu::Buffer, bytes: u64) {
        self.copies.push((from, to, bytes));
    }

    /// Encode the recorded dispatches into compute passes of `SUBMIT_DISPATCHES`, each
    /// submitted as its own command buffer, the copies after the last, with bind groups
    /// made for this batch alone.
    pub fn submit(self) {
        self.submit_with(&mut Bindings::default());
    }

    /// [`Batch::submit`] with the parameter buffer and bind groups kept in `bindings`.
    pub fn submit_with(self, bindings: &mut Bindings) {
        if self.ops.is_empty() && self.copies.is_empty() {
            return;
        }
        let device = &self.gpu.device;
        let params = bindings.params(device, self.params.len().max(4) as u64);
        self.gpu.queue.write_buffer(&params, 0, &self.params);
        for (index, op) in self.ops.iter().enumerate() {
            bindings.group(device, &params, index, op);
        }
        let ops: Vec<_> = self.ops.iter().zip(&bindings.bound).collect();
        let mut pieces = ops.chunks(SUBMIT_DISPATCHES).peekable();
        let mut encoder = device.create_command_encoder(&Default::default());
        while let Some(piece) = pieces.next() {
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                for (op, bound) in piece {
                    pass.set_pipeline(op.pipeline);
                    pass.set_bind_group(0, &bound.group, &[]);
                    pass.dispatch_workgroups(op.groups[0], op.groups[1], op.groups[2]);
                }
            }
            if pieces.peek().is_some() {
                let next = device.create_command_encoder(&Default::default());
                self.gpu.queue.submit([std::mem::replace(&mut encoder, next).finish()]);
            }
        }
        for &(from, to, bytes) in &self.copies {
            encoder.copy_buffer_to_buffer(from, 0, to, 0, bytes);
        }
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

/// Keys per attention split (`KEYS` in attention.wgsl).
const ATTENTION_KEYS: u32 = 128;

/// Attention splits per (head, token) when the last query sees `keys` keys.
fn attention_splits(keys: u32, window: Option<u32>) -> u32 {
    keys.min(window.unwrap_or(u32::MAX)).div_ceil(ATTENTION_KEYS)
}

impl AttentionShape {
    /// The largest head the attention kernel holds in workgroup memory.
    pub const MAX_HEAD_DIM: u32 = 256;

    /// The f32 values of the two scratch buffers attention needs for `ntok` queries:
    /// the splits' weighted value sums and their (max, sum) pairs.
    pub fn partials(&self, ntok: u32) -> [u64; 2] {
        let slots =
            u64::from(ntok) * u64::from(self.heads) * u64::from(attention_splits(self.ctx, None));
        [slots * u64::from(self.head_dim), slots * 2]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cooperative-matrix kernel runs only on adapters that have such matrices,
    /// which the machines the tests run on may lack; here naga, the compiler wgpu uses,
    /// checks it for every weight type and writes it as SPIR-V, as wgpu's Vulkan
    /// backend would.
    #[test]
    fn the_cooperative_matrix_kernel_of_every_weight_type_validates_and_compiles_to_spir_v() {
        for ty in SUPPORTED_TYPES {
            let source = product_source(MATRIX_DIRECTIVES, MATMUL_MATRIX, ty);
            let module = naga::front::wgsl::parse_str(&source)
                .unwrap_or_else(|error| panic!("{ty}: {}", error.emit_to_string(&source)));
            let info = naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::all(),
            )
            .validate(&module)
            .unwrap_or_else(|error| panic!("{ty}: {}", error.emit_to_string(&source)));
            let words = naga::back::spv::write_vec(
                &module,
                &info,
                &naga::back::spv::Options::default(),
                None,
            )
            .unwrap_or_else(|error| panic!("{ty}: {error}"));
            assert!(words.len() > 100, "{ty}: {} SPIR-V words", words.len());
        }
    }

    #[test]
    fn each_product_kernel_says_how_many_rows_and_tokens_a_workgroup_covers() {
        assert_eq!(shader_constant(MATVEC, "ROWS"), 4);
        assert_eq!(shader_constant(MATMUL_MATRIX, "TOKENS"), 32);
        assert_eq!(shader_constant(MATMUL_ROWS, "ROWS"), 64);
        let run = shader_constant(MATVEC_ROWS, "RUN");
        assert_eq!(shader_constant(MATVEC_ROWS, "ROWS"), run * shader_constant(MATVEC_ROWS, "WG"));
    }
}
