//! The attention kernels (attention.wgsl, attention_tile.wgsl) against the CPU
//! reference, over caches of every type the device has: the same harness as
//! kernels.rs.

use half::f16;
use hearth_backend_check::reference;
use hearth_sdk::helpers::{dequantize, GgmlType};
use hearth_webgpu::batch::{AttentionShape, Batch, View};
use hearth_webgpu::cache::CacheType;
use hearth_webgpu::device::GpuBuffer;
use hearth_webgpu::kernels::{Kernels, Weight};
use hearth_webgpu::plan::{KernelPlan, MatvecInput, MatvecShape};

use crate::kernels::{bench, relative_error, Bench};

/// A decode step's few queries take splits of 32 keys, four invocations a key; more
/// queries take splits of 128, an invocation a key, or on the GPU plans tiles of
/// (token, head) rows in splits of 256 keys: each, on every plan and in every cache
/// type the device has, with heads whose keys take one round of loads and heads whose
/// keys take several, with one, three and eight query heads a KV head, after a cached
/// context and from the first position. The batch's own keys and values come in f32
/// and land in the cache rounded to its type, and every key counts as rounded.
#[test]
fn grouped_query_attention_over_several_splits_with_and_without_a_window_matches_the_cpu_within_1e_5(
) {
    let mut b = bench();
    // Up to 320 keys: three splits of 128 keys, ten of 32 or two of 256.
    let ctx = 320usize;
    let cases = [
        (64usize, 1usize, 6usize, 2usize, 300usize),
        (64, 5, 6, 2, 300),
        (128, 3, 6, 2, 300),
        (64, 20, 6, 2, 300),
        (128, 20, 6, 2, 300),
        (32, 37, 8, 1, 0),
        (128, 70, 4, 4, 250),
    ];
    for plan in KernelPlan::every(b.gpu.offers()) {
        for cache in CacheType::every(&b.gpu) {
            let kernels = Kernels::with_cache(&b.gpu, plan, cache);
            for (hd, ntok, heads, kv_heads, pos0) in cases {
                let row = kv_heads * hd;
                let q = b.values(ntok * heads * hd);
                let (k, v) = (b.values(ctx * row), b.values(ctx * row));
                let fresh = pos0 * row..(pos0 + ntok) * row;
                let qb = b.buffer(&q);
                let (k_new, v_new) = (b.buffer(&k[fresh.clone()]), b.buffer(&v[fresh.clone()]));
                for (window, scale) in [(None, 0.125), (Some(7u32), 0.0625), (Some(200), 0.125)] {
                    // The cache before the pass: the context, then poison where the
                    // batch's rows go.
                    let (kc, vc) =
                        (cached(&b, &k, pos0 * row, cache), cached(&b, &v, pos0 * row, cache));
                    let shape = attention_shape(heads, kv_heads, hd, ctx, scale);
                    let [sums, stats] = shape.partials(ntok as u32).map(|n| b.poisoned(n as usize));
                    let out = b.poisoned(q.len());
                    let mut batch = Batch::new(&b.gpu, &kernels);
                    batch.attention(
                        &qb.buffer,
                        [&kc.buffer, &vc.buffer],
                        Some([&k_new.buffer, &v_new.buffer]),
                        [&sums.buffer, &stats.buffer],
                        &out.buffer,
                        shape,
                        ntok as u32,
                        pos0 as u32,
                        window,
                    );
                    batch.submit();
                    let geometry = reference::Attention {
                        heads,
                        kv_heads,
                        head_dim: hd,
                        pos0,
                        scale,
                        window: window.map(|w| w as usize),
                    };
                    let (kr, vr) = (rounded(&k, cache), rounded(&v, cache));
                    let expected = reference::attention(&q, &kr, &vr, geometry);
                    let error = relative_error(&b.read(&out, q.len()), &expected);
                    let what = format!(
                        "{plan}, {cache}, {heads}/{kv_heads} heads of {hd}, {ntok} queries from {pos0}, window {window:?}"
                    );
                    assert!(error < 1e-5, "{what}: relative error {error}");
                    let stored = read_cache(&b, &kc, (pos0 + ntok) * row, cache);
                    assert_eq!(stored[fresh.clone()], kr[fresh.clone()], "{what}: the keys stored");
                    let stored = read_cache(&b, &vc, (pos0 + ntok) * row, cache);
                    assert_eq!(
                        stored[fresh.clone()],
                        vr[fresh.clone()],
                        "{what}: the values stored"
                    );
                }
            }
        }
    }
}

