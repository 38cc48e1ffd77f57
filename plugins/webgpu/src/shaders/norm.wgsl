// Reductions over contiguous rows of n elements, one workgroup per row (and for
// rmsnorm_quantized per slice of a row). A decode step normalizes one row of a few
// thousand values, so a few workgroups do all the work: their invocations load
// several values each before using any (`x4`), so a GPU has those loads in flight
// instead of waiting for each in turn. With 64 invocations loading one at a time, an
// 8B model's 4096-wide norm took 35 µs on an H100 (a quarter of a decode step's GPU
// time went to the 65 norms).
// rmsnorm: out = x / sqrt(mean(x²) + eps) * w, or out += that (a sandwich norm feeding
// the residual stream); also serves the per-head QK-norm, where a row is one head.
// rescale_to_norm: y *= |x| / |y| (Gemma 3n's AltUp streams, rescaled to another's L2
// norm). sparsify: y = max(y − (mean + cutoff_std · std), 0), the std with n − 1 in
// its denominator (Gemma 3n's activation sparsity).
//
// quantize_input: the decode product's 8-bit input (quantize.wgsl), made once per
// product. rmsnorm_quantized:
// rmsnorm that also writes its rows so, saving the decode step a dispatch for each
// norm a product reads (each costs some µs of launch and barrier on a GPU). The host
// appends quantize.wgsl to this file.

struct NormParams {
    rows: u32,
    n: u32,
    x_off: u32,
    y_off: u32,
    eps: f32,
    accumulate: u32,
    cutoff_std: f32,
    x_stride: u32,    // quantize_input: distance between rows in x (the others: n)
    out_stride: u32,  // words of `prepared` a row takes
}

@group(0) @binding(0) var<uniform> p: NormParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, WG>;

// Elements i, i + WG, i + 2·WG and i + 3·WG of x from `base`, 0 past the row's n.
fn x4(base: u32, i: u32) -> vec4<f32> {
    let at = vec4<u32>(i, i + WG, i + 2u * WG, i + 3u * WG);
    let values = vec4<f32>(x[base + at.x], x[base + at.y], x[base + at.z], x[base + at.w]);
    return select(vec4<f32>(0.0), values, at < vec4<u32>(p.n));
}

