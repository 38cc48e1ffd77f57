// Top-k sampling on the device: the token a uniform draw picks from top_k.wgsl's
// candidates, as the host's sampler picks it (CandidateSampling::pick in the SDK: the
// first `k`, cut by top-p and min-p on their probabilities at a temperature of 1, then
// drawn at `temperature`), written where argmax.wgsl writes its pick, so a sampled
// decode step can be queued behind the one before it as a greedy one is, fed on the
// device the token this one picks. One invocation walks at most K candidates, in the
// host's order, so the sums round as the host's do; only `exp` may differ from the
// host's by an ulp or so.

struct SampleParams {
    k: u32,
    vocab: u32,
    top_p: f32,
    min_p: f32,
    temperature: f32,
    draw: f32,
}

@group(0) @binding(0) var<uniform> p: SampleParams;
// top_k.wgsl's total: K candidates (value, index's bits), largest first, then (sum, 0).
@group(0) @binding(1) var<storage, read> candidates: array<vec2<f32>>;
// argmax.wgsl's total: (largest, the pick's index's bits, sum, unused).
@group(0) @binding(2) var<storage, read_write> pick: array<vec4<f32>>;

const K: u32 = 64u;

var<private> weights: array<f32, K>;

// The weights of the first n candidates at temperature t, relative to the first, and
// their sum, added in order.
fn soften(n: u32, t: f32) -> f32 {
    let largest = candidates[0].x;
    var total = 0.0;
    for (var i = 0u; i < n; i++) {
        weights[i] = exp((candidates[i].x - largest) / t);
        total += weights[i];
    }
    return total;
}

@compute @workgroup_size(1)
fn sample() {
    // Candidates past the vocabulary (a vocabulary of fewer than K) are none.
    var n = 0u;
    while (n < min(p.k, K) && bitcast<u32>(candidates[n].y) < p.vocab) {
        n++;
    }
    var total = soften(n, 1.0);
    if (p.top_p < 1.0) {
        var sum = 0.0;
        var keep = n;
        for (var i = 0u; i < n; i++) {
            sum += weights[i] / total;
            if (sum >= p.top_p) {
                keep = i + 1u;
                break;
            }
        }
        n = max(keep, 1u);
    }
    if (p.min_p > 0.0) {
        let least = weights[0] / total * p.min_p;
        var keep = 0u;
        while (keep < n && weights[keep] / total >= least) {
            keep++;
        }
        n = max(keep, 1u);
    }
    total = soften(n, p.temperature);
    var draw = p.draw;
    var token = bitcast<u32>(candidates[max(n, 1u) - 1u].y);
    for (var i = 0u; i < n; i++) {
        let probability = weights[i] / total;
        if (draw < probability) {
            token = bitcast<u32>(candidates[i].y);
            break;
        }
        draw -= probability;
    }
    pick[0] = vec4<f32>(candidates[0].x, bitcast<f32>(token), candidates[K].x, 0.0);
}
