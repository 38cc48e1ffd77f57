//! The WGSL kernels as the host compiles them: each product kernel per weight type with
//! the shape a plan and device choose, the pipelines of the other steps, and the
//! quantized weights split to fit the device's binding limit. [`crate::batch`] records
//! dispatches of them.

use std::collections::HashMap;

use hearth_sdk::helpers::GgmlType;

use crate::altup::AltUpKernels;
use crate::batch::FEW_QUERIES_ATTENTION_KEYS;
use crate::cache::CacheType;
use crate::device::{Gpu, GpuBuffer};
use crate::forward::UBATCH;
use crate::plan::{KernelPlan, MatvecInput, MatvecShape};
pub use crate::products::Routed;
pub use crate::quantized::{Part, Weight, SUPPORTED_TYPES};

/// quant.wgsl with rotation.wgsl, whose rotation the products that rotate Q and K as
/// they store them call.
const QUANT: &str =
    concat!(include_str!("shaders/quant.wgsl"), "\n", include_str!("shaders/rotation.wgsl"));
const ROPE: &str =
    concat!(include_str!("shaders/rope.wgsl"), "\n", include_str!("shaders/rotation.wgsl"));
const DECODERS: &str = include_str!("shaders/decode.wgsl");
const DOT8: &str = include_str!("shaders/dot8.wgsl");
const INPUT_F32: &str = include_str!("shaders/input_f32.wgsl");
const INPUT_Q8: &str = include_str!("shaders/input_q8.wgsl");
/// norm.wgsl and attention.wgsl with quantize.wgsl, whose function their entry points
/// that quantize a product's input call; those pipelines set its `PARTS`.
pub(crate) const NORM: &str =
    concat!(include_str!("shaders/norm.wgsl"), "\n", include_str!("shaders/quantize.wgsl"));
pub(crate) const ROWS: &str = include_str!("shaders/rows.wgsl");
const MATMUL_ROWS: &str = include_str!("shaders/matmul_rows.wgsl");
const MATVEC_ROWS: &str = include_str!("shaders/matvec_rows.wgsl");
const MATVEC: &str = include_str!("shaders/matvec.wgsl");
const MATMUL_PAIRS: &str = include_str!("shaders/matmul_pairs.wgsl");
const MATMUL_TILED: &str = include_str!("shaders/matmul_tiled.wgsl");
const MATMUL_MATRIX: &str = include_str!("shaders/matmul_matrix.wgsl");
/// What the cooperative-matrix kernel enables before anything else in its module.
const MATRIX_DIRECTIVES: &str = "enable f16;\nenable wgpu_cooperative_matrix;\n";
const REDUCE_SUBGROUP: &str = include_str!("shaders/reduce_subgroup.wgsl");
const REDUCE_SHARED: &str = include_str!("shaders/reduce_shared.wgsl");
const ATTENTION: &str =
    concat!(include_str!("shaders/attention.wgsl"), "\n", include_str!("shaders/quantize.wgsl"));
/// attention_tile.wgsl after attention.wgsl (with the quantize.wgsl it calls), whose
/// parameters and bindings it uses.
const ATTENTION_TILE: &str = concat!(
    include_str!("shaders/attention.wgsl"),
    "\n",
    include_str!("shaders/quantize.wgsl"),
    "\n",
    include_str!("shaders/attention_tile.wgsl")
);
pub(crate) const ACTIVATION: &str = include_str!("shaders/activation.wgsl");
const ROUTE: &str = include_str!("shaders/route.wgsl");
const ARGMAX: &str = include_str!("shaders/argmax.wgsl");

/// Logits one workgroup of greedy decoding's first pass reduces (`SPAN` in
/// argmax.wgsl).
const ARGMAX_SPAN: u32 = 4096;

/// The parts greedy decoding's first pass leaves for `n` logits.
pub fn argmax_parts(n: u32) -> u32 {
    n.div_ceil(ARGMAX_SPAN)
}

const TOP_K: &str = include_str!("shaders/top_k.wgsl");

/// Logits one workgroup of top-k's first pass sorts (`SPAN` in top_k.wgsl).
const TOP_K_SPAN: u32 = 2048;

/// The most candidates top-k on the device finds (`K` in top_k.wgsl): more than the 40
/// llama.cpp and Ollama take by default.
pub const TOP_K_MAX: u32 = 64;

const SAMPLE: &str = include_str!("shaders/sample.wgsl");

const ADJUST: &str = include_str!("shaders/adjust.wgsl");

/// The most biases and seen tokens together that adjust.wgsl takes in a step: the
/// API's 1 024 biases and a window of as many distinct tokens. A request with more
/// reads back every logit instead.
pub const ADJUSTMENTS_MAX: u32 = 2048;

