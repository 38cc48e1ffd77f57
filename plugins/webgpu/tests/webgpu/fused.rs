//! The fused products against the CPU: Q, K and V stacked in one weight and computed by
//! one product into three places, and a gate projection stacked on an up projection
//! computed by one paired product into act(gate) · up, on every kernel plan, every
//! weight type, and decode shapes of every row count.

use hearth_backend_check::reference;
use hearth_model::{Activation, RopePairs};
use hearth_sdk::helpers::{dequantize, GgmlType};
use hearth_webgpu::batch::{Batch, Rotation, View};
use hearth_webgpu::kernels::{Kernels, Weight, SUPPORTED_TYPES};
use hearth_webgpu::plan::{KernelPlan, MatvecInput, MatvecShape};

use crate::kernels::{bench, relative_error, Bench};

/// Columns of three K-quant super-blocks; 1 and 3 tokens take the GPU plan's decode
/// product, 11 and 70 (over one tile of the prompt products) its prompt product.
const NCOLS: usize = 768;
const TOKENS: [usize; 4] = [1, 3, 11, 70];

/// Every plan the device runs, and the GPU plan again with decode products of one,
/// two, three, seven and eight rows a workgroup (the default has four), other widths
/// and both inputs.
fn every_kernel_set(b: &Bench) -> Vec<(String, Kernels, f32)> {
    let mut sets = Vec::new();
    for plan in KernelPlan::every(b.gpu.offers()) {
        let shapes = match plan {
            KernelPlan::Gpu { matrices: false, .. } => vec![
                MatvecShape::default(),
                MatvecShape { rows: 1, width: 64, input: MatvecInput::F32 },
                MatvecShape { rows: 2, width: 16, input: MatvecInput::Q8 },
                MatvecShape { rows: 3, width: 128, input: MatvecInput::F32 },
                MatvecShape { rows: 8, width: 64, input: MatvecInput::Q8 },
                MatvecShape { rows: 7, width: 32, input: MatvecInput::Q8 },
                MatvecShape { input: MatvecInput::F32, ..MatvecShape::default() },
                MatvecShape { rows: 4, width: 32, input: MatvecInput::Q16 },
            ],
            _ => vec![MatvecShape::default()],
        };
        for shape in shapes {
            let kernels = Kernels::with_matvec(&b.gpu, plan, shape);
            sets.push((format!("{plan}, decode {shape}"), kernels, plan.tolerance_with(shape)));
        }
    }
    sets
}

/// Random matrices of `ty` with `rows[i]` rows each: their bytes and values.
fn matrices(b: &mut Bench, ty: GgmlType, rows: &[usize]) -> Vec<(Vec<u8>, Vec<f32>)> {
    rows.iter()
        .map(|&rows| {
            let bytes = b.weight_bytes(ty, rows * NCOLS);
            let mut values = vec![0.0; rows * NCOLS];
            dequantize(ty, &bytes, &mut values).unwrap();
            (bytes, values)
        })
        .collect()
}

fn stack(b: &Bench, ty: GgmlType, rows: &[usize], matrices: &[(Vec<u8>, Vec<f32>)]) -> Weight {
    let parts: Vec<(u64, &[u8])> =
        rows.iter().zip(matrices).map(|(&rows, (bytes, _))| (rows as u64, &bytes[..])).collect();
    let (whole, views) =
        Weight::upload_stack(&b.gpu, "stack", ty, NCOLS as u64, &parts, u64::MAX).unwrap().unwrap();
    assert_eq!(views.iter().map(|view| view.nrows as usize).collect::<Vec<_>>(), rows);
    whole
}

