// The native WebGPU plugin's kernels, in the browser: the same WGSL files (served from
// the plugin's source by the host, app/shaders/ beside the page), assembled as
// plugins/webgpu/src/kernels.rs assembles them (quant.wgsl, rotation.wgsl,
// activation.wgsl, the weight type's decoder cut from decode.wgsl, then the kernel),
// with the same parameter blocks, bindings and workgroup counts, recorded into one
// command buffer per batch.

const SHADER_FILES = [
  'quant', 'decode', 'activation', 'matmul_rows', 'matvec', 'input_f32', 'matmul_tiled', 'reduce_subgroup',
  'reduce_shared', 'norm', 'quantize', 'rope', 'rotation', 'attention', 'gated', 'rows',
];

// On the GPU plan, products of up to this many tokens use the matrix–vector kernel.
const MATVEC_TOKENS = 8;
// Bytes reserved per dispatch in the parameter buffer (a block is at most 128 bytes).
const PARAM_BYTES = 128;
// quant.wgsl's `route` word of a product that is not a routed expert's.
const UNROUTED = 0xffffffff;
// Keys per attention split (`KEYS` in attention.wgsl).
const ATTENTION_KEYS = 128;

export const MAX_HEAD_DIM = 256;

// The value of `const NAME: u32 = Nu;` in a kernel's source: each product kernel says
// there how many rows and tokens a workgroup covers (as kernels.rs reads it).
function shaderConstant(source, name) {
  const match = source.match(new RegExp(`const ${name}: u32 = (\\d+)u;`));
  if (!match) throw new Error(`a product kernel declares const ${name}`);
  return Number(match[1]);
}

async function fetchShaders(base) {
  const texts = await Promise.all(
    SHADER_FILES.map(async (name) => {
      const response = await fetch(`${base}${name}.wgsl`);
      if (!response.ok) throw new Error(`kernel ${name}.wgsl: ${response.status}`);
      return [name, await response.text()];
    }),
  );
  return Object.fromEntries(texts);
}

// The decoder of type `type` (its block size, `load_chunk` and `decode_loaded`), cut
// from decode.wgsl (sections start `//! TYPE`).
function decoder(decoders, type) {
  const marker = `//! ${type}\n`;
  const at = decoders.indexOf(marker);
  if (at < 0) throw new Error(`decode.wgsl has no decoder for ${type}`);
  const start = at + marker.length;
  const end = decoders.indexOf('//! ', start);
  return decoders.slice(start, end < 0 ? undefined : end);
}

function splitGroups(count) {
  return [Math.min(count, 65535), Math.ceil(count / 65535)];
}

export class Kernels {
  // Pipelines for `plan` ('software' | 'gpu') and the weight types `types`.
  static async create(gpu, types, base = new URL('../shaders/', import.meta.url).href) {
    const shaders = await fetchShaders(base);
    const kernels = new Kernels(gpu, shaders, gpu.profile.kernels);
    await kernels.#compile(types);
    return kernels;
  }

  constructor(gpu, shaders, plan) {
    this.gpu = gpu;
    this.shaders = shaders;
    this.plan = plan;
  }

