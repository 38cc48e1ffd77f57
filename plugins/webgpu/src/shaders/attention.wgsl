// Causal attention of a batch of query tokens over the KV cache. One workgroup per
// (head, token): scores into a scratch row, softmax, then the weighted sum of values.
// Query token t sits at position pos0 + t and sees keys 0..=pos0 + t, or only the last
// `window` of them on a sliding-window layer. Grouped-query attention: query head h
// reads KV head h / (heads / kv_heads).

struct AttentionParams {
    ntok: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    pos0: u32,
    ctx: u32,     // KV cache capacity: stride of a scores row
    scale: f32,
    window: u32,  // 0: every earlier key
}

@group(0) @binding(0) var<uniform> p: AttentionParams;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> scores: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;
var<workgroup> partial: array<f32, 64>;

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

@compute @workgroup_size(64)
fn attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y;
    let hd = p.head_dim;
    let kv_dim = p.kv_heads * hd;
    let kvh = h / (p.heads / p.kv_heads);
    let n_keys = p.pos0 + t + 1u;
    var first = 0u;
    if (p.window > 0u && n_keys > p.window) {
        first = n_keys - p.window;
    }
    let qb = (t * p.heads + h) * hd;
    let sb = (t * p.heads + h) * p.ctx;

    var best = -3.4e38;
    for (var j = first + lid; j < n_keys; j += WG) {
        let kb = j * kv_dim + kvh * hd;
        var s = 0.0;
        for (var d = 0u; d < hd; d++) {
            s += q[qb + d] * k[kb + d];
        }
        s *= p.scale;
        scores[sb + j] = s;
        best = max(best, s);
    }
    let m = reduce_max(lid, best);
    var sum = 0.0;
    for (var j = first + lid; j < n_keys; j += WG) {
        let e = exp(scores[sb + j] - m);
        scores[sb + j] = e;
        sum += e;
    }
    let total = reduce_sum(lid, sum);
    // The weights written above by other invocations must be visible before use.
    storageBarrier();
    for (var d = lid; d < hd; d += WG) {
        var acc = 0.0;
        for (var j = first; j < n_keys; j++) {
            acc += scores[sb + j] * v[j * kv_dim + kvh * hd + d];
        }
        out[qb + d] = acc / total;
    }
}