/// The parts top-k's first pass leaves for `n` logits.
pub fn top_k_parts(n: u32) -> u32 {
    n.div_ceil(TOP_K_SPAN)
}

/// On the GPU plan, products of up to this many tokens use the matrix–vector kernel
/// (a workgroup per few rows and token); more use the tiled kernel.
pub(crate) const MATVEC_TOKENS: u32 = 8;

/// The widest input the decode product quantizes to 8 bits ([`Kernels`]'
/// `quantize_input` buffer holds [`MATVEC_TOKENS`] tokens of it, 5.2 MB in two parts);
/// a wider one, wider than any model's, goes through the prompt product, which reads
/// f32.
pub(crate) const QUANTIZED_INPUT_COLUMNS: u32 = 1 << 18;

/// The words one token's `input` of `ncols` values takes (norm.wgsl's `quantize_input`): per
/// part, eight a chunk of 32 and a (scale, sum) pair, rounded up to whole vectors.
pub(crate) fn quantized_input_words(input: MatvecInput, ncols: u32) -> u32 {
    (ncols / 32 * 10).next_multiple_of(4) * input.parts()
}

/// Most tokens a batch of the forward pass takes where the prompt product runs on
/// cooperative matrices: its tile is 128 tokens, so a batch of 512 reads each weight
/// once for 512 tokens where the plans' common batch of 32 ([`UBATCH`]) reads it 16
/// times, and gives each product four times the workgroups.
const MATRIX_UBATCH: u32 = 512;

/// A prompt product takes the cooperative-matrix kernel's tiles of [`TALL_TILE_ROWS`]
/// rows where they still make this many workgroups, else tiles of 128: on an H100 (132
/// multiprocessors) tiles of 256 ran the 8B shape's 14 336-row gate and up
/// projections 1.4× as fast as tiles of 128, and its 4 096-row matrices (64 workgroups
/// for 512 tokens) 0.7× as fast (docs/BENCHMARKS.md, 2026-12-07).
const FILLING_WORKGROUPS: u32 = 128;
const TALL_TILE_ROWS: u32 = 256;

/// The copies of its tiles matmul_matrix.wgsl keeps with tiles of `rows` rows: two, so
/// a chunk costs one barrier, where both fit the 48 KiB of workgroup memory an H100
/// allows (tiles of up to 128 rows), else one.
fn matrix_copies(rows: u32) -> u32 {
    if rows > 128 {
        1
    } else {
        2
    }
}

/// The workgroup memory matmul_matrix.wgsl takes with tiles of `rows` rows: the copies
/// of the rows' chunk and the tokens' chunk in f16, each row and token `STRIDE` values
/// apart, and a 16×16 f32 slot per subgroup.
fn matrix_workgroup_bytes(rows: u32) -> u32 {
    let (tokens, stride) =
        (shader_constant(MATMUL_MATRIX, "TOKENS"), shader_constant(MATMUL_MATRIX, "STRIDE"));
    matrix_copies(rows) * (rows + tokens) * stride * 2 + rows / 32 * 256 * 4
}

/// The workgroup memory attention_tile.wgsl takes: its rows' queries, a block of keys
/// (or values) one vector apart, the rows' scores one value apart, three values a row and
/// one an invocation. 27.3 KiB: adapters that allow less keep `attention_split`.
const ATTENTION_TILE_WORKGROUP_BYTES: u32 = {
    let (rows, block, head4, invocations) = (16, 32, 32, 128);
    rows * head4 * 16
        + block * (head4 + 1) * 16
        + rows * (block + 1) * 4
        + 3 * rows * 4
        + invocations * 4
};

/// The cooperative-matrix prompt product's source with tiles of `rows` rows.
fn matrix_kernel(rows: u32) -> String {
    with_constants(MATMUL_MATRIX, &[("ROWS", rows), ("COPIES", matrix_copies(rows))])
}

/// On the software plan, only a single token's product takes the matrix–vector kernel:
/// it reads the weights once per token, where the row kernel reads them once for a
/// tile of eight.
const SOFTWARE_MATVEC_TOKENS: u32 = 1;

/// The pipelines of a reduction's two passes, `entries` of `source` (named after them).
fn two_passes(gpu: &Gpu, source: &str, entries: [&str; 2]) -> [wgpu::ComputePipeline; 2] {
    entries.map(|entry| pipeline(gpu, &entry.replace('_', " "), source, entry))
}

