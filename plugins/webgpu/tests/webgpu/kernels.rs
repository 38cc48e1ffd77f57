//! Each WGSL kernel against its CPU reference on fresh random inputs (the seed is
//! printed; `HEARTH_TEST_SEED` replays one), with every output buffer poisoned with NaN
//! beforehand so a skipped write
//! shows. Errors are normwise: max |gpu − cpu| / max |cpu| must stay under the bound
//! stated in each test (f32 on the GPU against f64 accumulation on the CPU).

use half::{bf16, f16};
use hearth_sdk::helpers::{dequantize, CandidateSampling, GgmlType, LogitAdjustments};
use hearth_sdk::LogitBias;
use hearth_webgpu::batch::{adjustment_entries, Batch, Rotation, View};
use hearth_webgpu::device::{Gpu, GpuBuffer};
use hearth_webgpu::kernels::{
    argmax_parts, top_k_parts, Kernels, Weight, SUPPORTED_TYPES, TOP_K_MAX,
};
use hearth_webgpu::plan::{KernelPlan, MatvecInput, MatvecShape};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use hearth_backend_check::reference;
use hearth_model::{Activation, RopePairs};

pub(crate) struct Bench {
    pub(crate) gpu: Gpu,
    kernels: Kernels,
    rng: ChaCha8Rng,
}

pub(crate) fn bench() -> Bench {
    let seed = match std::env::var("HEARTH_TEST_SEED") {
        Ok(seed) => seed.parse().expect("HEARTH_TEST_SEED is a number"),
        Err(_) => {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                as u64
        }
    };
    println!("random seed {seed}");
    let gpu = Gpu::new().expect("a wgpu adapter (install mesa-vulkan-drivers for lavapipe)");
    let kernels = Kernels::new(&gpu, gpu.plan);
    Bench { gpu, kernels, rng: ChaCha8Rng::seed_from_u64(seed) }
}

impl Bench {
    fn uniform(&mut self) -> f32 {
        (self.rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
    }
    pub(crate) fn values(&mut self, count: usize) -> Vec<f32> {
        (0..count).map(|_| self.uniform()).collect()
    }
    pub(crate) fn buffer(&self, values: &[f32]) -> GpuBuffer {
        self.gpu.upload("input", bytemuck::cast_slice(values))
    }
    pub(crate) fn poisoned(&self, count: usize) -> GpuBuffer {
        self.buffer(&vec![f32::NAN; count])
    }
    pub(crate) fn read(&self, buffer: &GpuBuffer, count: usize) -> Vec<f32> {
        self.gpu.read_f32(&buffer.buffer, 0, count).unwrap()
    }

    /// Random bytes of a valid tensor of `ty`: small f16 scales, arbitrary quants.
    pub(crate) fn weight_bytes(&mut self, ty: GgmlType, elements: usize) -> Vec<u8> {
        let (block, block_bytes) = ty.block();
        let blocks = elements / block as usize;
        let mut bytes = Vec::with_capacity(blocks * block_bytes as usize);
        for _ in 0..blocks {
            match ty {
                GgmlType::F32 => bytes.extend(self.uniform().to_le_bytes()),
                GgmlType::F16 => bytes.extend(f16::from_f32(self.uniform()).to_le_bytes()),
                GgmlType::Bf16 => bytes.extend(bf16::from_f32(self.uniform()).to_le_bytes()),
                _ => {
                    let mut block: Vec<u8> =
                        (0..block_bytes).map(|_| self.rng.next_u32() as u8).collect();
                    for &at in scale_offsets(ty) {
                        let scale = f16::from_f32(self.uniform() * 0.1);
                        block[at..at + 2].copy_from_slice(&scale.to_le_bytes());
                    }
                    bytes.extend(block);
                }
            }
        }
        bytes
    }
}

/// Byte offsets of a block's f16 scales (the rest of the block is quants).
fn scale_offsets(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4K | GgmlType::Q5K => &[0, 2],
        GgmlType::Q6K => &[208],
        _ => &[],
    }
}

pub(crate) fn relative_error(gpu: &[f32], cpu: &[f32]) -> f32 {
    assert_eq!(gpu.len(), cpu.len());
    assert!(
        gpu.iter().all(|v| v.is_finite()),
        "the GPU left poisoned or non-finite values: {gpu:?}"
    );
    let scale = cpu.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    gpu.iter().zip(cpu).fold(0.0f32, |m, (g, c)| m.max((g - c).abs())) / scale
}

