// The gated feed-forward's activation, in place on the gate: g = act(g) * u, with act
// SiLU (0) or GELU's tanh approximation (1), over `rows` rows of `n` values; row r of u
// starts at u_offset + r * u_stride (Gemma 3n's per-layer inputs are a slice of wider
// rows).

struct GatedParams {
    rows: u32,
    n: u32,
    u_offset: u32,
    u_stride: u32,
    activation: u32,
}

@group(0) @binding(0) var<uniform> p: GatedParams;
@group(0) @binding(1) var<storage, read_write> g: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;

// `activate` comes from activation.wgsl, appended by the host.

@compute @workgroup_size(64)
fn gated(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.n || gid.y >= p.rows) {
        return;
    }
    let i = gid.y * p.n + gid.x;
    g[i] = activate(g[i], p.activation == 1u) * u[p.u_offset + gid.y * p.u_stride + gid.x];
}