/// `ty`'s section of a file of per-type sections (each starts with `//! TYPE`), if it
/// has one.
fn section(file: &'static str, ty: GgmlType) -> Option<&'static str> {
    let marker = format!("//! {}\n", ty.name());
    let start = file.find(&marker)? + marker.len();
    let end = file[start..].find("//! ").map_or(file.len(), |at| start + at);
    Some(&file[start..end])
}

/// `ty`'s decoder from decode.wgsl: its block size, `load_chunk` and `decode_loaded`.
fn decoder(ty: GgmlType) -> &'static str {
    section(DECODERS, ty).expect("every supported type has a decoder")
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
    let pipeline = gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: None,
        module: &module,
        entry_point: Some(entry),
        compilation_options: Default::default(),
        cache: None,
    });
    if let Some(profiler) = &gpu.profiler {
        profiler.name(&pipeline, label);
    }
    pipeline
}

/// A matrix-product kernel for every weight type, and the rows and tokens one of its
/// workgroups covers (kernel rows: a paired product has two per output row).
pub(crate) struct Product {
    pub(crate) pipelines: HashMap<GgmlType, wgpu::ComputePipeline>,
    pub(crate) rows: u32,
    pub(crate) tokens: u32,
    /// The types whose kernel reads its input quantized to 8 bits (input_q8.wgsl),
    /// which [`Batch`](crate::batch::Batch) quantizes before the product.
    pub(crate) quantized_input: Vec<GgmlType>,
    /// Whether the kernel hands each even row's store the next row's sum (quant.wgsl's
    /// `store_sum`), so it can pair a gate with its up row or rotate a pair of Q or K:
    /// every product kernel with an even number of rows a workgroup but
    /// matmul_rows.wgsl, which stores each row alone.
    pub(crate) holds_pairs: bool,
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

/// `source` with `const NAME: u32 = …u;` set to each of `values`: how the host gives a
/// kernel a shape chosen at run time while the file keeps the defaults.
fn with_constants(source: &str, values: &[(&str, u32)]) -> String {
    let mut source = source.to_owned();
    for &(name, value) in values {
        let declaration = format!("const {name}: u32 = ");
        let start = source.find(&declaration).map(|at| at + declaration.len());
        let end = start.and_then(|at| source[at..].find("u;").map(|end| at + end));
        let (Some(start), Some(end)) = (start, end) else {
            panic!("the kernel declares `{declaration}Nu;`");
        };
        source.replace_range(start..end, &value.to_string());
    }
    source
}

/// The source of a product kernel for weights of type `ty`: the `enable` directives it
/// needs, then the shared quantized-weight code, `ty`'s decoder and the kernel.
fn product_source(directives: &str, kernel: &str, ty: GgmlType) -> String {
    format!("{directives}{QUANT}\n{ACTIVATION}\n{}\n{kernel}", decoder(ty))
}

/// The decode product's source for weights of type `ty`: matvec.wgsl of shape `shape`
/// reduced by `reduce`, with its input quantized to 8 bits where `shape` asks for that
/// and dot8.wgsl has the type, else in f32.
fn matvec_source(reduce: &str, shape: MatvecShape, ty: GgmlType) -> String {
    let values = [("ROWS", shape.rows), ("WG", shape.width)];
    let kernel = with_constants(&format!("{MATVEC}\n{reduce}"), &values);
    let input = match section(DOT8, ty).filter(|_| quantizes_input(shape, ty)) {
        Some(dot8) => {
            let parts = shape.input.parts();
            format!("{dot8}\n{}", with_constants(INPUT_Q8, &[("PARTS", parts)]))
        }
        None => INPUT_F32.to_owned(),
    };
    format!("{}\n{input}", product_source("", &kernel, ty))
}

/// Whether the decode product of shape `shape` reads weights of type `ty` against
/// 8-bit input: where the shape asks for it and dot8.wgsl has the type.
fn quantizes_input(shape: MatvecShape, ty: GgmlType) -> bool {
    shape.input != MatvecInput::F32 && section(DOT8, ty).is_some()
}

impl Product {
    /// `kernel`'s entry point `entry` compiled after each type's decoder.
    fn new(gpu: &Gpu, directives: &str, kernel: &str, entry: &str) -> Self {
        Self::of_sources(gpu, entry, |ty| product_source(directives, kernel, ty))
    }

