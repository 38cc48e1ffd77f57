// Causal attention of a batch of query tokens over the KV cache, split over the keys
// so that a long context is spread over many workgroups (a decode step has one query
// token, so a workgroup per head alone would leave most of a GPU idle). Query token t
// sits at position pos0 + t and sees keys 0..=pos0 + t, or only the last `window` of
// them on a sliding-window layer. Grouped-query attention: query head h reads KV head
// h / (heads / kv_heads).
//
// `attention_split`: one workgroup per (head, token, split of KEYS keys) computes the
// split's scores, their max m and sum l of exp(score − m), and the exp-weighted sum of
// its values. `attention_combine`: one workgroup per (head, token) rescales the
// splits to their common max and divides by the total.

struct AttentionParams {
    ntok: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    pos0: u32,
    splits: u32,  // splits per (head, token)
    scale: f32,
    window: u32,  // 0: every earlier key
}

@group(0) @binding(0) var<uniform> p: AttentionParams;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
// Per (token, head, split): head_dim weighted value sums, then (m, l).
@group(0) @binding(4) var<storage, read_write> sums: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;
const KEYS: u32 = 128u;
const LOWEST: f32 = -3.4e38;

var<workgroup> query: array<f32, 256>;
var<workgroup> weights: array<f32, KEYS>;
var<workgroup> partial: array<f32, WG>;

fn reduce_max(lid: u32, value: f32) -> f32 {
    partial[lid] = value;
    workgroupBarrier();
    for (var step = WG / 2u; step > 0u; step >>= 1u) {
        if (lid < step) {
            partial[lid] = max(partial[lid], partial[lid + step]);
        }
        workgroupBarrier();
    }
    let result = partial[0];
    workgroupBarrier();
    return result;
}

fn reduce_sum(lid: u32, value: f32) -> f32 {
    partial[lid] = value;
    workgroupBarrier();
    for (var step = WG / 2u; step > 0u; step >>= 1u) {
        if (lid < step) {
            partial[lid] += partial[lid + step];
        }
        workgroupBarrier();
    }
    let result = partial[0];
    workgroupBarrier();
    return result;
}

// The first key query token t sees.
fn first_key(t: u32) -> u32 {
    let n_keys = p.pos0 + t + 1u;
    if (p.window > 0u && n_keys > p.window) {
        return n_keys - p.window;
    }
    return 0u;
}

@compute @workgroup_size(64)
fn attention_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y;
    let split = wid.z;
    let hd = p.head_dim;
    let kv_dim = p.kv_heads * hd;
    let kv_base = (h / (p.heads / p.kv_heads)) * hd;
    let begin = first_key(t) + split * KEYS;
    let end = min(begin + KEYS, p.pos0 + t + 1u);
    let qb = (t * p.heads + h) * hd;
    for (var d = lid; d < hd; d += WG) {
        query[d] = q[qb + d];
    }
    workgroupBarrier();

    var best = LOWEST;
    for (var i = lid; i < KEYS; i += WG) {
        var s = LOWEST;
        if (begin + i < end) {
            let kb = (begin + i) * kv_dim + kv_base;
            var dot = 0.0;
            for (var d = 0u; d < hd; d++) {
                dot += query[d] * k[kb + d];
            }
            s = dot * p.scale;
            best = max(best, s);
        }
        weights[i] = s;
    }
    let m = reduce_max(lid, best);
    var sum = 0.0;
    for (var i = lid; i < KEYS; i += WG) {
        var e = 0.0;
        if (begin + i < end) {
            e = exp(weights[i] - m);
        }
        weights[i] = e;
        sum += e;
    }
    // The reduction's barriers also make every weight visible to every invocation.
    let l = reduce_sum(lid, sum);
    let slot = (t * p.heads + h) * p.splits + split;
    for (var d = lid; d < hd; d += WG) {
        var acc = 0.0;
        for (var j = begin; j < end; j++) {
            acc += weights[j - begin] * v[j * kv_dim + kv_base + d];
        }
        sums[slot * hd + d] = acc;
    }
    if (lid == 0u) {
        stats[slot] = vec2<f32>(m, l);
    }
}

@compute @workgroup_size(64)
fn attention_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y;
    let hd = p.head_dim;
    let slot0 = (t * p.heads + h) * p.splits;
    // A split past the last key has m = LOWEST and l = 0: its factor below is 0.
    var m = LOWEST;
    for (var s = 0u; s < p.splits; s++) {
        m = max(m, stats[slot0 + s].x);
    }
    var total = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        total += exp(stats[slot0 + s].x - m) * stats[slot0 + s].y;
    }
    let qb = (t * p.heads + h) * hd;
    for (var d = lid; d < hd; d += WG) {
        var acc = 0.0;
        for (var s = 0u; s < p.splits; s++) {
            acc += exp(stats[slot0 + s].x - m) * sums[(slot0 + s) * hd + d];
        }
        out[qb + d] = acc / total;
    }
}