/// A layer that reads an earlier layer's cache (Gemma 3n's shared KV) passes no fresh
/// rows: every key, the batch's too, comes from the cache, which stays as it was.
#[test]
fn attention_over_a_shared_cache_reads_every_key_from_it_and_writes_nothing() {
    let mut b = bench();
    let (hd, ntok, heads, kv_heads, pos0, ctx) =
        (64usize, 3usize, 4usize, 2usize, 40usize, 64usize);
    let row = kv_heads * hd;
    let q = b.values(ntok * heads * hd);
    let (k, v) = (b.values(ctx * row), b.values(ctx * row));
    let qb = b.buffer(&q);
    let shape = attention_shape(heads, kv_heads, hd, ctx, 0.125);
    let geometry =
        reference::Attention { heads, kv_heads, head_dim: hd, pos0, scale: 0.125, window: None };
    for plan in KernelPlan::every(b.gpu.offers()) {
        for cache in CacheType::every(&b.gpu) {
            let kernels = Kernels::with_cache(&b.gpu, plan, cache);
            let (kc, vc) = (cached(&b, &k, ctx * row, cache), cached(&b, &v, ctx * row, cache));
            let [sums, stats] = shape.partials(ntok as u32).map(|n| b.poisoned(n as usize));
            let out = b.poisoned(q.len());
            let mut batch = Batch::new(&b.gpu, &kernels);
            batch.attention(
                &qb.buffer,
                [&kc.buffer, &vc.buffer],
                None,
                [&sums.buffer, &stats.buffer],
                &out.buffer,
                shape,
                ntok as u32,
                pos0 as u32,
                None,
            );
            batch.submit();
            let (kr, vr) = (rounded(&k, cache), rounded(&v, cache));
            let expected = reference::attention(&q, &kr, &vr, geometry);
            let error = relative_error(&b.read(&out, q.len()), &expected);
            assert!(error < 1e-5, "{plan}, {cache}: relative error {error}");
            assert_eq!(read_cache(&b, &kc, ctx * row, cache), kr, "{plan}, {cache}: keys");
            assert_eq!(read_cache(&b, &vc, ctx * row, cache), vr, "{plan}, {cache}: values");
        }
    }
}

/// `heads` query heads over `kv_heads` KV heads of `head_dim` values, a cache of `ctx`.
fn attention_shape(
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    ctx: usize,
    scale: f32,
) -> AttentionShape {
    AttentionShape {
        heads: heads as u32,
        kv_heads: kv_heads as u32,
        head_dim: head_dim as u32,
        ctx: ctx as u32,
        scale,
    }
}

/// `values` as a cache of type `cache` holds them.
fn rounded(values: &[f32], cache: CacheType) -> Vec<f32> {
    match cache {
        CacheType::F16 => values.iter().map(|&x| f16::from_f32(x).to_f32()).collect(),
        CacheType::F32 => values.to_vec(),
    }
}

/// A cache of type `cache` holding the first `filled` of `values`, NaN after them.
fn cached(b: &Bench, values: &[f32], filled: usize, cache: CacheType) -> GpuBuffer {
    let poison = std::iter::repeat_n(f32::NAN, values.len() - filled);
    let values = values[..filled].iter().copied().chain(poison);
    let bytes: Vec<u8> = match cache {
        CacheType::F16 => values.flat_map(|x| f16::from_f32(x).to_le_bytes()).collect(),
        CacheType::F32 => values.flat_map(f32::to_le_bytes).collect(),
    };
    b.gpu.upload("cache", &bytes)
}