    /// Entry point `entry` of `source(ty)` for each type, whose kernel declares the rows
    /// and tokens a workgroup covers.
    fn of_sources(gpu: &Gpu, entry: &str, source: impl Fn(GgmlType) -> String) -> Self {
        let first = source(SUPPORTED_TYPES[0]);
        let (rows, tokens) = (shader_constant(&first, "ROWS"), shader_constant(&first, "TOKENS"));
        let pipelines = SUPPORTED_TYPES
            .into_iter()
            .map(|ty| (ty, pipeline(gpu, &format!("{entry} {ty}"), &source(ty), entry)))
            .collect();
        Self { pipelines, rows, tokens, quantized_input: Vec::new(), holds_pairs: rows % 2 == 0 }
    }
}

/// The decode product's 8-bit input (quantize.wgsl): norm.wgsl's pass that quantizes a
/// product's input, its RMSNorm and attention.wgsl's combining pass that quantize the
/// rows they write, and the buffer they write for the products after them,
/// [`MATVEC_TOKENS`] tokens of up to [`QUANTIZED_INPUT_COLUMNS`].
pub(crate) struct InputQuantizer {
    pub(crate) pass: wgpu::ComputePipeline,
    pub(crate) rmsnorm: wgpu::ComputePipeline,
    pub(crate) attention_combine: wgpu::ComputePipeline,
    /// A decode step's attention in one pass: its splits of
    /// [`FEW_QUERIES_ATTENTION_KEYS`] keys, the last of each (token, head) combining
    /// them and quantizing the head's output.
    pub(crate) attention_few: wgpu::ComputePipeline,
    /// `attention_few`'s count of each (token, head)'s finished splits: room for
    /// [`MATVEC_TOKENS`] tokens of as many heads as a row of `buffer` holds (each head
    /// at least one chunk of 32 values).
    pub(crate) finished: GpuBuffer,
    pub(crate) input: MatvecInput,
    pub(crate) buffer: GpuBuffer,
    /// The values a workgroup of `pass` and of `rmsnorm` quantizes: four for each of
    /// norm.wgsl's `WG` invocations.
    pass_values: u32,
}

impl InputQuantizer {
    fn new(gpu: &Gpu, input: MatvecInput, cache: CacheType) -> Self {
        let parts = [("PARTS", input.parts())];
        let norm = with_constants(NORM, &parts);
        let attention = cache.source(&with_constants(ATTENTION, &parts));
        let attention_few = with_constants(&attention, &[("KEYS", FEW_QUERIES_ATTENTION_KEYS)]);
        let words = quantized_input_words(input, QUANTIZED_INPUT_COLUMNS);
        let bytes = u64::from(words * MATVEC_TOKENS) * 4;
        let counters = u64::from(QUANTIZED_INPUT_COLUMNS / 32 * MATVEC_TOKENS);
        Self {
            pass: pipeline(gpu, "quantize input", &norm, "quantize_input"),
            rmsnorm: pipeline(gpu, "rmsnorm quantized", &norm, "rmsnorm_quantized"),
            attention_combine: pipeline(
                gpu,
                "attention combine quantized",
                &attention,
                "attention_combine_quantized",
            ),
            attention_few: pipeline(
                gpu,
                "attention split, few queries, combined and quantized",
                &attention_few,
                "attention_split_quantized",
            ),
            finished: gpu.storage("attention splits finished", counters * 4),
            input,
            buffer: gpu.storage("quantized input", bytes),
            pass_values: 4 * shader_constant(NORM, "WG"),
        }
    }

    /// The workgroups `pass` and `rmsnorm` take for `rows` rows of `ncols` values: a
    /// slice of [`InputQuantizer::pass_values`] of a row each.
    pub(crate) fn groups(&self, ncols: u32, rows: u32) -> [u32; 3] {
        [ncols.div_ceil(self.pass_values), rows, 1]
    }

