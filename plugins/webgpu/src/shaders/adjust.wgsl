// A step's logits adjusted in place as the host's sampler adjusts them before ranking
// them (LogitAdjustments::apply in the SDK): each logit bias added in turn, then each
// token seen in the recent window penalised once: the repeat penalty, then what the
// frequency and presence penalties take for its occurrences (LogitAdjustments::
// deduction, computed by the host so that it rounds as the host's does). Top-k
// (top_k.wgsl) then ranks the adjusted logits, so a request with a bias or penalties
// reads back its candidates, not the vocabulary's logits.

struct AdjustParams {
    bias_count: u32,
    seen_count: u32,
    vocab: u32,
    repeat: f32,
}

@group(0) @binding(0) var<uniform> p: AdjustParams;
// The biases as (token, the bias's bits), in the request's order, then the seen tokens
// as (token, the deduction's bits), each token once.
@group(0) @binding(1) var<storage, read> entries: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> logits: array<f32>;

const WG: u32 = 64u;

@compute @workgroup_size(WG)
fn adjust(@builtin(local_invocation_index) lid: u32) {
    // One invocation adds the biases, in order, as a token may have several.
    if (lid == 0u) {
        for (var i = 0u; i < p.bias_count; i++) {
            let entry = entries[i];
            if (entry.x < p.vocab) {
                logits[entry.x] += bitcast<f32>(entry.y);
            }
        }
    }
    storageBarrier();
    workgroupBarrier();
    // Each seen token is listed once, so each invocation's tokens are its own.
    for (var i = lid; i < p.seen_count; i += WG) {
        let entry = entries[p.bias_count + i];
        if (entry.x < p.vocab) {
            var logit = logits[entry.x];
            if (logit > 0.0) {
                logit = logit / p.repeat;
            } else {
                logit = logit * p.repeat;
            }
            logits[entry.x] = logit - bitcast<f32>(entry.y);
        }
    }
}
