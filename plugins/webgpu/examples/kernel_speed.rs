//! How fast the WebGPU kernels run on this machine's adapter, kernel by kernel: the
//! decode product's rate of reading weights of real model shapes, for each decode shape
//! asked for, against what reading memory alone reaches, the fused products (Q, K and
//! V in one; gate and up paired) against the
//! separate ones, the prompt product's arithmetic rate on a batch of the plan's size
//! (with cooperative matrices, for each tile height their kernel takes), and what a
//! dispatch and a submission cost. It prints figures and asserts nothing: `hearth
//! bench` gives the whole model's speed, this says where it goes. The decode product
//! is also timed for Q8_0, Q4_K and Q6_K weights of the 8B feed-forward's shapes. With
//! `HEARTH_WEBGPU_PROFILE=1` the times are the GPU's own (timestamps around each
//! dispatch, profile.rs), else wall time; the submission's cost is wall time either way.
//!
//! ```text
//! cargo run --release --example kernel_speed     # HEARTH_WEBGPU_KERNELS picks the plan
//! cargo run --release --example kernel_speed -- rows=4,width=32 rows=1,width=64 …
//! ```
//!
//! Each argument is a decode shape as `HEARTH_WEBGPU_MATVEC` takes it (plan.rs); with
//! none, the shape that variable sets (or the default). One line per shape × matrix.

use std::time::{Duration, Instant};

use half::f16;
use hearth_model::Activation;
use hearth_sdk::helpers::GgmlType;
use hearth_webgpu::batch::{Batch, View};
use hearth_webgpu::device::{Gpu, GpuBuffer};
use hearth_webgpu::kernels::{Kernels, Weight};
use hearth_webgpu::plan::{KernelPlan, MatvecShape};
use hearth_webgpu::profile::{Profiler, Totals};

/// Matrices of the Llama 1B and 8B shapes (columns, rows) and what they are.
const SHAPES: [(u32, u32, &str); 6] = [
    (2048, 8192, "1B gate/up"),
    (8192, 2048, "1B down"),
    (4096, 4096, "8B q/o"),
    (4096, 14336, "8B gate/up"),
    (14336, 4096, "8B down"),
    (4096, 128_256, "8B output"),
];

/// Products timed back to back in one submission.
const REPEATS: usize = 20;

/// Q4_0 blocks with a small scale and varied quants (the speed does not depend on them).
fn q4_0(elements: usize) -> Vec<u8> {
    let scale = f16::from_f32(0.01).to_le_bytes();
    (0..elements / 32)
        .flat_map(|block| {
            let quants = (0..16).map(move |i| ((block * 7 + i * 13) % 256) as u8);
            scale.into_iter().chain(quants)
        })
        .collect()
}

fn wait(gpu: &Gpu) {
    gpu.device.poll(wgpu::PollType::wait_indefinitely()).expect("the device answers");
}

/// Seconds per `record` call when `repeats` of them run in one submission, after one
/// submission to warm up: the GPU's own time between the dispatches' timestamps where
/// the device profiles (`HEARTH_WEBGPU_PROFILE=1`), else the wall time of the
/// submission, which includes launches, barriers and the wait.
fn seconds_each<'a>(
    gpu: &'a Gpu,
    kernels: &'a Kernels,
    repeats: usize,
    record: impl Fn(&mut Batch<'a>),
) -> f64 {
    let (wall, profile) = timed(gpu, kernels, repeats, record);
    profile.map_or(wall, |totals| totals.busy_ns / 1e9) / repeats as f64
}

/// The wall time of `repeats` `record` calls in one submission after one to warm up,
/// and the profiler's totals of that submission where the device profiles.
fn timed<'a>(
    gpu: &'a Gpu,
    kernels: &'a Kernels,
    repeats: usize,
    record: impl Fn(&mut Batch<'a>),
) -> (f64, Option<Totals>) {
    let mut warm_up = Batch::new(gpu, kernels);
    record(&mut warm_up);
    warm_up.submit();
    wait(gpu);
    if let Some(profiler) = &gpu.profiler {
        profiler.take();
    }
    let start = Instant::now();
    let mut batch = Batch::new(gpu, kernels);
    for _ in 0..repeats {
        record(&mut batch);
    }
    batch.submit();
    wait(gpu);
    (start.elapsed().as_secs_f64(), gpu.profiler.as_ref().map(Profiler::take))
}

