// Choosing the next token from the logits: greedy at temperature 0 (the first of the
// largest, as sdk/src/helpers/sampling.rs's argmax), else top-k, top-p and the
// temperature's softmax. A seed gives a repeatable draw (the page's own generator:
// draws do not match the native one's ChaCha8).

export function argmax(logits) {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

// Mulberry32: small, seedable, good enough to pick among candidates.
function seeded(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Sampler {
  constructor({ temperature = 0.8, top_p: topP = 0.95, top_k: topK = 40, seed } = {}) {
    this.temperature = temperature;
    this.topP = topP;
    this.topK = topK;
    this.random = seed === undefined || seed === null ? Math.random : seeded(seed);
  }

  sample(logits) {
    if (this.temperature <= 0) return argmax(logits);
    const k = this.topK > 0 ? Math.min(this.topK, logits.length) : logits.length;
    const candidates = topCandidates(logits, k);
    const max = candidates[0][1];
    const weights = candidates.map(([, logit]) => Math.exp((logit - max) / this.temperature));
    const total = weights.reduce((a, b) => a + b, 0);
    let kept = 0;
    let mass = 0;
    while (kept < candidates.length && (kept === 0 || mass < this.topP)) mass += weights[kept++] / total;
    let draw = this.random() * mass;
    for (let i = 0; i < kept; i++) {
      draw -= weights[i] / total;
      if (draw < 0) return candidates[i][0];
    }
    return candidates[kept - 1][0];
  }
}

// The `k` largest logits as [id, logit], largest first.
function topCandidates(logits, k) {
  const top = [];
  for (let id = 0; id < logits.length; id++) {
    const logit = logits[id];
    if (top.length === k && logit <= top[k - 1][1]) continue;
    let at = top.length < k ? top.length : k - 1;
    if (top.length < k) top.push(null);
    while (at > 0 && top[at - 1][1] < logit) {
      top[at] = top[at - 1];
      at--;
    }
    top[at] = [id, logit];
  }
  return top;
}