#[test]
fn q_k_and_v_in_one_split_product_match_their_own_products_on_the_cpu_on_every_plan_and_type() {
    let mut b = bench();
    let sets = every_kernel_set(&b);
    // Q wider than K and V, as with grouped-query attention; 70 rows leave the last
    // tiles part empty.
    let rows = [70usize, 22, 22];
    for ty in SUPPORTED_TYPES {
        let matrices = matrices(&mut b, ty, &rows);
        let weight = stack(&b, ty, &rows, &matrices);
        for ntok in TOKENS {
            let x_values = b.values(ntok * NCOLS);
            let x = b.buffer(&x_values);
            let x_view = View::new(&x.buffer, 0, NCOLS as u32);
            let expected: Vec<Vec<f32>> = matrices
                .iter()
                .map(|(_, w)| reference::matmul(w, NCOLS, &x_values, ntok))
                .collect();
            for (what, kernels, tolerance) in &sets {
                // Each output sits at an offset in a wider buffer, as K and V do in the
                // cache.
                let outputs: Vec<_> =
                    rows.iter().map(|&r| (r, b.poisoned(3 + ntok * (r + 5)))).collect();
                let views: Vec<(u32, View<'_>)> = outputs
                    .iter()
                    .map(|(r, y)| (*r as u32, View::new(&y.buffer, 3, (*r + 5) as u32)))
                    .collect();
                let mut batch = Batch::new(&b.gpu, kernels);
                batch.matmul_split(&weight, x_view, &views, ntok as u32);
                batch.submit();
                for (i, ((r, y), expected)) in outputs.iter().zip(&expected).enumerate() {
                    let all = b.read(y, 3 + ntok * (r + 5));
                    let got: Vec<f32> =
                        (0..ntok).flat_map(|t| all[3 + t * (r + 5)..][..*r].to_vec()).collect();
                    let error = relative_error(&got, expected);
                    assert!(error < *tolerance, "{ty}, {what}, {ntok} tokens, matrix {i}: {error}");
                    let untouched = (0..ntok)
                        .all(|t| all[3 + t * (r + 5) + r..][..5].iter().all(|v| v.is_nan()));
                    assert!(untouched, "{ty}, {what}: matrix {i} wrote past its rows");
                }
            }
        }
    }
}

#[test]
fn q_and_k_rotated_as_a_split_product_stores_them_match_the_cpu_s_product_then_rope() {
    let mut b = bench();
    let sets = every_kernel_set(&b);
    let (heads, kv_heads, head_dim, pos0) = (3usize, 2usize, 64usize, 37usize);
    let rows = [heads * head_dim, kv_heads * head_dim, kv_heads * head_dim];
    let mut rotated_on_a_gpu_plan = false;
    for ty in [GgmlType::Q4_0, GgmlType::F16] {
        let matrices = matrices(&mut b, ty, &rows);
        let weight = stack(&b, ty, &rows, &matrices);
        // Every value of a head turns, or only its first half (partial rotary).
        for (ntok, n_rot) in [(1, head_dim), (3, head_dim / 2), (11, head_dim), (70, head_dim)] {
            let x_values = b.values(ntok * NCOLS);
            let x = b.buffer(&x_values);
            let x_view = View::new(&x.buffer, 0, NCOLS as u32);
            let mut expected: Vec<Vec<f32>> = matrices
                .iter()
                .map(|(_, w)| reference::matmul(w, NCOLS, &x_values, ntok))
                .collect();
            for (values, heads) in expected.iter_mut().zip([heads, kv_heads]) {
                reference::rope(values, heads, head_dim, n_rot, pos0, RopePairs::Adjacent, 1e4);
            }
            let rotation = Rotation {
                head_dim: head_dim as u32,
                n_rot: n_rot as u32,
                pos0: pos0 as u32,
                neox: false,
                freq_base: 1e4,
            };
            for (what, kernels, tolerance) in &sets {
                let mut batch = Batch::new(&b.gpu, kernels);
                if !batch.rotates_pairs(&weight, ntok as u32) {
                    continue;
                }
                rotated_on_a_gpu_plan |= what.starts_with("GPU");
                let outputs = rows.map(|r| b.poisoned(ntok * r));
                let views = [0, 1, 2]
                    .map(|i| (rows[i] as u32, View::new(&outputs[i].buffer, 0, rows[i] as u32)));
                batch.matmul_split_rotated(&weight, x_view, &views, ntok as u32, rotation);
                batch.submit();
                // The product's tolerance and the rotation's own, as rope.wgsl's test
                // allows it: a GPU's sine and cosine are approximations.
                let tolerance = tolerance + 1e-4;
                for (i, (y, expected)) in outputs.iter().zip(&expected).enumerate() {
                    let error = relative_error(&b.read(y, ntok * rows[i]), expected);
                    let context = format!("{ty}, {what}, {ntok} tokens, n_rot {n_rot}, matrix {i}");
                    assert!(error < tolerance, "{context}: {error}");
                }
            }
        }
    }
    assert!(rotated_on_a_gpu_plan, "the GPU plans' products rotate Q and K as they store them");
}

#[test]
fn a_paired_gate_and_up_product_gives_the_activated_gate_times_up_on_every_plan_and_type() {
    let mut b = bench();
    let sets = every_kernel_set(&b);
    let rows = [70usize, 70];
    for ty in SUPPORTED_TYPES {
        let matrices = matrices(&mut b, ty, &rows);
        let weight = stack(&b, ty, &rows, &matrices);
        for ntok in TOKENS {
            let x_values = b.values(ntok * NCOLS);
            let x = b.buffer(&x_values);
            let x_view = View::new(&x.buffer, 0, NCOLS as u32);
            let [gate, up] =
                [0, 1].map(|i| reference::matmul(&matrices[i].1, NCOLS, &x_values, ntok));
            for (what, kernels, tolerance) in &sets {
                if !kernels.pair(ntok as u32) {
                    // A decode product of odd rows splits pairs: the forward pass runs
                    // the two products apart there.
                    let odd = ["rows=1", "rows=3", "rows=7"];
                    assert!(odd.iter().any(|rows| what.contains(rows)), "{what}");
                    continue;
                }
                for activation in [Activation::Silu, Activation::GeluTanh] {
                    let y = b.poisoned(ntok * rows[0]);
                    let mut batch = Batch::new(&b.gpu, kernels);
                    let y_view = View::new(&y.buffer, 0, rows[0] as u32);
                    batch.matmul_paired(&weight, x_view, y_view, ntok as u32, activation);
                    batch.submit();
                    let expected = reference::gated(activation, &gate, &up);
                    let error = relative_error(&b.read(&y, ntok * rows[0]), &expected);
                    assert!(
                        error < *tolerance,
                        "{ty}, {what}, {ntok} tokens, {activation:?}: {error}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_view_of_a_stack_s_rows_multiplies_by_that_matrix_alone() {
    let mut b = bench();
    let rows = [40usize, 24, 24];
    let ty = GgmlType::Q6K;
    let matrices = matrices(&mut b, ty, &rows);
    let parts: Vec<(u64, &[u8])> =
        rows.iter().zip(&matrices).map(|(&rows, (bytes, _))| (rows as u64, &bytes[..])).collect();
    let (_, views) =
        Weight::upload_stack(&b.gpu, "stack", ty, NCOLS as u64, &parts, u64::MAX).unwrap().unwrap();
    let x_values = b.values(3 * NCOLS);
    let x = b.buffer(&x_values);
    for plan in KernelPlan::every(b.gpu.offers()) {
        let kernels = Kernels::new(&b.gpu, plan);
        for ((view, (_, w)), &r) in views.iter().zip(&matrices).zip(&rows) {
            let y = b.poisoned(3 * r);
            let mut batch = Batch::new(&b.gpu, &kernels);
            let x_view = View::new(&x.buffer, 0, NCOLS as u32);
            batch.matmul(view, x_view, View::new(&y.buffer, 0, r as u32), 3, false, 1.0);
            batch.submit();
            let expected = reference::matmul(w, NCOLS, &x_values, 3);
            let error = relative_error(&b.read(&y, 3 * r), &expected);
            let tolerance = plan.tolerance_with(b.gpu.matvec);
            assert!(error < tolerance, "{plan}, {r} rows: {error}");
        }
    }
}

#[test]
fn matrices_that_do_not_fit_one_part_together_are_not_stacked() {
    let mut b = bench();
    let matrices = matrices(&mut b, GgmlType::Q8_0, &[4, 4]);
    let parts: Vec<(u64, &[u8])> = matrices.iter().map(|(bytes, _)| (4, &bytes[..])).collect();
    let limit = matrices[0].0.len() as u64 + 1;
    let stacked =
        Weight::upload_stack(&b.gpu, "stack", GgmlType::Q8_0, NCOLS as u64, &parts, limit);
    assert!(stacked.unwrap().is_none());
}