#[test]
fn matmul_of_every_weight_type_split_plan_and_output_matches_the_cpu_within_the_plan_s_tolerance() {
    let mut b = bench();
    // Rows of three K-quant super-blocks: Q6_K's 210-byte blocks then leave every other
    // row and block unaligned to 4 bytes. 70 rows leave the GPU plan's last tile of 64
    // rows part empty; 1 and 3 tokens take its matrix–vector kernel, 11 and 70 its
    // tiled one (70: over two tiles of 32, and over one of the cooperative-matrix
    // kernel's 128).
    let (rows, ncols) = (70usize, 768usize);
    let plans = KernelPlan::every(b.gpu.offers());
    println!("kernel plans: {plans:?}");
    // Every plan with the default decode shape, and each GPU plan with each input of the
    // decode product (f32, or quantized to 8 bits in one part or two).
    let default = MatvecShape::default();
    let mut sets = Vec::new();
    for &plan in &plans {
        let shapes = match plan {
            KernelPlan::Software => vec![default],
            KernelPlan::Gpu { .. } => [MatvecInput::F32, MatvecInput::Q8, MatvecInput::Q16]
                .map(|input| MatvecShape { input, ..default })
                .to_vec(),
        };
        for shape in shapes {
            let kernels = Kernels::with_matvec(&b.gpu, plan, shape);
            sets.push((format!("{plan}, decode {shape}"), kernels, plan.tolerance_with(shape)));
        }
    }
    for ty in SUPPORTED_TYPES {
        let bytes = b.weight_bytes(ty, rows * ncols);
        let mut w = vec![0.0; rows * ncols];
        dequantize(ty, &bytes, &mut w).unwrap();
        let row_bytes = bytes.len() / rows;
        // Parts of 16 rows, so the split across buffers is exercised too.
        let weight = Weight::upload_in_parts(
            &b.gpu,
            "w",
            ty,
            [ncols as u64, rows as u64],
            &bytes,
            16 * row_bytes as u64,
        )
        .unwrap();
        assert_eq!(weight.parts.len(), 5);
        for ntok in [1usize, 3, 11, 70] {
            // x rows sit at offset 8 with a stride of ncols + 4, to test views.
            let stride = ncols + 4;
            let x_values = b.values(8 + ntok * stride);
            let x = b.buffer(&x_values);
            let x_view = View::new(&x.buffer, 8, stride as u32);
            let dense: Vec<f32> =
                (0..ntok).flat_map(|t| x_values[8 + t * stride..][..ncols].to_vec()).collect();
            let expected = reference::matmul(&w, ncols, &dense, ntok);
            let base = b.values(ntok * rows);
            // Accumulating with a scale: y = base + 0.5 · W·x.
            let accumulated: Vec<f32> =
                base.iter().zip(&expected).map(|(a, e)| a + 0.5 * e).collect();
            for (plan, kernels, tolerance) in &sets {
                let tolerance = *tolerance;
                let y = b.poisoned(ntok * rows);
                let mut batch = Batch::new(&b.gpu, kernels);
                let y_view = View::new(&y.buffer, 0, rows as u32);
                batch.matmul(&weight, x_view, y_view, ntok as u32, false, 1.0);
                batch.submit();
                let error = relative_error(&b.read(&y, ntok * rows), &expected);
                assert!(error < tolerance, "{ty}, {plan}, {ntok} tokens: relative error {error}");

                let y = b.buffer(&base);
                let mut batch = Batch::new(&b.gpu, kernels);
                let y_view = View::new(&y.buffer, 0, rows as u32);
                batch.matmul(&weight, x_view, y_view, ntok as u32, true, 0.5);
                batch.submit();
                let error = relative_error(&b.read(&y, ntok * rows), &accumulated);
                assert!(
                    error < tolerance,
                    "{ty}, {plan}, {ntok} tokens, accumulating: relative error {error}"
                );

                // As a gated feed-forward's up projection over the gate's values in y.
                for activation in [Activation::Silu, Activation::GeluTanh] {
                    let y = b.buffer(&base);
                    let mut batch = Batch::new(&b.gpu, kernels);
                    let y_view = View::new(&y.buffer, 0, rows as u32);
                    batch.matmul_gated(&weight, x_view, y_view, ntok as u32, activation);
                    batch.submit();
                    let gated = reference::gated(activation, &base, &expected);
                    let error = relative_error(&b.read(&y, ntok * rows), &gated);
                    assert!(
                        error < tolerance,
                        "{ty}, {plan}, {ntok} tokens, gated {activation:?}: relative error {error}"
                    );
                }
            }
        }
    }
}