    /// Whether `ntok` tokens of `ncols` values fit the buffer (each quantized chunk is
    /// 32 values).
    pub(crate) fn fits(ncols: u32, ntok: u32) -> bool {
        ncols.is_multiple_of(32) && ncols <= QUANTIZED_INPUT_COLUMNS && ntok <= MATVEC_TOKENS
    }
}

/// Every pipeline the forward pass uses.
pub struct Kernels {
    /// Products of a few tokens (decode steps) and of many (prompt chunks); `None`
    /// where one kernel serves both.
    few: Product,
    /// The GPU plan's product for the logits
    /// ([`Batch::logits`](crate::batch::Batch::logits)): twice `few`'s rows a workgroup
    /// (at most 8), with `few`'s input: on an H100 the 8B shape's 128 256-row output
    /// matrix read at 564 GB/s with eight rows against 283 GB/s with four, while eight
    /// rows made the decode step's other products slower in all (docs/BENCHMARKS.md,
    /// 2026-12-06).
    logits: Option<Product>,
    many: Option<Product>,
    /// The cooperative-matrix prompt product in tiles of [`TALL_TILE_ROWS`], for
    /// products that still fill [`FILLING_WORKGROUPS`] workgroups with them, where the
    /// device's workgroup memory holds them.
    many_tall: Option<Product>,
    /// The most tokens a product takes `few` for, where there is `many`.
    few_tokens: u32,
    /// The most tokens a batch of the forward pass should take with these kernels.
    batch_tokens: u32,
    /// Paired products (gate and up in one, quant.wgsl's `paired`) where `many` does
    /// not compute them: the software plan's one row per invocation.
    pairs: Option<Product>,
    pub(crate) get_rows: HashMap<GgmlType, wgpu::ComputePipeline>,
    pub(crate) rmsnorm: wgpu::ComputePipeline,
    pub(crate) rope: wgpu::ComputePipeline,
    /// attention.wgsl's first pass in splits of 128 keys
    /// ([`ATTENTION_KEYS`](crate::batch::ATTENTION_KEYS)), and on the GPU plans in
    /// splits of [`FEW_QUERIES_ATTENTION_KEYS`] for a decode step's few queries (on
    /// lavapipe those decoded SmolLM2 5 % slower).
    pub(crate) attention_split: wgpu::ComputePipeline,
    pub(crate) attention_split_few: Option<wgpu::ComputePipeline>,
    /// attention_tile.wgsl, on the GPU plans where the adapter allows its workgroup
    /// memory, for a prompt's queries in tiles of (token, head) rows that share their
    /// keys' loads.
    pub(crate) attention_tile: Option<wgpu::ComputePipeline>,
    pub(crate) attention_combine: wgpu::ComputePipeline,
    /// What the KV cache holds (the attention kernels read and write it).
    pub(crate) cache: CacheType,
    pub(crate) gated: wgpu::ComputePipeline,
    pub(crate) add_bias: wgpu::ComputePipeline,
    pub(crate) scale_rows: wgpu::ComputePipeline,
    pub(crate) route: wgpu::ComputePipeline,
    /// argmax.wgsl's two passes.
    pub(crate) argmax: [wgpu::ComputePipeline; 2],
    /// top_k.wgsl's two passes, on the GPU plans: on the software plan the logits are
    /// in the host's memory already, and lavapipe runs a barrier per invocation.
    pub(crate) top_k: Option<[wgpu::ComputePipeline; 2]>,
    /// sample.wgsl, where top-k runs: the token a draw picks from its candidates.
    pub(crate) sample: Option<wgpu::ComputePipeline>,
    /// adjust.wgsl, where top-k runs: a logit bias and penalties applied before it.
    pub(crate) adjust: Option<wgpu::ComputePipeline>,
    pub(crate) altup: AltUpKernels,
    /// Where the decode product reads 8-bit input: what makes it.
    pub(crate) quantize_input: Option<InputQuantizer>,
    /// What plain products bind where routed ones bind their routing, and where
    /// products of several segments bind the second and third (quant.wgsl): two
    /// buffers, as two writable bindings may not alias.
    pub(crate) unrouted: GpuBuffer,
    pub(crate) unsegmented: [GpuBuffer; 2],
}

impl Kernels {
    /// The pipelines of `plan`, with the decode product of the device's shape; a plan
    /// with subgroups needs a device that has them.
    pub fn new(gpu: &Gpu, plan: KernelPlan) -> Self {
        Self::with_matvec(gpu, plan, gpu.matvec)
    }

    /// [`Kernels::new`] with the GPU plan's decode product of shape `matvec`.
    pub fn with_matvec(gpu: &Gpu, plan: KernelPlan, matvec: MatvecShape) -> Self {
        Self::with_shapes(gpu, plan, matvec, None)
    }

    /// [`Kernels::with_matvec`] with the cooperative-matrix prompt product covering
    /// `matrix_rows` rows a workgroup (64, 128 or 256) instead of
    /// matmul_matrix.wgsl's own value.
    pub fn with_shapes(
        gpu: &Gpu,
        plan: KernelPlan,
        matvec: MatvecShape,
        matrix_rows: Option<u32>,
    ) -> Self {
        Self::build(gpu, plan, matvec, matrix_rows, gpu.cache)
    }

    /// [`Kernels::new`] with a KV cache of type `cache` instead of the device's choice.
    pub fn with_cache(gpu: &Gpu, plan: KernelPlan, cache: CacheType) -> Self {
        Self::build(gpu, plan, gpu.matvec, None, cache)
    }

