// Top-k sampling's candidates on the device: the K largest of n logits with their
// indices, largest first (equal ones by index; a NaN ranks below every number), and the
// sum of all logits (not a finite number where any logit is not, which the host
// checks), so a sampled decode step reads back K + 1 pairs instead of the vocabulary's
// logits.
//
// `top_k_parts`: workgroup g sorts logits g·SPAN .. (g + 1)·SPAN in workgroup memory
// and writes its first K and their sum as part g. `top_k_total`: one workgroup sorts
// the parts' candidates SPAN at a time, keeping the first K of each sort for the next,
// and writes the first K and the sum. Both sort by bitonic merges, a barrier a stage.

struct TopKParams {
    n: u32,
    parts: u32,
}

@group(0) @binding(0) var<uniform> p: TopKParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
// Part g at g·(K + 1): K candidates (value, index's bits), then (sum, 0).
@group(0) @binding(2) var<storage, read_write> parts: array<vec2<f32>>;
// The same for all the logits.
@group(0) @binding(3) var<storage, read_write> total: array<vec2<f32>>;

const WG: u32 = 256u;
// Values a sort holds: with their ids, the 16 KiB of workgroup memory every WebGPU
// device has, and all this file takes (the sums are reduced in `values` before a sort).
const SPAN: u32 = 2048u;
const K: u32 = 64u;
const NONE: u32 = 0xffffffffu;
const LOWEST: f32 = -3.4e38;

var<workgroup> values: array<f32, SPAN>;
var<workgroup> ids: array<u32, SPAN>;

// Whether slot a ranks before slot b.
fn before(a: u32, b: u32) -> bool {
    return values[a] > values[b] || (values[a] == values[b] && ids[a] < ids[b]);
}

// Sort the slots, first to rank first.
fn sort(lid: u32) {
    workgroupBarrier();
    for (var size = 2u; size <= SPAN; size <<= 1u) {
        for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {
            for (var j = lid; j < SPAN / 2u; j += WG) {
                // Slot i has bit `stride` clear; its partner has it set.
                let i = (j / stride) * stride * 2u + j % stride;
                let partner = i + stride;
                // Blocks of `size` alternate direction until the last merge.
                let first_ranks_first = (i & size) == 0u;
                if (before(i, partner) != first_ranks_first) {
                    let value = values[i];
                    let id = ids[i];
                    values[i] = values[partner];
                    ids[i] = ids[partner];
                    values[partner] = value;
                    ids[partner] = id;
                }
            }
            workgroupBarrier();
        }
    }
}

fn put(slot: u32, value: f32, id: u32) {
    // NaN fails every comparison; it ranks last as the lowest value.
    values[slot] = select(LOWEST, value, value == value);
    ids[slot] = id;
}

// The sum of every invocation's `value`, returned to all of them, reduced in `values`
// (before the slots are filled).
fn reduce_sum(lid: u32, value: f32) -> f32 {
    values[lid] = value;
    workgroupBarrier();
    for (var step = WG / 2u; step > 0u; step >>= 1u) {
        if (lid < step) {
            values[lid] += values[lid + step];
        }
        workgroupBarrier();
    }
    let total = values[0];
    // Every invocation has read the sum before the slots are written.
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WG)
fn top_k_parts(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = wid.x;
    var own: array<f32, SPAN / WG>;
    var sum = 0.0;
    for (var j = 0u; j < SPAN / WG; j++) {
        let index = g * SPAN + lid + j * WG;
        own[j] = select(LOWEST, logits[min(index, p.n - 1u)], index < p.n);
        sum += select(0.0, own[j], index < p.n);
    }
    let part_sum = reduce_sum(lid, sum);
    for (var j = 0u; j < SPAN / WG; j++) {
        let index = g * SPAN + lid + j * WG;
        put(lid + j * WG, own[j], select(NONE, index, index < p.n));
    }
    sort(lid);
    let out = g * (K + 1u);
    if (lid < K) {
        parts[out + lid] = vec2<f32>(values[lid], bitcast<f32>(ids[lid]));
    }
    if (lid == 0u) {
        parts[out + K] = vec2<f32>(part_sum, 0.0);
    }
}

@compute @workgroup_size(WG)
fn top_k_total(@builtin(local_invocation_index) lid: u32) {
    var sum = 0.0;
    for (var g = lid; g < p.parts; g += WG) {
        sum += parts[g * (K + 1u) + K].x;
    }
    let all_sum = reduce_sum(lid, sum);
    // Candidate c is part c / K's (c % K)-th. The first sort fills every slot; each
    // later one keeps the K ranked first and fills the rest.
    let candidates = p.parts * K;
    var next = 0u;
    var first = 0u;
    loop {
        for (var e = first + lid; e < SPAN; e += WG) {
            let c = next + e - first;
            if (c < candidates) {
                let pair = parts[(c / K) * (K + 1u) + c % K];
                put(e, pair.x, bitcast<u32>(pair.y));
            } else {
                put(e, LOWEST, NONE);
            }
        }
        sort(lid);
        next += SPAN - first;
        first = K;
        if (next >= candidates) {
            break;
        }
    }
    if (lid < K) {
        total[lid] = vec2<f32>(values[lid], bitcast<f32>(ids[lid]));
    }
    if (lid == 0u) {
        total[K] = vec2<f32>(all_sum, 0.0);
    }
}
