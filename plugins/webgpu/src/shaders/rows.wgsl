// Row-wise updates of activations: `rows` rows of `n` values, row r starting at
// offset + r * stride (of x: x_offset + r * x_stride). add_bias adds a projection's bias
// to every row; scale_rows multiplies every value (the embedding scale); add_rows sets
// or adds scale · x; weigh_rows writes x times a vector, value by value; soft_cap caps
// every value at ±scale through tanh (Gemma 3n's logits).

struct RowParams {
    rows: u32,
    n: u32,
    offset: u32,
    stride: u32,
    scale: f32,
    x_offset: u32,
    x_stride: u32,
    accumulate: u32,
}

@group(0) @binding(0) var<uniform> p: RowParams;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
// A bias or weight vector of n values.
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;

// `tanh_exp` comes from activation.wgsl, appended by the host.

@compute @workgroup_size(64)
fn add_bias(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.n || gid.y >= p.rows) {
        return;
    }
    let at = p.offset + gid.y * p.stride + gid.x;
    y[at] = y[at] + w[gid.x];
}

@compute @workgroup_size(64)
fn scale_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.n || gid.y >= p.rows) {
        return;
    }
    let at = p.offset + gid.y * p.stride + gid.x;
    y[at] = y[at] * p.scale;
}

@compute @workgroup_size(64)
fn add_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.n || gid.y >= p.rows) {
        return;
    }
    let at = p.offset + gid.y * p.stride + gid.x;
    let value = p.scale * x[p.x_offset + gid.y * p.x_stride + gid.x];
    if (p.accumulate != 0u) {
        y[at] += value;
    } else {
        y[at] = value;
    }
}

@compute @workgroup_size(64)
fn weigh_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.n || gid.y >= p.rows) {
        return;
    }
    let at = p.offset + gid.y * p.stride + gid.x;
    y[at] = x[p.x_offset + gid.y * p.x_stride + gid.x] * w[gid.x];
}

@compute @workgroup_size(64)
fn soft_cap(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.n || gid.y >= p.rows) {
        return;
    }
    let at = p.offset + gid.y * p.stride + gid.x;
    y[at] = p.scale * tanh_exp(y[at] / p.scale);
}
