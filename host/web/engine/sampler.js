// Choosing the next token from the logits by the native rules (sdk/src/helpers/sampling.rs)
// and llama-server's defaults (SDK's `Sampling::default`), so one request behaves the same
// in the page: the logit bias, then the repeat, frequency and presence penalties over the
// last `repeat_last_n` tokens (prompt and answer); greedy at temperature 0 (the first of
// the largest); else top-k, top-p and min-p on the probabilities at temperature 1, and a
// draw at the request's temperature. A seed gives a repeatable draw (the page's own
// generator: draws do not match the native one's ChaCha8).

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

// Each number field's range, as the native API checks it (host/src/api/params.rs).
const RANGES = {
  temperature: [0, 2],
  top_p: [0, 1],
  min_p: [0, 1],
  repeat_penalty: [0, 10],
  presence_penalty: [-2, 2],
  frequency_penalty: [-2, 2],
};
const COUNTS = ['top_k', 'repeat_last_n'];
const MAX_LOGIT_BIAS = 1024;

// The first sampling field of `request` out of its range, as a sentence, or null.
export function samplingProblem(request) {
  for (const [field, [low, high]] of Object.entries(RANGES)) {
    const value = request[field];
    if (value === undefined || value === null) continue;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < low || value > high) {
      return `\`${field}\` must be a number from ${low} to ${high}, got ${JSON.stringify(value)}`;
    }
  }
  for (const field of COUNTS) {
    const value = request[field];
    if (value !== undefined && value !== null && !(Number.isInteger(value) && value >= 0)) {
      return `\`${field}\` must be a whole number, 0 or more, got ${JSON.stringify(value)}`;
    }
  }
  const bias = request.logit_bias;
  if (bias === undefined || bias === null) return null;
  if (typeof bias !== 'object' || Array.isArray(bias)) return '`logit_bias` maps token ids to numbers';
  const entries = Object.entries(bias);
  if (entries.length > MAX_LOGIT_BIAS) return `\`logit_bias\` takes at most ${MAX_LOGIT_BIAS} tokens, got ${entries.length}`;
  for (const [token, value] of entries) {
    if (!/^\s*\d+\s*$/.test(token)) return `\`logit_bias\` keys are token ids of the model's vocabulary, got \`${token}\``;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < -100 || value > 100) {
      return `\`logit_bias\` values are numbers from -100 to 100, got ${JSON.stringify(value)} for token ${token.trim()}`;
    }
  }
  return null;
}

export class Sampler {
  constructor({
    temperature = 0.8,
    top_p: topP = 0.95,
    top_k: topK = 40,
    min_p: minP = 0.05,
    repeat_penalty: repeatPenalty = 1.0,
    repeat_last_n: repeatLastN = 64,
    presence_penalty: presencePenalty = 0,
    frequency_penalty: frequencyPenalty = 0,
    logit_bias: logitBias = {},
    seed,
  } = {}) {
    Object.assign(this, { temperature, topP, topK, minP, repeatLastN, presencePenalty, frequencyPenalty });
    this.repeatPenalty = repeatPenalty > 0 ? repeatPenalty : 1;
    this.bias = Object.entries(logitBias ?? {}).map(([token, value]) => [Number(token), value]);
    this.recent = [];
    this.random = seed === undefined || seed === null ? Math.random : seeded(seed);
  }

  // Record a token (prompt or answer) for the penalties' window.
  accept(token) {
    if (this.repeatLastN === 0) return;
    if (this.recent.length === this.repeatLastN) this.recent.shift();
    this.recent.push(token);
  }

  sample(rawLogits) {
    const logits = this.#adjusted(rawLogits);
    if (this.temperature <= 0) return argmax(logits);
    const k = this.topK > 0 ? Math.min(this.topK, logits.length) : logits.length;
    let candidates = topCandidates(logits, k);
    const probabilities = softmax(candidates, 1);
    if (this.topP < 1) {
      let total = 0;
      const at = probabilities.findIndex((p) => (total += p) >= this.topP);
      candidates = candidates.slice(0, Math.max(at < 0 ? candidates.length : at + 1, 1));
    }
    if (this.minP > 0) {
      const floor = probabilities[0] * this.minP;
      let keep = 0;
      while (keep < candidates.length && probabilities[keep] >= floor) keep++;
      candidates = candidates.slice(0, Math.max(keep, 1));
    }
    let draw = this.random();
    const weights = softmax(candidates, this.temperature);
    for (let i = 0; i < candidates.length; i++) {
      if (draw < weights[i]) return candidates[i][0];
      draw -= weights[i];
    }
    return candidates[candidates.length - 1][0];
  }

  // The logits after the bias and the penalties: the repeat penalty shrinks a seen
  // token's positive logit and pushes a negative one further, then the frequency penalty
  // is taken once per occurrence and the presence penalty once.
  #adjusted(rawLogits) {
    const penalised = this.repeatPenalty !== 1 || this.frequencyPenalty !== 0 || this.presencePenalty !== 0;
    if (!this.bias.length && !penalised) return rawLogits;
    const logits = Float32Array.from(rawLogits);
    for (const [token, value] of this.bias) if (token < logits.length) logits[token] += value;
    if (!penalised) return logits;
    const counts = new Map();
    for (const token of this.recent) counts.set(token, (counts.get(token) ?? 0) + 1);
    for (const [token, count] of counts) {
      if (token >= logits.length) continue;
      const logit = logits[token];
      logits[token] = logit > 0 ? logit / this.repeatPenalty : logit * this.repeatPenalty;
      logits[token] -= count * this.frequencyPenalty + this.presencePenalty;
    }
    return logits;
  }
}

// Softmax of the candidates' logits at `temperature`.
function softmax(candidates, temperature) {
  const max = candidates[0][1];
  const weights = candidates.map(([, logit]) => Math.exp((logit - max) / temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  return weights.map((weight) => weight / total);
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
