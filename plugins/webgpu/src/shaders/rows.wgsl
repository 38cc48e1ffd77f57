// Row-wise updates of activations: `rows` rows of `n` values, row r starting at
// offset + r * stride. add_bias adds a projection's bias to every row; scale_rows
// multiplies every value (the embedding scale).

struct RowParams {
    rows: u32,
    n: u32,
    offset: u32,
    stride: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: RowParams;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;

@compute @workgroup_size(64)
fn add_bias(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.n || gid.y >= p.rows) {
        return;
    }
    let at = p.offset + gid.y * p.stride + gid.x;
    y[at] = y[at] + bias[gid.x];
}

@compute @workgroup_size(64)
fn scale_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.n || gid.y >= p.rows) {
        return;
    }
    let at = p.offset + gid.y * p.stride + gid.x;
    y[at] = y[at] * p.scale;
}
