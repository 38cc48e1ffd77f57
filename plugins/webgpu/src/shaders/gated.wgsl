// The gated feed-forward's activation, in place on the gate: g = act(g) * u, with act
// SiLU (0) or GELU's tanh approximation (1).

struct GatedParams {
    n: u32,
    activation: u32,
}

@group(0) @binding(0) var<uniform> p: GatedParams;
@group(0) @binding(1) var<storage, read_write> g: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;

// `activate` comes from activation.wgsl, appended by the host.

@compute @workgroup_size(64)
fn gated(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * 65535u * 64u;
    if (i >= p.n) {
        return;
    }
    g[i] = activate(g[i], p.activation == 1u) * u[i];
}
