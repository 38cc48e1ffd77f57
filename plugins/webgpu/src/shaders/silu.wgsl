// The gated MLP's activation, in place on the gate: g = silu(g) * u.

struct SiluParams {
    n: u32,
}

@group(0) @binding(0) var<uniform> p: SiluParams;
@group(0) @binding(1) var<storage, read_write> g: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;

@compute @workgroup_size(64)
fn silu_mul(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * 65535u * 64u;
    if (i >= p.n) {
        return;
    }
    let a = g[i];
    g[i] = a / (1.0 + exp(-a)) * u[i];
}
