// Rotary position embedding, in place, on `ntok` tokens of `heads` heads each. Mode 0
// rotates adjacent pairs (llama.cpp's "normal", which Llama GGUFs use because the
// converter permuted Q and K); mode 1 rotates (i, i + n_rot/2) pairs (NeoX, Qwen).

struct RopeParams {
    ntok: u32,
    heads: u32,
    head_dim: u32,
    n_rot: u32,
    pos0: u32,
    off: u32,
    mode: u32,
    freq_base: f32,
}

@group(0) @binding(0) var<uniform> p: RopeParams;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half_rot = p.n_rot / 2u;
    let pair = gid.x % half_rot;
    let head = gid.x / half_rot;
    let t = gid.y;
    if (head >= p.heads || t >= p.ntok) {
        return;
    }
    let pos = f32(p.pos0 + t);
    let theta = pos * pow(p.freq_base, -2.0 * f32(pair) / f32(p.n_rot));
    let c = cos(theta);
    let s = sin(theta);
    let base = p.off + (t * p.heads + head) * p.head_dim;
    var i0 = base + 2u * pair;
    var i1 = i0 + 1u;
    if (p.mode == 1u) {
        i0 = base + pair;
        i1 = i0 + half_rot;
    }
    let a = x[i0];
    let b = x[i1];
    x[i0] = a * c - b * s;
    x[i1] = a * s + b * c;
}