/// The logits' product (one token through the output matrix) takes the decode
/// product's input, so with f32 input it is as close to the CPU as an f32 product and
/// with 8-bit input as close as 8-bit input allows; 70 more rows than a multiple of
/// eight leave its last workgroup part empty.
#[test]
fn the_logits_product_matches_the_cpu_within_its_input_s_tolerance_on_every_plan() {
    let mut b = bench();
    let (rows, ncols) = (4096 + 70, 256usize);
    for ty in [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q6K] {
        let bytes = b.weight_bytes(ty, rows * ncols);
        let mut w = vec![0.0; rows * ncols];
        dequantize(ty, &bytes, &mut w).unwrap();
        let weight = Weight::upload(&b.gpu, "w", ty, ncols as u64, rows as u64, &bytes).unwrap();
        let x_values = b.values(ncols);
        let x = b.buffer(&x_values);
        let expected = reference::matmul(&w, ncols, &x_values, 1);
        for plan in KernelPlan::every(b.gpu.offers()) {
            for input in [MatvecInput::F32, MatvecInput::Q8, MatvecInput::Q16] {
                let shape = MatvecShape { input, ..MatvecShape::default() };
                let kernels = Kernels::with_matvec(&b.gpu, plan, shape);
                let y = b.poisoned(rows);
                let mut batch = Batch::new(&b.gpu, &kernels);
                let (x_view, y_view) =
                    (View::new(&x.buffer, 0, ncols as u32), View::new(&y.buffer, 0, rows as u32));
                batch.logits(&weight, x_view, y_view);
                batch.submit();
                let error = relative_error(&b.read(&y, rows), &expected);
                let tolerance = match plan {
                    KernelPlan::Software => plan.tolerance(),
                    KernelPlan::Gpu { .. } => input.tolerance(),
                };
                assert!(error < tolerance, "{ty}, {plan}, {shape}: relative error {error}");
            }
        }
    }
}

/// A product large enough to fill the GPU with them takes the cooperative-matrix
/// prompt product's tiles of 256 rows where the device has them (kernels.rs), alone
/// and paired: 16 400 rows make 65 of them, the last part empty, and 140 tokens two
/// tiles of tokens, the second part empty.
#[test]
fn a_tall_matrix_s_prompt_product_alone_and_paired_matches_the_cpu_on_every_plan() {
    let mut b = bench();
    let (rows, ncols, ntok) = (16_400usize, 256usize, 140usize);
    for ty in [GgmlType::Q4_0, GgmlType::Q6K] {
        let bytes = b.weight_bytes(ty, rows * ncols);
        let mut w = vec![0.0; rows * ncols];
        dequantize(ty, &bytes, &mut w).unwrap();
        let weight = Weight::upload(&b.gpu, "w", ty, ncols as u64, rows as u64, &bytes).unwrap();
        let x_values = b.values(ntok * ncols);
        let x = b.buffer(&x_values);
        let expected = reference::matmul(&w, ncols, &x_values, ntok);
        // The paired product's gate rows are the first half, its up rows the second.
        let half = rows / 2;
        let (gate, up): (Vec<f32>, Vec<f32>) = (0..ntok)
            .flat_map(|t| (0..half).map(move |r| (t, r)))
            .map(|(t, r)| (expected[t * rows + r], expected[t * rows + half + r]))
            .unzip();
        let paired = reference::gated(Activation::Silu, &gate, &up);
        for plan in KernelPlan::every(b.gpu.offers()) {
            let kernels = Kernels::new(&b.gpu, plan);
            let x_view = View::new(&x.buffer, 0, ncols as u32);
            let y = b.poisoned(ntok * rows);
            let mut batch = Batch::new(&b.gpu, &kernels);
            batch.matmul(
                &weight,
                x_view,
                View::new(&y.buffer, 0, rows as u32),
                ntok as u32,
                false,
                1.0,
            );
            batch.submit();
            let error = relative_error(&b.read(&y, ntok * rows), &expected);
            assert!(error < plan.tolerance(), "{ty}, {plan}: relative error {error}");
            if !kernels.pair(ntok as u32) {
                continue;
            }
            let y = b.poisoned(ntok * half);
            let mut batch = Batch::new(&b.gpu, &kernels);
            let y_view = View::new(&y.buffer, 0, half as u32);
            batch.matmul_paired(&weight, x_view, y_view, ntok as u32, Activation::Silu);
            batch.submit();
            let error = relative_error(&b.read(&y, ntok * half), &paired);
            assert!(error < plan.tolerance(), "{ty}, {plan}, paired: relative error {error}");
        }
    }
}

