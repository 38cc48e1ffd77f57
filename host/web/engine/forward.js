// The forward pass in the page, as plugins/webgpu/src/forward.rs records it: weights
// in their stored GGUF encoding (split at the binding limit), norms and biases as f32,
// the KV cache and activations of one batch of up to UBATCH tokens, and each layer's
// steps following the architecture's flags (QK-norm, Q/K/V biases, sandwich norms,
// the activation, scaled embeddings, sliding windows).

import { Batch, Bindings, MAX_HEAD_DIM, attentionSplits, view } from './kernels.js';

export const UBATCH = 32;
const F32 = 4;

// Upload a matrix of `ncols` × `nrows`, split into parts that fit one binding.
function uploadMatrix(gpu, name, tensor, bytes) {
  const [ncols, nrows] = tensor.dims;
  const multiple = Math.max(tensor.blockElements, 32);
  if (ncols % multiple !== 0) {
    throw new Error(`tensor \`${name}\` (${tensor.type}) has rows of ${ncols} elements; the kernels need a multiple of ${multiple}`);
  }
  const rowBytes = tensor.bytes / nrows;
  const rowsPerPart = Math.max(1, Math.floor((gpu.bindingLimit - 8) / rowBytes));
  const parts = [];
  for (let row0 = 0; row0 < nrows; row0 += rowsPerPart) {
    const rows = Math.min(rowsPerPart, nrows - row0);
    parts.push({ buffer: gpu.upload(name, bytes.subarray(row0 * rowBytes, (row0 + rows) * rowBytes)), row0, rows });
  }
  return { type: tensor.type, ncols, nrows, parts };
}