// The sum of every invocation's `value`, returned to all of them.
fn workgroup_sum(lid: u32, value: f32) -> f32 {
    partial[lid] = value;
    workgroupBarrier();
    for (var step = WG / 2u; step > 0u; step >>= 1u) {
        if (lid < step) {
            partial[lid] += partial[lid + step];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    // Every invocation reads the total before the next sum overwrites it.
    workgroupBarrier();
    return total;
}

// 1 / sqrt(mean(x²) + eps) of the row of x from `xb`, sixteen loads an invocation in
// flight (a 4096-wide row in one round).
fn inverse_rms(lid: u32, xb: u32) -> f32 {
    var sum = vec4<f32>(0.0);
    for (var i = lid; i < p.n; i += 16u * WG) {
        let a = x4(xb, i);
        let b = x4(xb, i + 4u * WG);
        let c = x4(xb, i + 8u * WG);
        let d = x4(xb, i + 12u * WG);
        sum += a * a + b * b + c * c + d * d;
    }
    return inverseSqrt(workgroup_sum(lid, sum.x + sum.y + sum.z + sum.w) / f32(p.n) + p.eps);
}

@compute @workgroup_size(WG)
fn rmsnorm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * 65535u;
    if (row >= p.rows) {
        return;
    }
    let xb = p.x_off + row * p.n;
    let inv = inverse_rms(lid, xb);
    let yb = p.y_off + row * p.n;
    for (var i = lid; i < p.n; i += 4u * WG) {
        let at = vec4<u32>(i, i + WG, i + 2u * WG, i + 3u * WG);
        var value = x4(xb, i) * inv * vec4<f32>(w[at.x], w[at.y], w[at.z], w[at.w]);
        if (p.accumulate != 0u) {
            value += vec4<f32>(y[yb + at.x], y[yb + at.y], y[yb + at.z], y[yb + at.w]);
        }
        for (var j = 0u; j < 4u; j++) {
            if (at[j] < p.n) {
                y[yb + at[j]] = value[j];
            }
        }
    }
}

// Four values of x from `at`.
fn x_vec4(at: u32) -> vec4<f32> {
    return vec4<f32>(x[at], x[at + 1u], x[at + 2u], x[at + 3u]);
}

// Four values of w from `at`.
fn w_vec4(at: u32) -> vec4<f32> {
    return vec4<f32>(w[at], w[at + 1u], w[at + 2u], w[at + 3u]);
}

// A workgroup quantizes 4 · WG values of a row, four an invocation.
@compute @workgroup_size(WG)
fn quantize_input(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.y;
    if (row >= p.rows) {
        return;
    }
    let i = wid.x * 4u * WG + 4u * lid;
    let inside = i < p.n;
    var v = vec4<f32>(0.0);
    if (inside) {
        v = x_vec4(p.x_off + row * p.x_stride + i);
    }
    quantize_lanes(lid, v, inside, row * p.out_stride, p.out_stride, i / 32u, p.n / 32u);
}

// rmsnorm of rows of a multiple of 32 values into y, each also quantized as
// quantize_input does. As there, a workgroup takes 4 · WG values of a row; each sums
// the whole row's squares itself. A workgroup that normed and quantized a whole row,
// a slice after another, was a chain of four rounds of loads and some 30 barriers
// for a 4096-wide row on a GPU where a few workgroups cost no more than one: on an
// H100 that took 12.8 µs a dispatch (profiled) and this 8.6 (docs/BENCHMARKS.md,
// 2026-12-06, sixth session).
@compute @workgroup_size(WG)
fn rmsnorm_quantized(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.y;
    if (row >= p.rows) {
        return;
    }
    let xb = p.x_off + row * p.n;
    let inv = inverse_rms(lid, xb);
    let yb = p.y_off + row * p.n;
    let i = wid.x * 4u * WG + 4u * lid;
    let inside = i < p.n;
    var v = vec4<f32>(0.0);
    if (inside) {
        v = x_vec4(xb + i) * inv * w_vec4(i);
        for (var j = 0u; j < 4u; j++) {
            y[yb + i + j] = v[j];
        }
    }
    quantize_lanes(lid, v, inside, row * p.out_stride, p.out_stride, i / 32u, p.n / 32u);
}

@compute @workgroup_size(WG)
fn rescale_to_norm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.x + wid.y * 65535u;
    if (row >= p.rows) {
        return;
    }
    let xb = p.x_off + row * p.n;
    let yb = p.y_off + row * p.n;
    var target_sum = 0.0;
    var own_sum = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        target_sum += x[xb + i] * x[xb + i];
        own_sum += y[yb + i] * y[yb + i];
    }
    let factor = sqrt(workgroup_sum(lid, target_sum) / workgroup_sum(lid, own_sum));
    for (var i = lid; i < p.n; i += WG) {
        y[yb + i] *= factor;
    }
}

@compute @workgroup_size(WG)
fn sparsify(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * 65535u;
    if (row >= p.rows) {
        return;
    }
    let yb = p.y_off + row * p.n;
    var sum = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        sum += y[yb + i];
    }
    let mean = workgroup_sum(lid, sum) / f32(p.n);
    var squares = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        squares += (y[yb + i] - mean) * (y[yb + i] - mean);
    }
    let deviation = sqrt(workgroup_sum(lid, squares) / f32(p.n - 1u));
    let cutoff = mean + p.cutoff_std * deviation;
    for (var i = lid; i < p.n; i += WG) {
        y[yb + i] = max(y[yb + i] - cutoff, 0.0);
    }
}