  async #pipeline(label, source, entry) {
    const device = this.gpu.device;
    const module = device.createShaderModule({ label, code: source });
    try {
      return await device.createComputePipelineAsync({ label, layout: 'auto', compute: { module, entryPoint: entry } });
    } catch (error) {
      const info = await module.getCompilationInfo();
      const messages = info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join('; ');
      throw new Error(`kernel ${label} does not compile: ${messages || error.message}`);
    }
  }

  async #compile(types) {
    const s = this.shaders;
    // quant.wgsl's store calls rotation.wgsl's rotation (the native products that rotate
    // Q and K as they store them; the page's words leave it off).
    const prefix = (type) => `${s.quant}\n${s.rotation}\n${s.activation}\n${decoder(s.decode, type)}`;
    let few;
    let many = null;
    if (this.plan === 'software') {
      few = { kernel: s.matmul_rows, entry: 'matmul' };
    } else {
      const subgroups = this.gpu.profile.subgroups;
      const reduce = subgroups ? s.reduce_subgroup : s.reduce_shared;
      // Browsers need the extension named in the module; wgpu's naga does not.
      const enable = subgroups ? 'enable subgroups;\n' : '';
      // The decode product with its input in f32 (the native plugin's default input is
      // quantized to 8 bits, in two parts, by the norm or attention pass that writes it
      // or by a pass of its own; the page has none of those).
      few = { kernel: `${s.matvec}\n${reduce}\n${s.input_f32}`, entry: 'matvec', enable };
      many = { kernel: s.matmul_tiled, entry: 'matmul_tiled' };
    }
    const product = async (spec) => {
      const pipelines = new Map();
      for (const type of types) {
        const source = `${spec.enable ?? ''}${prefix(type)}\n${spec.kernel}`;
        pipelines.set(type, await this.#pipeline(`${spec.entry} ${type}`, source, spec.entry));
      }
      return {
        pipelines,
        rows: shaderConstant(spec.kernel, 'ROWS'),
        tokens: shaderConstant(spec.kernel, 'TOKENS'),
      };
    };
    this.few = await product(few);
    this.many = many && (await product(many));
    // What plain products bind where a mixture of experts' routed ones bind their
    // routing (quant.wgsl's `route`), as kernels.rs does; their words say unrouted.
    this.unrouted = this.gpu.storage('unrouted', 16);
    // What products of one segment bind where kernels.rs's split products (Q, K and V
    // in one) bind their second and third outputs: two buffers, as writable bindings
    // may not alias. The words left zero say there are no such segments.
    this.unsegmented = [this.gpu.storage('unsegmented', 16), this.gpu.storage('unsegmented', 16)];
    this.getRows = new Map();
    for (const type of types) {
      this.getRows.set(type, await this.#pipeline(`get_rows ${type}`, prefix(type), 'get_rows'));
    }
    // norm.wgsl's and attention.wgsl's entry points that quantize the decode product's
    // input (which the page's products read in f32) call quantize.wgsl, so the modules
    // need it.
    const norm = `${s.norm}\n${s.quantize}`;
    const attention = `${s.attention}\n${s.quantize}`;
    this.rmsnorm = await this.#pipeline('rmsnorm', norm, 'rmsnorm');
    this.rope = await this.#pipeline('rope', `${s.rope}\n${s.rotation}`, 'rope');
    this.attentionSplit = await this.#pipeline('attention split', attention, 'attention_split');
    this.attentionCombine = await this.#pipeline('attention combine', attention, 'attention_combine');
    this.gated = await this.#pipeline('gated', `${s.gated}\n${s.activation}`, 'gated');
    // rows.wgsl's soft cap reads activation.wgsl's tanh, so the module needs it whole.
    const rows = `${s.rows}\n${s.activation}`;
    this.addBias = await this.#pipeline('add_bias', rows, 'add_bias');
    this.scaleRows = await this.#pipeline('scale_rows', rows, 'scale_rows');
  }
}

// Attention splits per (head, token) when the last query sees `keys` keys.
export function attentionSplits(keys, window) {
  return Math.ceil(Math.min(keys, window || Infinity) / ATTENTION_KEYS);
}

// The parameter buffer and bind groups kept from one batch to the next: a decode step
// records the same dispatches over the same buffers every token, so after the first
// only the parameter bytes are written (as `Bindings` in kernels.rs).
export class Bindings {
  constructor() {
    this.params = null;
    this.bound = [];
  }

  destroy() {
    this.params?.destroy();
    this.params = null;
    this.bound = [];
  }

  paramsBuffer(device, bytes) {
    if (this.params && this.params.size >= bytes) return this.params;
    this.params?.destroy();
    let size = 256;
    while (size < bytes) size *= 2;
    this.params = device.createBuffer({ label: 'kernel parameters', size, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    this.bound = [];
    return this.params;
  }

  group(device, params, index, op) {
    const kept = this.bound[index];
    if (
      kept &&
      kept.pipeline === op.pipeline &&
      kept.bindings.length === op.bindings.length &&
      kept.bindings.every(([b, buffer], i) => b === op.bindings[i][0] && buffer === op.bindings[i][1])
    ) {
      return kept.group;
    }
    const entries = [{ binding: 0, resource: { buffer: params, offset: op.params, size: PARAM_BYTES } }];
    for (const [binding, buffer] of op.bindings) entries.push({ binding, resource: { buffer } });
    const group = device.createBindGroup({ layout: op.pipeline.getBindGroupLayout(0), entries });
    this.bound[index] = { pipeline: op.pipeline, bindings: op.bindings, group };
    return group;
  }
}

// A matrix of f32 rows inside a buffer: row t starts at offset + t * stride (in f32).
export const view = (buffer, offset, stride) => ({ buffer, offset, stride });

// Dispatches recorded for one submission, then copies; parameters are written as u32
// words (floats as their bits), exactly as kernels.rs writes them.
export class Batch {
  constructor(gpu, kernels) {
    this.gpu = gpu;
    this.kernels = kernels;
    this.stride = Math.ceil(PARAM_BYTES / gpu.profile.limits.minUniformBufferOffsetAlignment) *
      gpu.profile.limits.minUniformBufferOffsetAlignment;
    this.words = [];
    this.ops = [];
    this.copies = [];
  }

  #push(pipeline, bindings, words, groups) {
    const at = this.ops.length * this.stride;
    this.ops.push({ pipeline, bindings, params: at, groups, words });
  }

  matmul(w, x, y, ntok, accumulate, scale = 1) {
    this.#product(w, x, y, ntok, accumulate ? 1 : 0, scale);
  }

  matmulGated(w, x, gate, ntok, activation) {
    this.#product(w, x, gate, ntok, activation === 'gelu_tanh' ? 3 : 2, 1);
  }

  #product(w, x, y, ntok, output, scale) {
    const k = this.kernels;
    const product = k.many && ntok > MATVEC_TOKENS ? k.many : k.few;
    const pipeline = product.pipelines.get(w.type);
    for (const part of w.parts) {
      const [gx, gy] = splitGroups(Math.ceil(part.rows / product.rows));
      const words = [part.rows, w.ncols, ntok, part.row0, x.offset, x.stride, y.offset, y.stride, output, f32(scale), UNROUTED, 0, 0, 0];
      const bindings = [[1, part.buffer], [2, x.buffer], [3, y.buffer], [5, k.unrouted], [6, k.unsegmented[0]], [7, k.unsegmented[1]]];
      this.#push(pipeline, bindings, words, [gx, gy, Math.ceil(ntok / product.tokens)]);
    }
  }