fn zeros(gpu: &Gpu, label: &str, floats: u32) -> GpuBuffer {
    gpu.storage(label, u64::from(floats) * 4)
}

/// Bytes of `elements` weights of type `ty` whose reading speed, not value, matters:
/// varied bytes, scales included (a kernel reads every block alike, whatever its
/// values, and arithmetic on a NaN costs a GPU no more than on a number).
fn varied(ty: GgmlType, elements: usize) -> Vec<u8> {
    let (block_elements, block_bytes) = ty.block();
    let len = elements / block_elements as usize * block_bytes as usize;
    (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

/// The weight types besides Q4_0 whose decode product is timed on the 8B shape's
/// gate/up and down matrices: the other types of the synthetic models (Q8_0, and the
/// Q4_K_M mix's Q4_K and Q6_K).
const OTHER_TYPES: [GgmlType; 3] = [GgmlType::Q8_0, GgmlType::Q4K, GgmlType::Q6K];

/// A Q4_0 weight of `nrows` rows of `ncols`, and its bytes.
fn q4_0_weight(gpu: &Gpu, what: &str, ncols: u32, nrows: u32) -> (Weight, usize) {
    let bytes = q4_0(ncols as usize * nrows as usize);
    let weight = Weight::upload(gpu, what, GgmlType::Q4_0, ncols.into(), nrows.into(), &bytes)
        .expect("the weight fits");
    (weight, bytes.len())
}

/// A Q4_0 stack of matrices of `rows` rows of `ncols` each, and its bytes.
fn q4_0_stack(gpu: &Gpu, ncols: u32, rows: &[u32]) -> (Weight, Vec<Weight>, usize) {
    let bytes: Vec<Vec<u8>> = rows.iter().map(|&r| q4_0(ncols as usize * r as usize)).collect();
    let matrices: Vec<(u64, &[u8])> =
        rows.iter().zip(&bytes).map(|(&r, bytes)| (u64::from(r), &bytes[..])).collect();
    let (whole, views) =
        Weight::upload_stack(gpu, "stack", GgmlType::Q4_0, ncols.into(), &matrices, u64::MAX)
            .expect("the stack uploads")
            .expect("the stack fits");
    (whole, views, bytes.iter().map(Vec::len).sum())
}

/// Kernels that only read a buffer, as fast as the memory lets them: the ceiling the
/// products' rates compare with. Each invocation reads every `threads`-th element, so
/// neighbours read neighbouring words; the sum is stored only if it is a value it
/// cannot be, so the reads are not optimized away.
const READ_ONLY: &str = r"
@group(0) @binding(0) var<storage, read> words: array<u32>;
@group(0) @binding(1) var<storage, read> quads: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(256)
fn read_words(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    var acc = 0u;
    for (var i = gid.x; i < arrayLength(&words); i += n.x * 256u) {
        acc ^= words[i];
    }
    if (acc == 0x12345678u) {
        out[gid.x] = acc;
    }
}

@compute @workgroup_size(256)
fn read_quads(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    var acc = vec4<u32>(0u);
    for (var i = gid.x; i < arrayLength(&quads); i += n.x * 256u) {
        acc ^= quads[i];
    }
    if (all(acc == vec4<u32>(0x12345678u))) {
        out[gid.x] = acc.x;
    }
}
";

/// How long the reads run before they are timed.
const WARM_UP: Duration = Duration::from_secs(2);

/// GB/s of reading a 512 MiB buffer (or as much as one binding holds) by 4-byte and by
/// 16-byte loads, timed by the wall clock over ten passes in one submission after
/// [`WARM_UP`] of the same.
fn read_rates(gpu: &Gpu) -> [f64; 2] {
    const PASSES: u32 = 10;
    const GROUPS: u32 = 8192;
    let bytes = (512 << 20).min(gpu.limits.max_storage_buffer_binding_size) & !15;
    let data = gpu.storage("read rate", bytes);
    let out = gpu.storage("read rate out", u64::from(GROUPS) * 256 * 4);
    let module = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("read only"),
        source: wgpu::ShaderSource::Wgsl(READ_ONLY.into()),
    });
    [("read_words", 0), ("read_quads", 1)].map(|(entry, binding)| {
        let pipeline = gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        // A layout made from the entry point holds only the bindings it uses.
        let group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry { binding, resource: data.buffer.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: out.buffer.as_entire_binding() },
            ],
        });
        let run = |passes: u32| {
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &group, &[]);
                for _ in 0..passes {
                    pass.dispatch_workgroups(GROUPS, 1, 1);
                }
            }
            gpu.queue.submit([encoder.finish()]);
            wait(gpu);
        };
        // The lent H100s read at less than half their rate for the first second or so
        // of work (docs/BENCHMARKS.md, 2026-12-06): these reads come first, so they warm
        // the GPU up for everything after them.
        let warming = Instant::now();
        while warming.elapsed() < WARM_UP {
            run(PASSES);
        }
        let start = Instant::now();
        run(PASSES);
        (bytes * u64::from(PASSES)) as f64 / start.elapsed().as_secs_f64() / 1e9
    })
}

