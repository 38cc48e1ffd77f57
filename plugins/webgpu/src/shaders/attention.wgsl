// Causal attention of a batch of query tokens over the KV cache, split over the keys
// so that a long context is spread over many workgroups (a decode step has one query
// token, so a workgroup per head alone would leave most of a GPU idle). Query token t
// sits at position pos0 + t and sees keys 0..=pos0 + t, or only the last `window` of
// them on a sliding-window layer. Grouped-query attention: query head h reads KV head
// h / (heads / kv_heads).
//
// `attention_split`: one workgroup per (head, token, split of KEYS keys) computes the
// split's scores (LANES neighbouring invocations a key, each a share of its dimensions),
// their max m and sum l of exp(score − m), and the exp-weighted sum of its values (an
// invocation per four dimensions and group of keys, the groups then added).
// `attention_combine`: one workgroup per (head, token) rescales the splits to their
// common max and divides by the total.
// `attention_split_quantized` (a decode step's few queries): attention_split whose last
// split of each (head, token) to finish then combines them and quantizes the head's
// output, as attention_combine_quantized would in a pass of its own. A decode step of
// an 8B model then has 32 dispatches fewer (about 9 µs each by an H100's timestamps,
// most of it the floor every dispatch pays; the step became about 2 % faster).
//
// Keys, values and queries are read four values at a time, eight loads in flight
// before any is used: on an H100 a decode step of an 8B model spent 58 µs a layer
// here when each invocation read one value at a time, and one invocation summed a
// dimension over all 128 keys of its split in turn. A workgroup's time is the chain of
// its loads and barriers, not its bytes, so a decode step (the host substitutes KEYS
// = 32) takes splits of 32 keys, four invocations a key: each invocation's loads are
// then a single round, and the splits four times as many workgroups. Prompts keep
// splits of 128, so their partial results stay a quarter as large; on the GPU plans
// most prompts take attention_tile.wgsl instead, whose workgroups share each key among
// many queries. Heads are a multiple of 4 values (forward.rs refuses others).
//
// The cache holds `cache4` vectors: f16 where the device has shader-f16 (the host then
// declares them `vec4<f16>` and enables f16: half the memory and half the reads, as
// llama.cpp's default cache), else f32. A layer that computes K and V leaves the
// batch's own rows in f32 in `k_new` and `v_new` (the products, norms and rotation that
// make them write f32); this pass reads them from there and writes them into the cache,
// so that storing them costs no pass of its own. Every key is read rounded to the
// cache's type, wherever it lies, so a key scores the same whichever batch wrote it.

struct AttentionParams {
    ntok: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    pos0: u32,
    splits: u32,  // splits per (head, token)
    scale: f32,
    window: u32,  // 0: every earlier key
    // 1: keys from pos0 on are the batch's own, in `k_new` and `v_new`; 0: a layer
    // that reads an earlier layer's cache, whose keys all lie there.
    fresh: u32,
    out_stride: u32,  // attention_combine_quantized: words of `prepared` a token takes
}

@group(0) @binding(0) var<uniform> p: AttentionParams;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
alias cache4 = vec4<f32>;
@group(0) @binding(2) var<storage, read_write> k: array<cache4>;
@group(0) @binding(3) var<storage, read_write> v: array<cache4>;
// Row t: the key (value) at position pos0 + t, where `p.fresh` says the batch made them.
@group(0) @binding(8) var<storage, read> k_new: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> v_new: array<vec4<f32>>;
// Per (token, head, split): head_dim weighted value sums, then (m, l).
@group(0) @binding(4) var<storage, read_write> sums: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
// attention_split_quantized: the splits of each (token, head) that have finished, back
// to 0 once the last has combined them.
@group(0) @binding(10) var<storage, read_write> finished: array<atomic<u32>>;

const WG: u32 = 128u;
// Keys per split, and the invocations that score each of them.
const KEYS: u32 = 128u;
const LANES: u32 = WG / KEYS;
// Loads an invocation keeps in flight.
const LOADS: u32 = 8u;
const LOWEST: f32 = -3.4e38;

var<workgroup> query: array<vec4<f32>, 64>;
var<workgroup> weights: array<f32, KEYS>;
var<workgroup> partial: array<f32, WG>;
var<workgroup> value_sums: array<vec4<f32>, WG>;
// attention_combine_quantized: the head's output, for its chunks' quantization.
var<workgroup> head_out: array<vec4<f32>, 64>;
// attention_split_quantized: the splits of the workgroup's (token, head) finished,
// its own included.
var<workgroup> splits_finished: u32;