/// Greedy decoding's argmax on the device: the first of equal largest logits, across
/// the first pass's parts, and a sum that is not finite where a logit is not.
#[test]
fn greedy_picks_the_first_of_the_largest_logits_and_sums_them() {
    let mut b = bench();
    let n = 3 * 4096 + 77;
    let parts = b.gpu.storage("parts", u64::from(argmax_parts(n)) * 16);
    let total = b.gpu.storage("total", 16);
    let mut logits = b.values(n as usize);
    // Two equal largest values in different parts: the first is the pick.
    logits[5000] = 7.5;
    logits[9000] = 7.5;
    let pick = |logits: &[f32]| {
        let buffer = b.buffer(logits);
        let kernels = Kernels::new(&b.gpu, KernelPlan::Software);
        let mut batch = Batch::new(&b.gpu, &kernels);
        batch.argmax(&buffer.buffer, n, &parts.buffer, &total.buffer);
        batch.submit();
        let read = b.read(&total, 3);
        (read[0], read[1].to_bits(), read[2])
    };
    let (largest, index, sum) = pick(&logits);
    assert_eq!((largest, index), (7.5, 5000));
    let expected: f32 = logits.iter().sum();
    assert!((sum - expected).abs() < 1e-3 * expected.abs().max(1.0), "{sum} against {expected}");
    logits[n as usize - 1] = 9.0;
    assert_eq!(pick(&logits).1, n - 1, "the very last logit is read");
    logits[12] = f32::NAN;
    assert!(!pick(&logits).2.is_finite(), "a NaN logit makes the sum not finite");
}

/// The kernels of the first GPU plan the adapter offers, where top-k and sampling run;
/// `None`, said, where it offers none.
fn gpu_plan_kernels(b: &Bench) -> Option<Kernels> {
    let plans = KernelPlan::every(b.gpu.offers());
    let plan = plans.into_iter().find(|&plan| plan != KernelPlan::Software);
    if plan.is_none() {
        println!("no GPU plan on this adapter");
    }
    plan.map(|plan| Kernels::new(&b.gpu, plan))
}

/// On a GPU plan, over vocabularies of one part, several parts and enough parts that
/// the total pass sorts their candidates three times.
#[test]
fn top_k_on_the_device_finds_the_largest_logits_in_order_and_sums_them() {
    let mut b = bench();
    let Some(kernels) = gpu_plan_kernels(&b) else { return };
    let k = TOP_K_MAX as usize;
    for n in [100u32, 2048, 3 * 4096 + 77, 151_936] {
        let pairs = |parts: u32| u64::from(parts * (TOP_K_MAX + 1)) * 8;
        let parts = b.gpu.storage("parts", pairs(top_k_parts(n)));
        let total = b.gpu.storage("total", pairs(1));
        let mut logits = b.values(n as usize);
        // Equal largest values in different parts rank by index; the last logit counts.
        logits[1] = 5.0;
        logits[n as usize / 2 + 1] = 5.0;
        logits[n as usize - 1] = 4.0;
        let find = |logits: &[f32]| {
            let buffer = b.buffer(logits);
            let mut batch = Batch::new(&b.gpu, &kernels);
            batch.top_k(&buffer.buffer, n, &parts.buffer, &total.buffer);
            batch.submit();
            let read = b.read(&total, 2 * (k + 1));
            let found: Vec<(u32, f32)> =
                read.chunks(2).take(k.min(n as usize)).map(|p| (p[1].to_bits(), p[0])).collect();
            (found, read[2 * k])
        };
        let (found, sum) = find(&logits);
        let mut expected: Vec<(u32, f32)> =
            logits.iter().enumerate().map(|(id, &l)| (id as u32, l)).collect();
        expected.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        expected.truncate(k);
        assert_eq!(found, expected, "{n} logits");
        let exact: f32 = logits.iter().sum();
        assert!((sum - exact).abs() < 1e-3 * exact.abs().max(1.0), "{n}: {sum} against {exact}");
        logits[7] = f32::NAN;
        let (found, sum) = find(&logits);
        assert!(!sum.is_finite(), "{n}: a NaN logit makes the sum not finite");
        assert!(found.iter().all(|&(id, _)| id != 7), "{n}: a NaN is no candidate");
    }
}