fn main() {
    let gpu = Gpu::new().expect("a wgpu adapter");
    let shapes: Vec<MatvecShape> = std::env::args()
        .skip(1)
        .map(|shape| MatvecShape::parse(&shape).unwrap_or_else(|error| panic!("{error}")))
        .collect();
    let shapes = if shapes.is_empty() { vec![gpu.matvec] } else { shapes };
    let kernels = Kernels::new(&gpu, gpu.plan);
    println!("{} ({:?}), {}", gpu.info.name, gpu.info.backend, gpu.plan);
    let [words, quads] = read_rates(&gpu);
    println!(
        "reading memory alone: {words:.0} GB/s by 4-byte loads, {quads:.0} GB/s by 16-byte loads"
    );
    let clock = if gpu.profiler.is_some() { "GPU timestamps" } else { "wall clock" };
    println!("times by {clock}");
    let tokens = kernels.batch_tokens();
    let weights: Vec<_> =
        SHAPES.iter().map(|&(ncols, nrows, what)| q4_0_weight(&gpu, what, ncols, nrows)).collect();
    let x = zeros(&gpu, "x", 14336 * tokens);
    let y = zeros(&gpu, "y", (14336 * tokens).max(128_256));
    let y_more = [zeros(&gpu, "y", 14336), zeros(&gpu, "y", 14336)];
    // An 8B layer's Q, K and V (4096, 1024 and 1024 rows of 4096) and its gate and up
    // projections (14336 rows each).
    let (qkv, qkv_views, qkv_bytes) = q4_0_stack(&gpu, 4096, &[4096, 1024, 1024]);
    let (gate_up, gate_up_views, gate_up_bytes) = q4_0_stack(&gpu, 4096, &[14336, 14336]);
    for shape in &shapes {
        let kernels = Kernels::with_matvec(&gpu, gpu.plan, *shape);
        for (&(ncols, nrows, what), (weight, bytes)) in SHAPES.iter().zip(&weights) {
            let (x, y) = (View::new(&x.buffer, 0, ncols), View::new(&y.buffer, 0, nrows));
            let decode = seconds_each(&gpu, &kernels, REPEATS, |batch| {
                batch.matmul(weight, x, y, 1, false, 1.0);
            });
            println!(
                "decode {shape:<16} {what:>11} Q4_0 {ncols}×{nrows}: {:8.1} µs, {:7.2} GB/s",
                decode * 1e6,
                *bytes as f64 / decode / 1e9,
            );
        }
        for ty in OTHER_TYPES {
            for &(ncols, nrows, what) in &SHAPES[3..5] {
                let bytes = varied(ty, ncols as usize * nrows as usize);
                let weight = Weight::upload(&gpu, what, ty, ncols.into(), nrows.into(), &bytes)
                    .expect("the weight fits");
                let (x, y) = (View::new(&x.buffer, 0, ncols), View::new(&y.buffer, 0, nrows));
                let decode = seconds_each(&gpu, &kernels, REPEATS, |batch| {
                    batch.matmul(&weight, x, y, 1, false, 1.0);
                });
                println!(
                    "decode {shape:<16} {what:>11} {ty:<4} {ncols}×{nrows}: {:8.1} µs, {:7.2} GB/s",
                    decode * 1e6,
                    bytes.len() as f64 / decode / 1e9,
                );
            }
        }
        // The 8B layer's Q, K and V and its gate and up projections, apart and fused.
        let x = View::new(&x.buffer, 0, 4096);
        let outputs = [&y, &y_more[0], &y_more[1]].map(|y| View::new(&y.buffer, 0, 4096));
        let apart = seconds_each(&gpu, &kernels, REPEATS, |batch| {
            for (view, y) in qkv_views.iter().zip(outputs) {
                batch.matmul(view, x, y, 1, false, 1.0);
            }
        });
        let split: Vec<(u32, View<'_>)> = [4096, 1024, 1024].into_iter().zip(outputs).collect();
        let fused = seconds_each(&gpu, &kernels, REPEATS, |batch| {
            batch.matmul_split(&qkv, x, &split, 1);
        });
        let gate = View::new(&y.buffer, 0, 14336);
        let gated_apart = seconds_each(&gpu, &kernels, REPEATS, |batch| {
            batch.matmul(&gate_up_views[0], x, gate, 1, false, 1.0);
            batch.matmul_gated(&gate_up_views[1], x, gate, 1, Activation::Silu);
        });
        let paired = kernels.pair(1).then(|| {
            seconds_each(&gpu, &kernels, REPEATS, |batch| {
                batch.matmul_paired(&gate_up, x, gate, 1, Activation::Silu);
            })
        });
        let rate = |bytes: usize, seconds: f64| bytes as f64 / seconds / 1e9;
        println!(
            "decode {shape:<16}  8B q,k,v apart {:8.1} µs, {:7.2} GB/s; as one {:8.1} µs, {:7.2} GB/s",
            apart * 1e6,
            rate(qkv_bytes, apart),
            fused * 1e6,
            rate(qkv_bytes, fused),
        );
        let paired = paired.map_or("(odd rows: not paired)".to_owned(), |paired| {
            format!("{:8.1} µs, {:7.2} GB/s", paired * 1e6, rate(gate_up_bytes, paired))
        });
        println!(
            "decode {shape:<16}  8B gate,up apart {:8.1} µs, {:7.2} GB/s; paired {paired}",
            gated_apart * 1e6,
            rate(gate_up_bytes, gated_apart),
        );
    }
    // A prompt computes the logits of its last token alone: no output matrix here.
    let matrix_rows = match gpu.plan {
        KernelPlan::Gpu { matrices: true, .. } => vec![Some(64), Some(128), Some(256)],
        _ => vec![None],
    };
    for rows in matrix_rows {
        let kernels = Kernels::with_shapes(&gpu, gpu.plan, gpu.matvec, rows);
        let tile = rows.map_or(String::new(), |rows| format!("tile of {rows} rows"));
        for (&(ncols, nrows, what), (weight, _)) in SHAPES.iter().zip(&weights).take(5) {
            let (x, y) = (View::new(&x.buffer, 0, ncols), View::new(&y.buffer, 0, nrows));
            let prompt = seconds_each(&gpu, &kernels, REPEATS / 4, |batch| {
                batch.matmul(weight, x, y, tokens, false, 1.0);
            });
            let flops = 2.0 * f64::from(ncols) * f64::from(nrows) * f64::from(tokens);
            println!(
                "prompt {tile:>16} {what:>11} Q4_0 {ncols}×{nrows}: {tokens} tokens {:8.1} µs, {:7.3} TFLOP/s",
                prompt * 1e6,
                flops / prompt / 1e12,
            );
        }
    }
    // A dispatch too small to take time of its own: what launching one costs, in a
    // long submission and in a submission of its own.
    let row = zeros(&gpu, "row", 64);
    let norm = zeros(&gpu, "norm weight", 64);
    let out = zeros(&gpu, "out", 64);
    let (row, out) = (View::new(&row.buffer, 0, 64), View::new(&out.buffer, 0, 64));
    let (wall, profile) = timed(&gpu, &kernels, 400, |batch| {
        batch.rmsnorm(row, &norm.buffer, out, 1, 64, 1e-5, false);
    });
    let start = Instant::now();
    for _ in 0..50 {
        let mut batch = Batch::new(&gpu, &kernels);
        batch.rmsnorm(row, &norm.buffer, out, 1, 64, 1e-5, false);
        batch.submit();
        wait(&gpu);
    }
    let submission = start.elapsed().as_secs_f64() / 50.0;
    println!(
        "a small dispatch among 400: {:.1} µs; a submission of one, waited for: {:.1} µs (wall)",
        wall / 400.0 * 1e6,
        submission * 1e6
    );
    if let Some(totals) = profile {
        println!(
            "a small dispatch among 400 by GPU timestamps: {:.1} µs running, {:.1} µs between dispatches",
            totals.busy_ns / 400.0 / 1e3,
            (totals.span_ns - totals.busy_ns) / 400.0 / 1e3,
        );
    }
}