// The max and the sum over the split's keys, the values of invocations 0..KEYS.
fn reduce_max(lid: u32, value: f32) -> f32 {
    partial[lid] = value;
    workgroupBarrier();
    for (var step = KEYS / 2u; step > 0u; step >>= 1u) {
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
    for (var step = KEYS / 2u; step > 0u; step >>= 1u) {
        if (lid < step) {
            partial[lid] += partial[lid + step];
        }
        workgroupBarrier();
    }
    let result = partial[0];
    workgroupBarrier();
    return result;
}

// Whether key `key` is one of the batch's own, read from `k_new` and `v_new`.
fn is_fresh(key: u32) -> bool {
    return p.fresh == 1u && key >= p.pos0;
}

// Vector `i` of key `key`'s row (a row holds every KV head's key, in vec4s), and of
// its value's row.
fn key4(key: u32, i: u32) -> vec4<f32> {
    let row = p.kv_heads * p.head_dim / 4u;
    if (is_fresh(key)) {
        return vec4<f32>(cache4(k_new[(key - p.pos0) * row + i]));
    }
    return vec4<f32>(k[key * row + i]);
}
fn value4(key: u32, i: u32) -> vec4<f32> {
    let row = p.kv_heads * p.head_dim / 4u;
    if (is_fresh(key)) {
        return vec4<f32>(cache4(v_new[(key - p.pos0) * row + i]));
    }
    return vec4<f32>(v[key * row + i]);
}

// Token t's key and value of KV head `kv_head` into the cache, where the batch made
// them. One workgroup does this for each (token, KV head); no workgroup of the pass
// reads them from the cache.
fn store_fresh(t: u32, kv_head: u32, lid: u32) {
    if (p.fresh == 0u) {
        return;
    }
    let hd4 = p.head_dim / 4u;
    let row = p.kv_heads * hd4;
    for (var d = lid; d < hd4; d += WG) {
        let at = kv_head * hd4 + d;
        k[(p.pos0 + t) * row + at] = cache4(k_new[t * row + at]);
        v[(p.pos0 + t) * row + at] = cache4(v_new[t * row + at]);
    }
}

// The first key query token t sees.
fn first_key(t: u32) -> u32 {
    let n_keys = p.pos0 + t + 1u;
    if (p.window > 0u && n_keys > p.window) {
        return n_keys - p.window;
    }
    return 0u;
}

@compute @workgroup_size(WG)
fn attention_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    split_partials(wid.x, wid.y, wid.z, lid);
}

