// Mixture-of-experts routing, one invocation per token, as the model layer's
// `Experts::route`: the softmax of the router's logits over `count` experts, the `used`
// most probable (highest first, the lower index first among equals), their
// probabilities rescaled to sum to 1 with `normalize`, written to `route` as slots of
// (expert, weight bits) that the routed products read (quant.wgsl).

struct RouteParams {
    ntok: u32,
    count: u32,
    used: u32,
    normalize: u32,
}

@group(0) @binding(0) var<uniform> p: RouteParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> route: array<u32>;

// Whether expert `a` of score `sa` comes before expert `b` of score `sb`.
fn before(sa: f32, a: u32, sb: f32, b: u32) -> bool {
    return sa > sb || (sa == sb && a < b);
}

@compute @workgroup_size(64)
fn route_tokens(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if (t >= p.ntok) {
        return;
    }
    let row = t * p.count;
    var max_logit = logits[row];
    for (var e = 1u; e < p.count; e++) {
        max_logit = max(max_logit, logits[row + e]);
    }
    var total = 0.0;
    for (var e = 0u; e < p.count; e++) {
        total += exp(logits[row + e] - max_logit);
    }
    // Each pass takes the best expert after the previous pass's in the order (scores
    // are at most 1, so the first pass starts above them all).
    var last_score = 2.0;
    var last = 0u;
    var chosen = 0.0;
    let slot0 = t * p.used;
    for (var k = 0u; k < p.used; k++) {
        var best_score = -1.0;
        var best = 0u;
        for (var e = 0u; e < p.count; e++) {
            let score = exp(logits[row + e] - max_logit);
            if (before(last_score, last, score, e) && before(score, e, best_score, best)) {
                best_score = score;
                best = e;
            }
        }
        let probability = best_score / total;
        route[2u * (slot0 + k)] = best;
        route[2u * (slot0 + k) + 1u] = bitcast<u32>(probability);
        chosen += probability;
        last_score = best_score;
        last = best;
    }
    if (p.normalize == 1u) {
        // llama.cpp keeps the sum from 0 at f16's smallest normal number.
        let divisor = max(chosen, 6.103515625e-5);
        for (var k = 0u; k < p.used; k++) {
            let at = 2u * (slot0 + k) + 1u;
            route[at] = bitcast<u32>(bitcast<f32>(route[at]) / divisor);
        }
    }
}