/// On a GPU plan, llama-server's default sampling and its corners (a top-p or min-p
/// that keeps one candidate, a top-k past a small vocabulary's end, a low and a high
/// temperature): the device picks what the host's sampler picks from the same
/// candidates with the same draws.
#[test]
fn tokens_sampled_on_the_device_are_those_the_host_s_sampler_picks_from_the_same_draws() {
    let mut b = bench();
    let Some(kernels) = gpu_plan_kernels(&b) else { return };
    let default = CandidateSampling { top_k: 40, top_p: 0.95, min_p: 0.05, temperature: 0.8 };
    let settings = [
        default,
        CandidateSampling { top_k: TOP_K_MAX, top_p: 1.0, min_p: 0.0, temperature: 1.5 },
        CandidateSampling { top_k: 10, top_p: 0.01, ..default },
        CandidateSampling { top_k: 10, top_p: 1.0, min_p: 0.99, temperature: 0.3 },
        CandidateSampling { top_k: 1, ..default },
    ];
    let pairs = |parts: u32| u64::from(parts * (TOP_K_MAX + 1)) * 8;
    for n in [30u32, 49_152] {
        let parts = b.gpu.storage("parts", pairs(top_k_parts(n)));
        let candidates = b.gpu.storage("candidates", pairs(1));
        let pick = b.poisoned(4);
        // Logits spread as a model's are: a few likely tokens, many unlikely ones.
        let logits: Vec<f32> = b.values(n as usize).iter().map(|v| v * 8.0).collect();
        let logits = b.buffer(&logits);
        for sampling in settings {
            let mut picked_on_device = Vec::new();
            let mut picked_on_host = Vec::new();
            for step in 0..32 {
                let draw = (step as f32 + 0.5) / 32.0;
                let mut batch = Batch::new(&b.gpu, &kernels);
                batch.top_k(&logits.buffer, n, &parts.buffer, &candidates.buffer);
                batch.sample(&candidates.buffer, n, &sampling, draw, &pick.buffer);
                batch.submit();
                let found: Vec<(u32, f32)> = b
                    .read(&candidates, 2 * TOP_K_MAX as usize)
                    .chunks(2)
                    .map(|pair| (pair[1].to_bits(), pair[0]))
                    .filter(|&(token, _)| token < n)
                    .collect();
                picked_on_device.push(b.read(&pick, 2)[1].to_bits());
                picked_on_host.push(sampling.pick(&found, draw));
            }
            assert_eq!(picked_on_device, picked_on_host, "{n} logits, {sampling:?}");
            let kinds = picked_on_host.iter().collect::<std::collections::HashSet<_>>().len();
            println!("{n} logits, {sampling:?}: {kinds} different tokens in 32 draws");
        }
    }
}