// Split `split` of head h of query token t: its weighted value sums and (m, l).
fn split_partials(h: u32, t: u32, split: u32, lid: u32) {
    let hd4 = p.head_dim / 4u;
    let kv_dim4 = p.kv_heads * hd4;
    let kv_base4 = (h / (p.heads / p.kv_heads)) * hd4;
    let begin = first_key(t) + split * KEYS;
    let end = min(begin + KEYS, p.pos0 + t + 1u);
    let qb4 = (t * p.heads + h) * hd4;
    for (var d = lid; d < hd4; d += WG) {
        query[d] = q[qb4 + d];
    }
    let group = p.heads / p.kv_heads;
    if (split == 0u && h % group == 0u) {
        store_fresh(t, h / group, lid);
    }
    workgroupBarrier();

    // Invocation `lid`'s share of key `begin + lid / LANES`'s score: dimensions
    // 4·(lid % LANES), 4·(lid % LANES + LANES)…, so neighbouring invocations read
    // neighbouring values.
    let key = begin + lid / LANES;
    var dot4 = vec4<f32>(0.0);
    // The cache's keys in rounds of LOADS loads; a fresh key's (a decode step has one)
    // one at a time.
    if (key < end && !is_fresh(key)) {
        let kb = key * kv_dim4 + kv_base4;
        var d = lid % LANES;
        for (; d + (LOADS - 1u) * LANES < hd4; d += LOADS * LANES) {
            var keys: array<vec4<f32>, LOADS>;
            for (var j = 0u; j < LOADS; j++) {
                keys[j] = vec4<f32>(k[kb + d + j * LANES]);
            }
            for (var j = 0u; j < LOADS; j++) {
                dot4 += query[d + j * LANES] * keys[j];
            }
        }
        for (; d < hd4; d += LANES) {
            dot4 += query[d] * vec4<f32>(k[kb + d]);
        }
    } else if (key < end) {
        for (var d = lid % LANES; d < hd4; d += LANES) {
            dot4 += query[d] * key4(key, kv_base4 + d);
        }
    }
    partial[lid] = dot4.x + dot4.y + dot4.z + dot4.w;
    workgroupBarrier();
    // Invocation i < KEYS holds key begin + i's score.
    let inside = lid < KEYS && begin + lid < end;
    var s = LOWEST;
    if (inside) {
        var score = 0.0;
        for (var i = 0u; i < LANES; i++) {
            score += partial[lid * LANES + i];
        }
        s = score * p.scale;
    }
    workgroupBarrier();
    let m = reduce_max(lid, s);
    let e = select(0.0, exp(s - m), inside);
    if (lid < KEYS) {
        weights[lid] = e;
    }
    // The reduction's barriers also make every weight visible to every invocation.
    let l = reduce_sum(lid, e);

    // Invocation (g, d4) sums dimensions 4·d4.. over keys begin + g, begin + g + groups…
    let groups = WG / hd4;
    let g = lid / hd4;
    let d4 = lid % hd4;
    var acc = vec4<f32>(0.0);
    if (g < groups) {
        let vb = kv_base4 + d4;
        var j = begin + g;
        // Rounds of LOADS values from the cache while they reach no fresh key.
        for (; j + (LOADS - 1u) * groups < end && !is_fresh(j + (LOADS - 1u) * groups); j += LOADS * groups) {
            var values: array<vec4<f32>, LOADS>;
            for (var i = 0u; i < LOADS; i++) {
                values[i] = vec4<f32>(v[(j + i * groups) * kv_dim4 + vb]);
            }
            for (var i = 0u; i < LOADS; i++) {
                acc += weights[j + i * groups - begin] * values[i];
            }
        }
        for (; j < end; j += groups) {
            acc += weights[j - begin] * value4(j, vb);
        }
    }
    value_sums[lid] = acc;
    workgroupBarrier();
    let slot = (t * p.heads + h) * p.splits + split;
    if (lid < hd4) {
        var total = vec4<f32>(0.0);
        for (var i = 0u; i < groups; i++) {
            total += value_sums[i * hd4 + lid];
        }
        let at = slot * p.head_dim + 4u * lid;
        sums[at] = total.x;
        sums[at + 1u] = total.y;
        sums[at + 2u] = total.z;
        sums[at + 3u] = total.w;
    }
    if (lid == 0u) {
        stats[slot] = vec2<f32>(m, l);
    }
}

// Head h of token t's output: the splits rescaled to their common max, divided by the
// total; kept in `head_out` too where `keep` says so.
fn combine(h: u32, t: u32, lid: u32, keep: bool) {
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
        if (keep) {
            head_out[d / 4u][d % 4u] = acc / total;
        }
    }
}

@compute @workgroup_size(WG)
fn attention_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    combine(wid.x, wid.y, lid, false);
}

// attention_combine that also quantizes the head's output for the product after it
// (quantize.wgsl, which the host appends; heads a multiple of 32 values), saving the
// decode step that product's quantizing pass.
@compute @workgroup_size(WG)
fn attention_combine_quantized(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    combine_quantized(wid.x, wid.y, lid);
}

@compute @workgroup_size(WG)
fn attention_split_quantized(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let h = wid.x;
    let t = wid.y;
    split_partials(h, t, wid.z, lid);
    // The split's partials reach device memory before it counts itself finished (the
    // storage barrier's memory scope is the device), so the last split reads every
    // other split's whole.
    storageBarrier();
    let counter = t * p.heads + h;
    if (lid == 0u) {
        splits_finished = atomicAdd(&finished[counter], 1u) + 1u;
    }
    if (workgroupUniformLoad(&splits_finished) != p.splits) {
        return;
    }
    storageBarrier();
    if (lid == 0u) {
        atomicStore(&finished[counter], 0u);
    }
    combine_quantized(h, t, lid);
}

// Head h of token t's output, combined and quantized (attention_combine_quantized).
fn combine_quantized(h: u32, t: u32, lid: u32) {
    combine(h, t, lid, true);
    workgroupBarrier();
    let hd4 = p.head_dim / 4u;
    let inside = lid < hd4;
    let values = head_out[min(lid, hd4 - 1u)];
    let chunk = (h * p.head_dim + 4u * lid) / 32u;
    let chunks = p.heads * p.head_dim / 32u;
    quantize_lanes(lid, values, inside, t * p.out_stride, p.out_stride, chunk, chunks);
}
