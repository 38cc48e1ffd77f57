// Greedy decoding on the device: the index of the largest of n logits (the first of
// equal ones, as the host's sampler picks), their largest value and their sum (not a
// finite number where any logit is not, which the host checks), so a decode step
// reads back three numbers instead of the whole vocabulary's logits.
//
// `argmax_parts`: workgroup g reduces logits g·SPAN .. (g + 1)·SPAN to a part
// (largest, its index, sum). `argmax_total`: one workgroup reduces the parts.

struct ArgmaxParams {
    n: u32,
    parts: u32,
}

@group(0) @binding(0) var<uniform> p: ArgmaxParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
// Per part, then (part 0 of) the total: (largest, its index's bits, sum, unused).
@group(0) @binding(2) var<storage, read_write> parts: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> total: array<vec4<f32>>;

const WG: u32 = 256u;
// Logits a part covers: 16 an invocation, read four at a time.
const SPAN: u32 = 4096u;

struct Best {
    value: f32,
    index: u32,
    sum: f32,
}

var<workgroup> shared_best: array<Best, WG>;

// `b` where it beats `a`: larger, or as large and earlier.
fn better(a: Best, b: Best) -> Best {
    var best = a;
    if (b.value > a.value || (b.value == a.value && b.index < a.index)) {
        best = b;
    }
    best.sum = a.sum + b.sum;
    return best;
}

fn reduce_best(lid: u32, own: Best) -> Best {
    shared_best[lid] = own;
    workgroupBarrier();
    for (var step = WG / 2u; step > 0u; step >>= 1u) {
        if (lid < step) {
            shared_best[lid] = better(shared_best[lid], shared_best[lid + step]);
        }
        workgroupBarrier();
    }
    return shared_best[0];
}

const NONE: Best = Best(-3.4e38, 0xffffffffu, 0.0);

@compute @workgroup_size(WG)
fn argmax_parts(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let start = wid.x * SPAN;
    var best = NONE;
    for (var i = start + lid; i < min(start + SPAN, p.n); i += 4u * WG) {
        let at = vec4<u32>(i, i + WG, i + 2u * WG, i + 3u * WG);
        let values = vec4<f32>(logits[at.x], logits[at.y], logits[at.z], logits[at.w]);
        for (var j = 0u; j < 4u; j++) {
            if (at[j] < p.n) {
                best = better(best, Best(values[j], at[j], values[j]));
            }
        }
    }
    let part = reduce_best(lid, best);
    if (lid == 0u) {
        parts[wid.x] = vec4<f32>(part.value, bitcast<f32>(part.index), part.sum, 0.0);
    }
}

@compute @workgroup_size(WG)
fn argmax_total(@builtin(local_invocation_index) lid: u32) {
    var best = NONE;
    for (var i = lid; i < p.parts; i += WG) {
        let part = parts[i];
        best = better(best, Best(part.x, bitcast<u32>(part.y), part.z));
    }
    let all = reduce_best(lid, best);
    if (lid == 0u) {
        total[0] = vec4<f32>(all.value, bitcast<f32>(all.index), all.sum, 0.0);
    }
}