/// On a GPU plan, a logit bias (a token biased twice, one banned, one past the
/// vocabulary) and the repeat, frequency and presence penalties over a window of
/// repeated tokens (some biased too): the device's adjusted logits are the host's
/// (`LogitAdjustments::apply`), the repeat penalty's division within an ulp or two.
#[test]
fn logits_adjusted_on_the_device_are_those_the_host_s_sampler_adjusts() {
    let mut b = bench();
    let Some(kernels) = gpu_plan_kernels(&b) else { return };
    for n in [30u32, 49_152] {
        let logits: Vec<f32> = b.values(n as usize).iter().map(|v| v * 8.0).collect();
        let mut seen: Vec<(u32, u32)> = (0..200).map(|i| (i * 7 % n, 1 + i % 5)).collect();
        seen.sort_unstable();
        seen.dedup_by_key(|&mut (token, _)| token);
        seen.push((n + 3, 2));
        let adjustments = LogitAdjustments {
            bias: vec![
                LogitBias { token: 7, bias: 2.5 },
                LogitBias { token: 7, bias: -0.75 },
                LogitBias { token: 3, bias: -100.0 },
                LogitBias { token: n, bias: 4.0 },
            ],
            seen,
            repeat: 1.3,
            frequency: 0.25,
            presence: 0.4,
        };
        let buffer = b.buffer(&logits);
        let entries =
            b.gpu.upload("entries", bytemuck::cast_slice(&adjustment_entries(&adjustments)));
        let mut batch = Batch::new(&b.gpu, &kernels);
        batch.adjust(&buffer.buffer, n, &adjustments, &entries.buffer);
        batch.submit();
        let on_device = b.read(&buffer, n as usize);
        let mut on_host = logits.clone();
        adjustments.apply(&mut on_host);
        let adjusted: std::collections::HashSet<u32> = adjustments
            .seen
            .iter()
            .map(|&(token, _)| token)
            .chain(adjustments.bias.iter().map(|bias| bias.token))
            .filter(|&token| token < n)
            .collect();
        let changed = on_host.iter().zip(&logits).filter(|(a, b)| a != b).count();
        assert_eq!(changed, adjusted.len(), "every token listed in the vocabulary, no other");
        for (token, (device, host)) in on_device.iter().zip(&on_host).enumerate() {
            assert!(
                (device - host).abs() <= 2.0 * f32::EPSILON * host.abs(),
                "{n} logits, token {token}: device {device}, host {host}"
            );
        }
    }
}

#[test]
fn embedding_rows_of_every_weight_type_are_exact() {
    let mut b = bench();
    let (rows, ncols) = (40usize, 768usize);
    for ty in SUPPORTED_TYPES {
        let bytes = b.weight_bytes(ty, rows * ncols);
        let mut w = vec![0.0; rows * ncols];
        dequantize(ty, &bytes, &mut w).unwrap();
        let weight = Weight::upload_in_parts(
            &b.gpu,
            "w",
            ty,
            [ncols as u64, rows as u64],
            &bytes,
            (bytes.len() / 3) as u64,
        )
        .unwrap();
        let ids: Vec<u32> = (0..7).map(|_| b.rng.next_u32() % rows as u32).collect();
        let id_buffer = b.gpu.upload("ids", bytemuck::cast_slice(&ids));
        let y = b.poisoned(ids.len() * ncols);
        let mut batch = Batch::new(&b.gpu, &b.kernels);
        batch.get_rows(
            &weight,
            &id_buffer.buffer,
            View::new(&y.buffer, 0, ncols as u32),
            ids.len() as u32,
        );
        batch.submit();
        let expected: Vec<f32> =
            ids.iter().flat_map(|&id| w[id as usize * ncols..][..ncols].to_vec()).collect();
        assert_eq!(b.read(&y, ids.len() * ncols), expected, "{ty}");
    }
}

#[test]
fn k_quant_weights_with_rows_not_a_whole_number_of_super_blocks_are_refused() {
    let b = bench();
    let error = Weight::upload(&b.gpu, "w", GgmlType::Q4K, 128, 2, &[0; 144]).err().unwrap();
    assert!(error.to_string().contains("multiple of 256"), "{error}");
}

#[test]
fn rmsnorm_matches_the_cpu_within_1e_5() {
    let mut b = bench();
    let (rows, n) = (5usize, 200usize);
    let (x, w) = (b.values(rows * n), b.values(n));
    let (xb, wb, y) = (b.buffer(&x), b.buffer(&w), b.poisoned(rows * n));
    let mut batch = Batch::new(&b.gpu, &b.kernels);
    batch.rmsnorm(
        View::new(&xb.buffer, 0, n as u32),
        &wb.buffer,
        View::new(&y.buffer, 0, n as u32),
        rows as u32,
        n as u32,
        1e-5,
        false,
    );
    batch.submit();
    let error = relative_error(&b.read(&y, rows * n), &reference::rmsnorm(&x, &w, 1e-5));
    assert!(error < 1e-5, "relative error {error}");
}

