// RMSNorm over contiguous rows of n elements: out = x / sqrt(mean(x²) + eps) * w, or
// out += that (a sandwich norm feeding the residual stream). Also serves the per-head
// QK-norm, where a row is one head.

struct NormParams {
    rows: u32,
    n: u32,
    x_off: u32,
    y_off: u32,
    eps: f32,
    accumulate: u32,
}

@group(0) @binding(0) var<uniform> p: NormParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const WG: u32 = 64u;
var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn rmsnorm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * 65535u;
    if (row >= p.rows) {
        return;
    }
    let xb = p.x_off + row * p.n;
    var sum = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        sum += x[xb + i] * x[xb + i];
    }
    partial[lid] = sum;
    workgroupBarrier();
    for (var step = WG / 2u; step > 0u; step >>= 1u) {
        if (lid < step) {
            partial[lid] += partial[lid + step];
        }
        workgroupBarrier();
    }
    let inv = inverseSqrt(partial[0] / f32(p.n) + p.eps);
    let yb = p.y_off + row * p.n;
    for (var i = lid; i < p.n; i += WG) {
        let value = x[xb + i] * inv * w[i];
        if (p.accumulate != 0u) {
            y[yb + i] += value;
        } else {
            y[yb + i] = value;
        }
    }
}
