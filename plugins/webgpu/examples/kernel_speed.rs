//! How fast the WebGPU kernels run on this machine's adapter, kernel by kernel: the
//! decode product's rate of reading weights of real model shapes, the prompt product's
//! arithmetic rate on a 32-token chunk, and what a dispatch and a submission cost. It
//! prints figures and asserts nothing: `hearth bench` gives the whole model's speed,
//! this says where it goes.
//!
//! ```text
//! cargo run --release --example kernel_speed     # HEARTH_WEBGPU_KERNELS picks the plan
//! ```

use std::time::Instant;

use half::f16;
use hearth_sdk::helpers::GgmlType;
use hearth_webgpu::device::{Gpu, GpuBuffer};
use hearth_webgpu::kernels::{Batch, Kernels, View, Weight};

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
/// submission to warm up.
fn seconds_each<'a>(
    gpu: &'a Gpu,
    kernels: &'a Kernels,
    repeats: usize,
    record: impl Fn(&mut Batch<'a>),
) -> f64 {
    let mut warm_up = Batch::new(gpu, kernels);
    record(&mut warm_up);
    warm_up.submit();
    wait(gpu);
    let start = Instant::now();
    let mut batch = Batch::new(gpu, kernels);
    for _ in 0..repeats {
        record(&mut batch);
    }
    batch.submit();
    wait(gpu);
    start.elapsed().as_secs_f64() / repeats as f64
}

fn zeros(gpu: &Gpu, label: &str, floats: u32) -> GpuBuffer {
    gpu.storage(label, u64::from(floats) * 4)
}

fn main() {
    let gpu = Gpu::new().expect("a wgpu adapter");
    let kernels = Kernels::new(&gpu, gpu.plan);
    println!("{} ({:?}), {}", gpu.info.name, gpu.info.backend, gpu.plan);
    let tokens = 32;
    for (ncols, nrows, what) in SHAPES {
        let bytes = q4_0(ncols as usize * nrows as usize);
        let weight = Weight::upload(&gpu, what, GgmlType::Q4_0, ncols.into(), nrows.into(), &bytes)
            .expect("the weight fits");
        let x = zeros(&gpu, "x", ncols * tokens);
        let y = zeros(&gpu, "y", nrows * tokens);
        let (x, y) = (View::new(&x.buffer, 0, ncols), View::new(&y.buffer, 0, nrows));
        let decode = seconds_each(&gpu, &kernels, REPEATS, |batch| {
            batch.matmul(&weight, x, y, 1, false, 1.0);
        });
        let prompt = seconds_each(&gpu, &kernels, REPEATS / 4, |batch| {
            batch.matmul(&weight, x, y, tokens, false, 1.0);
        });
        let flops = 2.0 * f64::from(ncols) * f64::from(nrows) * f64::from(tokens);
        println!(
            "{what:>11} Q4_0 {ncols}×{nrows}: one token {:7.1} µs, {:7.2} GB/s of weights; {tokens} tokens {:8.1} µs, {:7.3} TFLOP/s",
            decode * 1e6,
            bytes.len() as f64 / decode / 1e9,
            prompt * 1e6,
            flops / prompt / 1e12,
        );
    }
    // A dispatch too small to take time of its own: what launching one costs, in a
    // long submission and in a submission of its own.
    let row = zeros(&gpu, "row", 64);
    let norm = zeros(&gpu, "norm weight", 64);
    let out = zeros(&gpu, "out", 64);
    let (row, out) = (View::new(&row.buffer, 0, 64), View::new(&out.buffer, 0, 64));
    let dispatch = seconds_each(&gpu, &kernels, 400, |batch| {
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
        "a small dispatch among 400: {:.1} µs; a submission of one, waited for: {:.1} µs",
        dispatch * 1e6,
        submission * 1e6
    );
}