  getRows(w, ids, y, ntok) {
    const pipeline = this.kernels.getRows.get(w.type);
    for (const part of w.parts) {
      const words = [part.rows, w.ncols, ntok, part.row0, 0, 0, y.offset, y.stride, 0, 0];
      this.#push(pipeline, [[1, part.buffer], [3, y.buffer], [4, ids]], words, [Math.ceil(w.ncols / 32 / 64), ntok, 1]);
    }
  }

  rmsnorm(x, w, y, rows, n, eps, accumulate) {
    const [gx, gy] = splitGroups(rows);
    const words = [rows, n, x.offset, y.offset, f32(eps), accumulate ? 1 : 0];
    this.#push(this.kernels.rmsnorm, [[1, x.buffer], [2, w], [3, y.buffer]], words, [gx, gy, 1]);
  }

  // Rotary embedding of a layer's queries in `q` and its new keys in `k`, one dispatch.
  rope(q, k, ntok, [heads, kvHeads], headDim, nRot, pos0, neox, freqBase) {
    const words = [ntok, heads, headDim, nRot, pos0, q.offset, neox ? 1 : 0, f32(freqBase), kvHeads, k.offset];
    const groups = [Math.ceil(((heads + kvHeads) * nRot) / 2 / 64), ntok, 1];
    this.#push(this.kernels.rope, [[1, q.buffer], [2, k.buffer]], words, groups);
  }

  // The page keeps its cache in f32 and writes a batch's keys and values into it
  // directly, so attention.wgsl reads every key from there (`fresh` 0) and its rows of
  // fresh keys and values (8, 9) bind placeholders it does not read.
  attention(q, k, v, [sums, stats], out, shape, ntok, pos0, window) {
    const splits = attentionSplits(pos0 + ntok, window);
    const words = [ntok, shape.heads, shape.kvHeads, shape.headDim, pos0, splits, f32(shape.scale), window ?? 0, 0];
    const [kNew, vNew] = this.kernels.unsegmented;
    const bindings = [[1, q], [2, k], [3, v], [4, sums], [5, stats], [8, kNew], [9, vNew]];
    this.#push(this.kernels.attentionSplit, bindings, words, [shape.heads, ntok, splits]);
    this.#push(this.kernels.attentionCombine, [[4, sums], [5, stats], [6, out]], words, [shape.heads, ntok, 1]);
  }

  // `g = act(g) * u` over `rows` rows of `n` values, `g` contiguous, `u` a View.
  gated(g, u, rows, n, activation) {
    const words = [rows, n, u.offset, u.stride, activation === 'gelu_tanh' ? 1 : 0];
    this.#push(this.kernels.gated, [[1, g], [2, u.buffer]], words, [Math.ceil(n / 64), rows, 1]);
  }

  addBias(y, bias, rows, n) {
    this.#push(this.kernels.addBias, [[1, y.buffer], [2, bias]], [rows, n, y.offset, y.stride, 0], [Math.ceil(n / 64), rows, 1]);
  }

  scaleRows(y, rows, n, scale) {
    this.#push(this.kernels.scaleRows, [[1, y.buffer]], [rows, n, y.offset, y.stride, f32(scale)], [Math.ceil(n / 64), rows, 1]);
  }

  copy(from, to, bytes) {
    this.copies.push([from, to, bytes]);
  }

  // Encode every dispatch into one compute pass, then the copies, and submit.
  submit(bindings) {
    const device = this.gpu.device;
    const words = new Uint32Array((this.ops.length * this.stride) / 4 || 1);
    for (const op of this.ops) words.set(op.words, op.params / 4);
    const params = bindings.paramsBuffer(device, words.byteLength);
    device.queue.writeBuffer(params, 0, words);
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    this.ops.forEach((op, index) => {
      pass.setPipeline(op.pipeline);
      pass.setBindGroup(0, bindings.group(device, params, index, op));
      pass.dispatchWorkgroups(...op.groups);
    });
    pass.end();
    for (const [from, to, bytes] of this.copies) encoder.copyBufferToBuffer(from, 0, to, 0, bytes);
    device.queue.submit([encoder.finish()]);
  }
}

const floatBits = new DataView(new ArrayBuffer(4));
function f32(value) {
  floatBits.setFloat32(0, value, true);
  return floatBits.getUint32(0, true);
}