/// On a GPU plan with 8-bit decode input, a norm quantizes the rows it writes, so the
/// two products that read them after it need no quantizing pass of their own; once a
/// bias changes those rows, the next product quantizes them again. Every product
/// matches the CPU within the input's tolerance.
#[test]
fn products_of_normed_rows_read_the_norm_s_quantization_until_the_rows_change() {
    let mut b = bench();
    // Rows wider than one round of the norm's loads (4 096 values), in slices of 1 024
    // a workgroup, the last in part.
    let (rows, n, ntok) = (64usize, 4640usize, 3usize);
    let (x, norm_w, bias) = (b.values(ntok * n), b.values(n), b.values(n));
    let bytes = b.weight_bytes(GgmlType::Q4_0, rows * n);
    let mut w = vec![0.0; rows * n];
    dequantize(GgmlType::Q4_0, &bytes, &mut w).unwrap();
    let weight =
        Weight::upload(&b.gpu, "w", GgmlType::Q4_0, n as u64, rows as u64, &bytes).unwrap();
    let normed = reference::rmsnorm(&x, &norm_w, 1e-5);
    let biased: Vec<f32> = normed.iter().enumerate().map(|(i, v)| v + bias[i % n]).collect();
    let expected =
        [reference::matmul(&w, n, &normed, ntok), reference::matmul(&w, n, &biased, ntok)];
    let (xb, norm_wb, bias_b) = (b.buffer(&x), b.buffer(&norm_w), b.buffer(&bias));
    for plan in KernelPlan::every(b.gpu.offers()) {
        if plan == KernelPlan::Software {
            continue;
        }
        for input in [MatvecInput::F32, MatvecInput::Q8, MatvecInput::Q16] {
            let shape = MatvecShape { input, ..MatvecShape::default() };
            let kernels = Kernels::with_matvec(&b.gpu, plan, shape);
            let y = b.poisoned(ntok * n);
            let outputs = [0, 1, 2].map(|_| b.poisoned(ntok * rows));
            let y_view = View::new(&y.buffer, 0, n as u32);
            let out = |i: usize| View::new(&outputs[i].buffer, 0, rows as u32);
            let mut batch = Batch::new(&b.gpu, &kernels);
            batch.rmsnorm(
                View::new(&xb.buffer, 0, n as u32),
                &norm_wb.buffer,
                y_view,
                ntok as u32,
                n as u32,
                1e-5,
                false,
            );
            batch.matmul(&weight, y_view, out(0), ntok as u32, false, 1.0);
            batch.matmul(&weight, y_view, out(1), ntok as u32, false, 1.0);
            assert_eq!(batch.dispatches(), 3, "{plan}, {shape}: a norm and two products alone");
            batch.add_bias(y_view, &bias_b.buffer, ntok as u32, n as u32);
            batch.matmul(&weight, y_view, out(2), ntok as u32, false, 1.0);
            let quantizes = usize::from(input != MatvecInput::F32);
            assert_eq!(
                batch.dispatches(),
                5 + quantizes,
                "{plan}, {shape}: the changed rows quantized again"
            );
            batch.submit();
            let tolerance = plan.tolerance_with(shape);
            for (i, expected) in [&expected[0], &expected[0], &expected[1]].into_iter().enumerate()
            {
                let error = relative_error(&b.read(&outputs[i], ntok * rows), expected);
                assert!(error < tolerance, "{plan}, {shape}, product {i}: relative error {error}");
            }
            let error = relative_error(&b.read(&y, ntok * n), &biased);
            assert!(error < 1e-5, "{plan}, {shape}: the normed rows, relative error {error}");
        }
    }
}

#[test]
fn an_accumulating_rmsnorm_adds_the_normed_rows_to_what_is_there() {
    let mut b = bench();
    let (rows, n) = (3usize, 128usize);
    let (x, w, base) = (b.values(rows * n), b.values(n), b.values(rows * n));
    let (xb, wb, y) = (b.buffer(&x), b.buffer(&w), b.buffer(&base));
    let mut batch = Batch::new(&b.gpu, &b.kernels);
    let (view, y_view) = (View::new(&xb.buffer, 0, n as u32), View::new(&y.buffer, 0, n as u32));
    batch.rmsnorm(view, &wb.buffer, y_view, rows as u32, n as u32, 1e-6, true);
    batch.submit();
    let normed = reference::rmsnorm(&x, &w, 1e-6);
    let expected: Vec<f32> = base.iter().zip(&normed).map(|(a, b)| a + b).collect();
    let error = relative_error(&b.read(&y, rows * n), &expected);
    assert!(error < 1e-5, "relative error {error}");
}

