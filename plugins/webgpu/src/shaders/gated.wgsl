// The gated feed-forward's activation, in place on the gate: g = act(g) * u, with act
// SiLU (0) or GELU's tanh approximation (1).

struct GatedParams {
    n: u32,
    activation: u32,
}

@group(0) @binding(0) var<uniform> p: GatedParams;
@group(0) @binding(1) var<storage, read_write> g: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;

const SQRT_2_OVER_PI: f32 = 0.7978845608;

@compute @workgroup_size(64)
fn gated(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * 65535u * 64u;
    if (i >= p.n) {
        return;
    }
    let a = g[i];
    var act: f32;
    if (p.activation == 0u) {
        act = a / (1.0 + exp(-a));
    } else {
        // tanh through exp, clamped: WGSL's tanh is not exact for large arguments everywhere.
        let z = clamp(SQRT_2_OVER_PI * (a + 0.044715 * a * a * a), -15.0, 15.0);
        let e = exp(2.0 * z);
        act = 0.5 * a * (1.0 + (e - 1.0) / (e + 1.0));
    }
    g[i] = act * u[i];
}