/// The first `count` values of a cache of type `cache`, as f32.
fn read_cache(b: &Bench, buffer: &GpuBuffer, count: usize, cache: CacheType) -> Vec<f32> {
    match cache {
        CacheType::F16 => {
            let words = b.read(buffer, count.div_ceil(2));
            let halves: &[u16] = bytemuck::cast_slice(&words);
            halves[..count].iter().map(|&h| f16::from_bits(h).to_f32()).collect()
        }
        CacheType::F32 => b.read(buffer, count),
    }
}

/// On a GPU plan with 8-bit decode input, a decode step's attention is one pass: the
/// last split of each (token, head) to finish combines the splits and quantizes the
/// head's output for the product after it, which then needs no quantizing pass of its
/// own (with f32 input, a combining pass follows the splits). The output and the
/// product match the CPU in each of two steps: the pass sets its counts of finished
/// splits back to zero, else no split of the second step would combine and its output
/// would stay poisoned.
#[test]
fn a_product_of_attention_s_output_reads_what_its_last_split_quantized_step_after_step() {
    let mut b = bench();
    let (heads, kv_heads, hd, ctx, pos0, ntok, rows) =
        (4usize, 2usize, 64usize, 160usize, 150usize, 3usize, 48usize);
    let q_dim = heads * hd;
    let q = b.values(ntok * q_dim);
    let (k, v) = (b.values(ctx * kv_heads * hd), b.values(ctx * kv_heads * hd));
    let qb = b.buffer(&q);
    let scale = 0.125;
    let geometry =
        reference::Attention { heads, kv_heads, head_dim: hd, pos0, scale, window: None };
    let bytes = b.weight_bytes(GgmlType::Q8_0, rows * q_dim);
    let mut w = vec![0.0; rows * q_dim];
    dequantize(GgmlType::Q8_0, &bytes, &mut w).unwrap();
    let weight =
        Weight::upload(&b.gpu, "w", GgmlType::Q8_0, q_dim as u64, rows as u64, &bytes).unwrap();
    let shape = attention_shape(heads, kv_heads, hd, ctx, scale);
    for plan in KernelPlan::every(b.gpu.offers()) {
        if plan == KernelPlan::Software {
            continue;
        }
        for input in [MatvecInput::F32, MatvecInput::Q8, MatvecInput::Q16] {
            let matvec = MatvecShape { input, ..MatvecShape::default() };
            let kernels = Kernels::with_matvec(&b.gpu, plan, matvec);
            let cache = kernels.cache();
            let filled = ctx * kv_heads * hd;
            let (kb, vb) = (cached(&b, &k, filled, cache), cached(&b, &v, filled, cache));
            let attended =
                reference::attention(&q, &rounded(&k, cache), &rounded(&v, cache), geometry);
            let expected = reference::matmul(&w, q_dim, &attended, ntok);
            let [sums, stats] = shape.partials(ntok as u32).map(|n| b.poisoned(n as usize));
            let passes = if input == MatvecInput::F32 { 2 } else { 1 };
            for step in 1..=2 {
                let (out, y) = (b.poisoned(ntok * q_dim), b.poisoned(ntok * rows));
                let mut batch = Batch::new(&b.gpu, &kernels);
                let partials = [&sums.buffer, &stats.buffer];
                let (n, pos) = (ntok as u32, pos0 as u32);
                batch.attention(
                    &qb.buffer,
                    [&kb.buffer, &vb.buffer],
                    None,
                    partials,
                    &out.buffer,
                    shape,
                    n,
                    pos,
                    None,
                );
                let x_view = View::new(&out.buffer, 0, q_dim as u32);
                let y_view = View::new(&y.buffer, 0, rows as u32);
                batch.matmul(&weight, x_view, y_view, n, false, 1.0);
                let what = format!("{plan}, {matvec}, step {step}");
                assert_eq!(
                    batch.dispatches(),
                    passes + 1,
                    "{what}: attention's passes, the product"
                );
                batch.submit();
                let error = relative_error(&b.read(&out, ntok * q_dim), &attended);
                assert!(error < 1e-5, "{what}: attention, relative error {error}");
                let error = relative_error(&b.read(&y, ntok * rows), &expected);
                let tolerance = plan.tolerance_with(matvec);
                assert!(error < tolerance, "{what}: the product, relative error {error}");
            }
        }
    }
}
