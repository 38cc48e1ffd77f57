// A model's hyper-parameters from its GGUF metadata, read as model/src/config.rs's
// `Config::from_gguf` reads them, with the architecture's facts taken from the model
// layer's own description (GET /api/architectures, or a static export's copy), never
// written again here. What the engine cannot run is refused by name before any memory
// is spent.

export async function fetchArchitectures(url, headers = {}) {
  const response = await fetch(url, { headers });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

export function configFromGguf(gguf, description) {
  const meta = gguf.metadata;
  const name = meta.get('general.architecture');
  const arch = description.architectures.find((a) => a.gguf_name === name);
  if (!arch) {
    const names = description.architectures.map((a) => a.gguf_name).join(', ');
    throw new Error(`architecture \`${name}\` (the in-page engine runs ${names})`);
  }
  if (arch.altup) {
    throw new Error(`architecture \`${name}\`: the in-page engine does not run Gemma 3n's AltUp block`);
  }
  if (arch.ffn !== 'dense') {
    throw new Error(`architecture \`${name}\`: the in-page engine runs dense feed-forwards, not a mixture of experts`);
  }
  const key = (k) => `${arch.gguf_name}.${k}`;
  const int = (k) => {
    const value = meta.get(key(k));
    if (!(Number.isInteger(value) && value > 0)) throw new Error(`\`${key(k)}\` is missing or out of range`);
    return value;
  };
  const optional = (k, fallback) => (meta.has(key(k)) ? int(k) : fallback);
  const scaling = meta.get(key('rope.scaling.type'));
  if (scaling && scaling !== 'none') throw new Error(`rope scaling \`${scaling}\` is not supported`);
  if (gguf.tensor('rope_freqs.weight')) throw new Error('rope frequency factors (rope_freqs.weight) are not supported');
  const nEmbd = int('embedding_length');
  const heads = int('attention.head_count');
  const kvHeads = optional('attention.head_count_kv', heads);
  const headDim = optional('attention.key_length', Math.floor(nEmbd / heads));
  const nRot = optional('rope.dimension_count', headDim);
  if (heads % kvHeads !== 0 || nRot > headDim || nRot % 2 !== 0) {
    throw new Error(`inconsistent attention shape: ${heads} heads, ${kvHeads} KV heads, rope over ${nRot} of ${headDim}`);
  }
  let slidingWindow = null;
  let windowPeriod = 1;
  let localRopeBase = 0;
  if (arch.sliding_window) {
    if (Array.isArray(meta.get(key('attention.sliding_window_pattern')))) {
      throw new Error('a per-layer sliding-window pattern is not supported');
    }
    slidingWindow = int('attention.sliding_window');
    windowPeriod = optional('attention.sliding_window_pattern', arch.sliding_window.period);
    localRopeBase = meta.get(key('rope.freq_base_swa')) ?? arch.sliding_window.local_rope_base;
  }
  const embeddings = gguf.tensor('token_embd.weight');
  if (!embeddings) throw new Error('tensor `token_embd.weight` is missing');
  const eps = meta.get(key('attention.layer_norm_rms_epsilon'));
  if (typeof eps !== 'number') throw new Error(`\`${key('attention.layer_norm_rms_epsilon')}\` is missing`);
  return {
    arch,
    nEmbd,
    nLayer: int('block_count'),
    nFf: int('feed_forward_length'),
    heads,
    kvHeads,
    headDim,
    nRot,
    eps,
    ropeBase: meta.get(key('rope.freq_base')) ?? 10000,
    neox: arch.gguf_rope === 'halves',
    slidingWindow,
    windowPeriod,
    localRopeBase,
    attentionScale: 1 / Math.sqrt(headDim),
    vocab: embeddings.dims[1],
    contextLength: optional('context_length', 2048),
    get qDim() { return this.heads * this.headDim; },
    get kvDim() { return this.kvHeads * this.headDim; },
    embeddingScale() { return arch.scale_embeddings ? Math.sqrt(nEmbd) : 1; },
    // What layer `index` does: its RoPE base and attention window.
    layer(index) {
      if (this.slidingWindow && index % this.windowPeriod !== this.windowPeriod - 1) {
        return { ropeBase: this.localRopeBase, window: this.slidingWindow };
      }
      return { ropeBase: this.ropeBase, window: null };
    },
  };
}