function f16ToF32(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 31;
  const fraction = bits & 1023;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

// A norm or bias vector as f32 (they are tiny; expanding costs nothing).
function uploadVector(gpu, name, tensor, bytes) {
  const count = tensor.dims.reduce((a, b) => a * b, 1);
  const values = new Float32Array(count);
  const data = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (tensor.type === 'F32') {
    for (let i = 0; i < count; i++) values[i] = data.getFloat32(i * 4, true);
  } else if (tensor.type === 'F16') {
    for (let i = 0; i < count; i++) values[i] = f16ToF32(data.getUint16(i * 2, true));
  } else {
    throw new Error(`vector tensor \`${name}\` has type ${tensor.type} (F32 and F16 are read)`);
  }
  return gpu.upload(name, new Uint8Array(values.buffer));
}

// The GGUF tensors of one layer: [key, file name, matrix?], as the architecture has them.
function layerTensors(arch, index) {
  const b = `blk.${index}.`;
  const list = [
    ['attnNorm', 'attn_norm.weight', false],
    ['q', 'attn_q.weight', true],
    ['k', 'attn_k.weight', true],
    ['v', 'attn_v.weight', true],
    ['o', 'attn_output.weight', true],
    ['ffnNorm', 'ffn_norm.weight', false],
    ['gate', 'ffn_gate.weight', true],
    ['up', 'ffn_up.weight', true],
    ['down', 'ffn_down.weight', true],
  ];
  if (arch.qkv_bias) list.push(['qBias', 'attn_q.bias', false], ['kBias', 'attn_k.bias', false], ['vBias', 'attn_v.bias', false]);
  if (arch.qk_norm) list.push(['qNorm', 'attn_q_norm.weight', false], ['kNorm', 'attn_k_norm.weight', false]);
  if (arch.sandwich_norms) list.push(['postAttnNorm', 'post_attention_norm.weight', false], ['postFfnNorm', 'post_ffw_norm.weight', false]);
  return list.map(([key, name, matrix]) => [key, b + name, matrix]);
}

// Every tensor name the model needs, for progress accounting before the upload.
export function neededTensors(gguf, config) {
  const names = ['token_embd.weight', 'output_norm.weight'];
  if (gguf.tensor('output.weight')) names.push('output.weight');
  for (let i = 0; i < config.nLayer; i++) names.push(...layerTensors(config.arch, i).map(([, name]) => name));
  return names;
}

export async function loadWeights(gpu, gguf, config, types, onBytes) {
  const fetchTensor = async (name, matrix) => {
    const tensor = gguf.tensor(name);
    if (!tensor) throw new Error(`tensor \`${name}\` is missing`);
    if (matrix && !types.includes(tensor.type)) {
      throw new Error(`tensor \`${name}\` has type ${tensor.type}; the kernels read ${types.join(', ')}`);
    }
    const bytes = await gguf.tensorBytes(name, onBytes);
    return matrix ? uploadMatrix(gpu, name, tensor, bytes) : uploadVector(gpu, name, tensor, bytes);
  };
  const tokenEmbd = await fetchTensor('token_embd.weight', true);
  const layers = [];
  for (let i = 0; i < config.nLayer; i++) {
    const layer = {};
    for (const [key, name, matrix] of layerTensors(config.arch, i)) layer[key] = await fetchTensor(name, matrix);
    layers.push(layer);
  }
  return {
    tokenEmbd,
    layers,
    outputNorm: await fetchTensor('output_norm.weight', false),
    output: gguf.tensor('output.weight') ? await fetchTensor('output.weight', true) : tokenEmbd,
  };
}

// The KV cache and one batch's activations.
export class Scratch {
  constructor(gpu, config, ctx) {
    if (config.headDim > MAX_HEAD_DIM) {
      throw new Error(`heads of ${config.headDim} values; the attention kernel holds at most ${MAX_HEAD_DIM}`);
    }
    const kvLayer = ctx * config.kvDim * F32;
    const slots = UBATCH * config.heads * attentionSplits(ctx, null);
    if (kvLayer > gpu.bindingLimit || slots * config.headDim * F32 > gpu.bindingLimit) {
      throw new Error(`a context of ${ctx} tokens needs buffers over the device's binding limit of ${gpu.bindingLimit >> 20} MiB`);
    }
    const act = (label, width) => gpu.storage(label, UBATCH * width * F32);
    this.ctx = ctx;
    this.h = act('h', config.nEmbd);
    this.xn = act('xn', config.nEmbd);
    this.q = act('q', config.qDim);
    this.qRaw = config.arch.qk_norm ? act('q_raw', config.qDim) : null;
    this.kRaw = config.arch.qk_norm ? act('k_raw', config.kvDim) : null;
    this.attn = act('attn', config.qDim);
    this.gate = act('gate', config.nFf);
    this.up = act('up', config.nFf);
    this.sums = gpu.storage('attention sums', slots * config.headDim * F32);
    this.stats = gpu.storage('attention stats', slots * 2 * F32);
    this.logits = gpu.storage('logits', config.vocab * F32);
    this.ids = gpu.storage('ids', UBATCH * 4);
    this.kCache = Array.from({ length: config.nLayer }, () => gpu.storage('k cache', kvLayer));
    this.vCache = Array.from({ length: config.nLayer }, () => gpu.storage('v cache', kvLayer));
    this.readback = gpu.readback(config.vocab * F32);
    this.bindings = new Bindings();
  }
}

export class Forward {
  constructor(gpu, kernels, config, weights) {
    Object.assign(this, { gpu, kernels, config, weights });
  }

  // Evaluate `tokens` at positions pos0.., filling the cache; the last token's logits.
  async run(scratch, tokens, pos0) {
    const end = pos0 + tokens.length;
    if (!tokens.length || end > scratch.ctx) throw new Error(`${end} tokens do not fit the context of ${scratch.ctx}`);
    let pos = pos0;
    for (let at = 0; at < tokens.length; at += UBATCH) {
      const chunk = tokens.slice(at, at + UBATCH);
      const last = at + UBATCH >= tokens.length;
      this.gpu.device.queue.writeBuffer(scratch.ids, 0, new Uint32Array(chunk));
      const batch = new Batch(this.gpu, this.kernels);
      this.#record(batch, scratch, chunk.length, pos, last);
      if (last) batch.copy(scratch.logits, scratch.readback, this.config.vocab * F32);
      batch.submit(scratch.bindings);
      pos += chunk.length;
    }
    await scratch.readback.mapAsync(GPUMapMode.READ);
    const logits = new Float32Array(scratch.readback.getMappedRange().slice(0));
    scratch.readback.unmap();
    if (this.gpu.lost) throw new Error(`the GPU device was lost: ${this.gpu.lost}`);
    return logits;
  }

  #record(batch, s, ntok, pos, logits) {
    const c = this.config;
    const arch = c.arch;
    const [e, qDim, kvDim] = [c.nEmbd, c.qDim, c.kvDim];
    const row = (buffer, width) => view(buffer, 0, width);
    const shape = { heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, scale: c.attentionScale };
    const w = this.weights;
    batch.getRows(w.tokenEmbd, s.ids, row(s.h, e), ntok);
    if (arch.scale_embeddings) batch.scaleRows(row(s.h, e), ntok, e, c.embeddingScale());
    w.layers.forEach((layer, index) => {
      const plan = c.layer(index);
      const [kCache, vCache] = [s.kCache[index], s.vCache[index]];
      const cachedK = view(kCache, pos * kvDim, kvDim);
      const cachedV = view(vCache, pos * kvDim, kvDim);
      const norm = (x, weight, y, accumulate) => batch.rmsnorm(x, weight, y, ntok, e, c.eps, accumulate);
      const project = (matrix, x, y, accumulate, bias) => {
        batch.matmul(matrix, x, y, ntok, accumulate);
        if (bias) batch.addBias(y, bias, ntok, y.stride);
      };
      norm(row(s.h, e), layer.attnNorm, row(s.xn, e), false);
      if (arch.qk_norm) {
        project(layer.q, row(s.xn, e), row(s.qRaw, qDim), false, layer.qBias);
        project(layer.k, row(s.xn, e), row(s.kRaw, kvDim), false, layer.kBias);
        batch.rmsnorm(row(s.qRaw, qDim), layer.qNorm, row(s.q, qDim), ntok * c.heads, c.headDim, c.eps, false);
        batch.rmsnorm(row(s.kRaw, kvDim), layer.kNorm, cachedK, ntok * c.kvHeads, c.headDim, c.eps, false);
      } else {
        project(layer.q, row(s.xn, e), row(s.q, qDim), false, layer.qBias);
        project(layer.k, row(s.xn, e), cachedK, false, layer.kBias);
      }
      project(layer.v, row(s.xn, e), cachedV, false, layer.vBias);
      batch.rope(row(s.q, qDim), cachedK, ntok, [c.heads, c.kvHeads], c.headDim, c.nRot, pos, c.neox, plan.ropeBase);
      batch.attention(s.q, kCache, vCache, [s.sums, s.stats], s.attn, shape, ntok, pos, plan.window);
      if (arch.sandwich_norms) {
        project(layer.o, row(s.attn, qDim), row(s.xn, e), false);
        norm(row(s.xn, e), layer.postAttnNorm, row(s.h, e), true);
      } else {
        project(layer.o, row(s.attn, qDim), row(s.h, e), true);
      }
      norm(row(s.h, e), layer.ffnNorm, row(s.xn, e), false);
      project(layer.gate, row(s.xn, e), row(s.gate, c.nFf), false);
      batch.matmulGated(layer.up, row(s.xn, e), row(s.gate, c.nFf), ntok, arch.activation);
      if (arch.sandwich_norms) {
        project(layer.down, row(s.gate, c.nFf), row(s.xn, e), false);
        norm(row(s.xn, e), layer.postFfnNorm, row(s.h, e), true);
      } else {
        project(layer.down, row(s.gate, c.nFf), row(s.h, e), true);
      }
    });
    if (logits) {
      batch.rmsnorm(view(s.h, (ntok - 1) * e, e), w.outputNorm, row(s.xn, e), 1, e, c.eps, false);
      batch.matmul(w.output, row(s.xn, e), row(s.logits, c.vocab), 1, false);
    }
  }
}

// Every GPU buffer the model and its scratch hold, for release on idle.
export function destroyAll(weights, scratch) {
  const tensors = [weights.tokenEmbd, weights.output, weights.outputNorm, ...weights.layers.flatMap((l) => Object.values(l))];
  for (const item of tensors) {
    if (item?.parts) item.parts.forEach((part) => part.buffer.destroy());
    else item?.destroy?.();
  }
  if (scratch) {
    for (const value of Object.values(scratch)) {
      if (Array.isArray(value)) value.forEach((buffer) => buffer.destroy());
      else value?.destroy?.();
    }
  }
}