    fn build(
        gpu: &Gpu,
        plan: KernelPlan,
        matvec: MatvecShape,
        matrix_rows: Option<u32>,
        cache: CacheType,
    ) -> Self {
        let batch_tokens = match plan {
            KernelPlan::Gpu { matrices: true, .. } => MATRIX_UBATCH,
            _ => UBATCH,
        };
        let (few, logits, many, many_tall, few_tokens, pairs) = match plan {
            KernelPlan::Software => (
                Product::new(gpu, "", MATVEC_ROWS, "matvec_rows"),
                None,
                Some(Product {
                    holds_pairs: false,
                    ..Product::new(gpu, "", MATMUL_ROWS, "matmul")
                }),
                None,
                SOFTWARE_MATVEC_TOKENS,
                Some(Product::new(gpu, "", MATMUL_PAIRS, "matmul_pairs")),
            ),
            KernelPlan::Gpu { subgroups, matrices } => {
                let reduce = if subgroups { REDUCE_SUBGROUP } else { REDUCE_SHARED };
                let matrix = |rows: Option<u32>| {
                    let kernel = match rows {
                        Some(rows) => matrix_kernel(rows),
                        None => MATMUL_MATRIX.to_owned(),
                    };
                    Product::new(gpu, MATRIX_DIRECTIVES, &kernel, "matmul_matrix")
                };
                let many = if matrices {
                    matrix(matrix_rows)
                } else {
                    Product::new(gpu, "", MATMUL_TILED, "matmul_tiled")
                };
                let tall_fits = gpu.limits.max_compute_workgroup_storage_size
                    >= matrix_workgroup_bytes(TALL_TILE_ROWS);
                let many_tall = (matrices && matrix_rows.is_none() && tall_fits)
                    .then(|| matrix(Some(TALL_TILE_ROWS)));
                let decode = |shape| {
                    let mut product =
                        Product::of_sources(gpu, "matvec", |ty| matvec_source(reduce, shape, ty));
                    product.quantized_input = SUPPORTED_TYPES
                        .into_iter()
                        .filter(|&ty| quantizes_input(shape, ty))
                        .collect();
                    product
                };
                let rows = (matvec.rows * 2).min(8);
                let logits = decode(MatvecShape { rows, ..matvec });
                (decode(matvec), Some(logits), Some(many), many_tall, MATVEC_TOKENS, None)
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
        let gpu_plan = matches!(plan, KernelPlan::Gpu { .. });
        let attention = cache.source(ATTENTION);
        Self {
            few,
            logits,
            many,
            many_tall,
            few_tokens,
            batch_tokens,
            pairs,
            get_rows,
            rmsnorm: pipeline(gpu, "rmsnorm", NORM, "rmsnorm"),
            rope: pipeline(gpu, "rope", ROPE, "rope"),
            attention_split: pipeline(gpu, "attention split", &attention, "attention_split"),
            attention_split_few: gpu_plan.then(|| {
                let source = with_constants(&attention, &[("KEYS", FEW_QUERIES_ATTENTION_KEYS)]);
                pipeline(gpu, "attention split, few queries", &source, "attention_split")
            }),
            attention_tile: (gpu_plan
                && gpu.limits.max_compute_workgroup_storage_size >= ATTENTION_TILE_WORKGROUP_BYTES)
                .then(|| {
                    let source = cache.source(ATTENTION_TILE);
                    pipeline(gpu, "attention tile", &source, "attention_tile")
                }),
            attention_combine: pipeline(gpu, "attention combine", &attention, "attention_combine"),
            cache,
            gated: pipeline(
                gpu,
                "gated",
                &format!("{}\n{ACTIVATION}", include_str!("shaders/gated.wgsl")),
                "gated",
            ),
            add_bias: pipeline(gpu, "add_bias", &rows, "add_bias"),
            scale_rows: pipeline(gpu, "scale_rows", &rows, "scale_rows"),
            route: pipeline(gpu, "route", ROUTE, "route_tokens"),
            argmax: two_passes(gpu, ARGMAX, ["argmax_parts", "argmax_total"]),
            top_k: gpu_plan.then(|| two_passes(gpu, TOP_K, ["top_k_parts", "top_k_total"])),
            sample: gpu_plan.then(|| pipeline(gpu, "sample", SAMPLE, "sample")),
            adjust: gpu_plan.then(|| pipeline(gpu, "adjust", ADJUST, "adjust")),
            altup: AltUpKernels::new(gpu),
            quantize_input: (gpu_plan && matvec.input != MatvecInput::F32)
                .then(|| InputQuantizer::new(gpu, matvec.input, cache)),
            unrouted: gpu.storage("unrouted", 16),
            unsegmented: [gpu.storage("unsegmented", 16), gpu.storage("unsegmented", 16)],
        }
    }

    /// The product kernel for `ntok` tokens of a matrix of `rows` kernel rows, for a
    /// paired product, and for the logits; `None` where that kernel's workgroups cannot
    /// hold a pair (a decode product of odd rows).
    pub(crate) fn product(
        &self,
        ntok: u32,
        rows: u32,
        paired: bool,
        logits: bool,
    ) -> Option<&Product> {
        let (product, pairs) = match (&self.many, &self.many_tall, &self.logits) {
            (_, Some(tall), _)
                if ntok > self.few_tokens
                    && rows.div_ceil(tall.rows) * ntok.div_ceil(tall.tokens)
                        >= FILLING_WORKGROUPS =>
            {
                (tall, None)
            }
            (Some(many), _, _) if ntok > self.few_tokens => (many, self.pairs.as_ref()),
            (_, _, Some(for_logits)) if logits => (for_logits, None),
            _ => (&self.few, None),
        };
        match (paired, pairs) {
            (false, _) => Some(product),
            (true, Some(pairs)) => Some(pairs),
            (true, None) => product.holds_pairs.then_some(product),
        }
    }

    /// Whether the product of `ntok` tokens of a matrix of `rows` rows can rotate the
    /// adjacent pairs of Q and K as it stores them
    /// ([`Batch::matmul_split_rotated`](crate::batch::Batch::matmul_split_rotated)).
    pub(crate) fn rotates_pairs(&self, ntok: u32, rows: u32) -> bool {
        self.product(ntok, rows, false, false).is_some_and(|product| product.holds_pairs)
    }

    /// The product of `rows` kernel rows that reads its input in f32 whatever the
    /// decode product's input: the prompt product, which takes any number of tokens.
    pub(crate) fn f32_product(&self, rows: u32, paired: bool) -> Option<&Product> {
        self.product(self.few_tokens + 1, rows, paired, false)
    }

    /// The most tokens a batch of the forward pass should take with these kernels: where
    /// more tokens a batch make the prompt product faster, more than the plans' common
    /// [`UBATCH`].
    pub fn batch_tokens(&self) -> u32 {
        self.batch_tokens
    }

    /// What the KV cache holds its values in.
    pub fn cache(&self) -> CacheType {
        self.cache
    }

    /// Whether [`Batch::top_k`](crate::batch::Batch::top_k) can find top-k sampling's
    /// candidates on the device: on the GPU plans.
    pub fn top_k_on_device(&self) -> bool {
        self.top_k.is_some()
    }

    /// Whether a product of `ntok` tokens can compute a gated feed-forward's gate and
    /// up projections at once ([`Batch::matmul_paired`](crate::batch::Batch::matmul_paired)).
    pub fn pair(&self, ntok: u32) -> bool {
        self.product(ntok, 0, true, false).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks `source` with naga, the compiler wgpu uses, and writes it as SPIR-V, as
    /// wgpu's Vulkan backend would.
    fn compile_to_spir_v(what: &str, source: &str) {
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|error| panic!("{what}: {}", error.emit_to_string(source)));
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .unwrap_or_else(|error| panic!("{what}: {}", error.emit_to_string(source)));
        let words =
            naga::back::spv::write_vec(&module, &info, &naga::back::spv::Options::default(), None)
                .unwrap_or_else(|error| panic!("{what}: {error}"));
        assert!(words.len() > 100, "{what}: {} SPIR-V words", words.len());
    }

    /// The cooperative-matrix kernel runs only on adapters that have such matrices,
    /// which the machines the tests run on may lack.
    #[test]
    fn the_cooperative_matrix_kernel_of_every_weight_type_and_tile_height_validates_and_compiles_to_spir_v(
    ) {
        for ty in SUPPORTED_TYPES {
            let source = product_source(MATRIX_DIRECTIVES, MATMUL_MATRIX, ty);
            compile_to_spir_v(&format!("{ty}"), &source);
        }
        for rows in [64, 128, 256] {
            let kernel = matrix_kernel(rows);
            let source = product_source(MATRIX_DIRECTIVES, &kernel, GgmlType::Q4_0);
            compile_to_spir_v(&format!("Q4_0, {rows} rows"), &source);
        }
    }

    #[test]
    fn the_attention_tile_takes_the_workgroup_memory_the_host_counts_for_it() {
        let own = workgroup_bytes(ATTENTION_TILE) - workgroup_bytes(ATTENTION);
        assert_eq!(own, ATTENTION_TILE_WORKGROUP_BYTES);
    }

    #[test]
    fn the_cooperative_matrix_kernel_takes_the_workgroup_memory_the_host_counts_for_its_tiles() {
        for rows in [64, 128, TALL_TILE_ROWS] {
            let kernel = matrix_kernel(rows);
            let source = product_source(MATRIX_DIRECTIVES, &kernel, GgmlType::Q4_0);
            assert_eq!(workgroup_bytes(&source), matrix_workgroup_bytes(rows), "{rows} rows");
        }
    }

    /// The 16 KiB of workgroup memory WebGPU guarantees every device.
    #[test]
    fn top_k_takes_no_more_workgroup_memory_than_every_device_has() {
        assert!(workgroup_bytes(TOP_K) <= 16 * 1024, "{} bytes", workgroup_bytes(TOP_K));
    }

    /// The bytes of workgroup memory the kernels of `source` declare.
    fn workgroup_bytes(source: &str) -> u32 {
        let module = naga::front::wgsl::parse_str(source).expect("the kernel parses");
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).expect("the kernel's types have layouts");
        module
            .global_variables
            .iter()
            .filter(|(_, global)| global.space == naga::AddressSpace::WorkGroup)
            .map(|(_, global)| layouter[global.ty].size)
            .sum()
    }

    #[test]
    fn the_decode_product_of_every_shape_the_variable_takes_validates_with_either_reduction() {
        for rows in 1..=8 {
            for width in [16, 32, 64, 128, 256] {
                for reduce in [REDUCE_SUBGROUP, REDUCE_SHARED] {
                    for input in [MatvecInput::F32, MatvecInput::Q8, MatvecInput::Q16] {
                        let shape = MatvecShape { rows, width, input };
                        let source = matvec_source(reduce, shape, GgmlType::Q4_0);
                        assert_eq!(shader_constant(&source, "ROWS"), rows);
                        compile_to_spir_v(&format!("{shape}"), &source);
                    }
                }
            }
        }
    }

    #[test]
    fn the_attention_kernels_validate_over_caches_of_either_type() {
        for cache in [CacheType::F16, CacheType::F32] {
            for (name, source) in
                [("attention.wgsl", ATTENTION), ("attention_tile.wgsl", ATTENTION_TILE)]
            {
                compile_to_spir_v(&format!("{name}, {cache}"), &cache.source(source));
            }
        }
    }

    #[test]
    fn the_decode_product_of_every_weight_type_validates_with_every_input() {
        for ty in SUPPORTED_TYPES {
            for input in [MatvecInput::F32, MatvecInput::Q8, MatvecInput::Q16] {
                let shape = MatvecShape { input, ..MatvecShape::default() };
                let source = matvec_source(REDUCE_SUBGROUP, shape, ty);
                compile_to_spir_v(&format!("{ty}, {shape}"), &source);
            }
        }
        assert!(section(DOT8, GgmlType::F16).is_none());
        assert!(SUPPORTED_TYPES.iter().filter(|ty| section(DOT8, **ty).is_some()).count() == 8);
    }

    #[test]
    fn the_input_quantization_validates_and_takes_ten_words_a_chunk_and_part_in_whole_vectors() {
        assert_eq!(quantized_input_words(MatvecInput::Q8, 4096), 1280);
        assert_eq!(quantized_input_words(MatvecInput::Q8, 64), 20);
        assert_eq!(quantized_input_words(MatvecInput::Q8, 96), 32, "rounded up to whole vectors");
        assert_eq!(quantized_input_words(MatvecInput::Q16, 96), 64, "two parts");
        for parts in [1, 2] {
            let source = with_constants(NORM, &[("PARTS", parts)]);
            compile_to_spir_v(&format!("norm.wgsl, {parts} parts"), &source);
        }
    }

    #[test]
    fn each_product_kernel_says_how_many_rows_and_tokens_a_workgroup_covers() {
        let defaults = MatvecShape::default();
        assert_eq!(shader_constant(MATVEC, "ROWS"), defaults.rows);
        assert_eq!(shader_constant(MATVEC, "WG"), defaults.width);
        assert_eq!(shader_constant(MATMUL_MATRIX, "TOKENS"), 128);
        assert_eq!(shader_constant(TOP_K, "SPAN"), TOP_K_SPAN);
        assert_eq!(shader_constant(TOP_K, "K"), TOP_K_MAX);
        assert_eq!(shader_constant(SAMPLE, "K"), TOP_K_MAX);
        assert_eq!(shader_constant(ATTENTION, "KEYS"), crate::batch::ATTENTION_KEYS);
        assert_eq!(shader_constant(ATTENTION_TILE, "SPLIT_KEYS"), crate::batch::TILE_SPLIT_KEYS);
        assert_eq!(shader_constant(ATTENTION_TILE, "QUERIES"), crate::batch::TILE_QUERIES);
        assert_eq!(shader_constant(ATTENTION_TILE, "HEAD4") * 4, crate::batch::TILE_HEAD_DIM);
        let matrix_rows = shader_constant(MATMUL_MATRIX, "ROWS");
        assert_eq!(shader_constant(MATMUL_MATRIX, "COPIES"), matrix_copies(matrix_rows));
        assert!(MATRIX_UBATCH.is_multiple_of(64));
        assert_eq!(shader_constant(MATMUL_ROWS, "ROWS"), 64);
        assert_eq!(shader_constant(MATMUL_PAIRS, "ROWS"), 128);
        let run = shader_constant(MATVEC_ROWS, "RUN");
        assert_eq!(shader_constant(MATVEC_ROWS, "ROWS"), run * shader_constant(MATVEC_ROWS, "WG"));
    }

    #[test]
    fn substituted_constants_replace_only_the_named_declarations() {
        let source = "const WG: u32 = 32u;\nconst ROWS: u32 = 4u;\nconst TOKENS: u32 = 1u;\n";
        let changed = with_constants(source, &[("ROWS", 2), ("WG", 128)]);
        assert_eq!(
            changed,
            "const WG: u32 = 128u;\nconst ROWS: u32 = 2u;\nconst TOKENS: u32 = 1u;\n"
        );
    }
}
