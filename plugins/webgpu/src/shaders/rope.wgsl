// Rotary position embedding, in place, on `ntok` tokens of `heads` heads each. Mode 0
// rotates adjacent pairs (llama.cpp's "normal", which Llama GGUFs use because the
// converter permuted Q and K); mode 1 rotates (i, i + n_rot/2) pairs (NeoX, Qwen).
// One dispatch rotates a layer's queries in `x` and its new keys in `k` (none where
// `k_heads` is 0), as a decode step's dispatches each cost some µs of launch and
// barrier on a GPU; where the product of Q and K can rotate them as it stores them
// (quant.wgsl's `store_sum`), there is no such pass at all. The host appends
// rotation.wgsl.

struct RopeParams {
    ntok: u32,
    heads: u32,
    head_dim: u32,
    n_rot: u32,
    pos0: u32,
    off: u32,
    mode: u32,
    freq_base: f32,
    k_heads: u32,  // heads of `k`, rotated after x's
    k_off: u32,
}

@group(0) @binding(0) var<uniform> p: RopeParams;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> k: array<f32>;

// The indices of pair `pair` of the head whose values start at `base`.
fn pair_at(base: u32, pair: u32) -> vec2<u32> {
    if (p.mode == 1u) {
        return vec2<u32>(base + pair, base + pair + p.n_rot / 2u);
    }
    return vec2<u32>(base + 2u * pair, base + 2u * pair + 1u);
}

@compute @workgroup_size(64)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pair = gid.x % (p.n_rot / 2u);
    let head = gid.x / (p.n_rot / 2u);
    let t = gid.y;
    if (t >= p.ntok) {
        return;
    }
    if (head < p.heads) {
        let at = pair_at(p.off + (t * p.heads + head) * p.head_dim, pair);
        let r = rotate_pair(vec2<f32>(x[at.x], x[at.y]), p.pos0 + t, pair, p.n_rot, p.freq_base);
        x[at.x] = r.x;
        x[at.y] = r.y;
    } else if (head < p.heads + p.k_heads) {
        let at = pair_at(p.k_off + (t * p.k_heads + head - p.heads) * p.head_dim, pair);
        let r = rotate_pair(vec2<f32>(k[at.x], k[at.y]), p.pos0 + t, pair, p.n_rot, p.freq_base);
        k[at.x] = r.x;
        k[at.y] = r.y;
    }
}