/// Queries and keys are rotated in one dispatch (the keys from an offset, as in the
/// cache), or the queries alone.
#[test]
fn rope_of_queries_and_keys_in_both_pair_layouts_matches_the_cpu_within_1e_4() {
    let mut b = bench();
    let (ntok, heads, kv_heads, hd, pos0, k_off) = (4usize, 3usize, 2usize, 64usize, 37usize, 256);
    for pairs in [RopePairs::Adjacent, RopePairs::Halves] {
        let neox = pairs == RopePairs::Halves;
        let rotation = Rotation {
            head_dim: hd as u32,
            n_rot: hd as u32,
            pos0: pos0 as u32,
            neox,
            freq_base: 1e4,
        };
        let (q, k) = (b.values(ntok * heads * hd), b.values(k_off + ntok * kv_heads * hd));
        let mut expected_q = q.clone();
        reference::rope(&mut expected_q, heads, hd, hd, pos0, pairs, 1e4);
        let mut expected_k = k.clone();
        reference::rope(&mut expected_k[k_off..], kv_heads, hd, hd, pos0, pairs, 1e4);
        for with_keys in [true, false] {
            let (qb, kb) = (b.buffer(&q), b.buffer(&k));
            let mut batch = Batch::new(&b.gpu, &b.kernels);
            let keys = with_keys.then(|| View::new(&kb.buffer, k_off as u32, 0));
            let heads = [heads as u32, kv_heads as u32];
            batch.rope(View::new(&qb.buffer, 0, 0), keys, ntok as u32, heads, rotation);
            batch.submit();
            let error = relative_error(&b.read(&qb, q.len()), &expected_q);
            assert!(error < 1e-4, "neox {neox}, queries: relative error {error}");
            let expected_k = if with_keys { &expected_k } else { &k };
            let error = relative_error(&b.read(&kb, k.len()), expected_k);
            assert!(error < 1e-4, "neox {neox}, keys {with_keys}: relative error {error}");
        }
    }
}

#[test]
fn silu_and_gelu_gating_match_the_cpu_within_1e_6() {
    let mut b = bench();
    for activation in [Activation::Silu, Activation::GeluTanh] {
        let (g, u) = (b.values(1000), b.values(1000));
        let (g, u): (Vec<f32>, Vec<f32>) =
            (g.iter().map(|v| v * 4.0).collect(), u.iter().map(|v| v * 4.0).collect());
        let (gb, ub) = (b.buffer(&g), b.buffer(&u));
        let mut batch = Batch::new(&b.gpu, &b.kernels);
        batch.gated(&gb.buffer, View::new(&ub.buffer, 0, 1000), 1, 1000, activation);
        batch.submit();
        let expected = reference::gated(activation, &g, &u);
        let error = relative_error(&b.read(&gb, 1000), &expected);
        assert!(error < 1e-6, "{activation:?}: relative error {error}");
    }
}

#[test]
fn biases_are_added_to_every_row_and_scaling_multiplies_every_value() {
    let mut b = bench();
    let (rows, n, stride) = (4usize, 96usize, 100usize);
    let (y, bias) = (b.values(rows * stride), b.values(n));
    let (yb, bb) = (b.buffer(&y), b.buffer(&bias));
    let mut batch = Batch::new(&b.gpu, &b.kernels);
    let view = View::new(&yb.buffer, 0, stride as u32);
    batch.add_bias(view, &bb.buffer, rows as u32, n as u32);
    batch.scale_rows(view, rows as u32, n as u32, 2.0);
    batch.submit();
    let expected: Vec<f32> = (0..rows * stride)
        .map(|at| if at % stride < n { (y[at] + bias[at % stride]) * 2.0 } else { y[at] })
        .collect();
    assert_eq!(b.read(&yb, rows * stride), expected);
}
