// GGUF files read over HTTP a piece at a time: `Range` requests for the header (grown
// until the metadata and tensor table fit) and then for each tensor's bytes, every
// piece kept in Cache Storage so a second visit reads nothing over the network. The
// format is the one sdk/src/helpers/gguf_parse.rs reads on the native side.

// ggml type ids, their names (as the model layer's `tensor_types` spells them), and
// their blocks: elements per block and bytes per block.
const GGML_TYPES = {
  0: ['F32', 1, 4],
  1: ['F16', 1, 2],
  2: ['Q4_0', 32, 18],
  3: ['Q4_1', 32, 20],
  6: ['Q5_0', 32, 22],
  7: ['Q5_1', 32, 24],
  8: ['Q8_0', 32, 34],
  12: ['Q4_K', 256, 144],
  13: ['Q5_K', 256, 176],
  14: ['Q6_K', 256, 210],
  30: ['BF16', 1, 2],
};

const CACHE_NAME = 'hearth-gguf';
const FIRST_HEADER_BYTES = 4 << 20;

// Bytes of a URL by range, through Cache Storage where the page has it (a secure
// context: https or localhost).
export class RangeReader {
  constructor(url, headers = {}) {
    this.url = url;
    this.headers = headers;
    this.size = null;
  }

  async #cache() {
    if (!globalThis.caches) return null;
    try {
      return await caches.open(CACHE_NAME);
    } catch {
      return null;
    }
  }

  // Bytes `start..end` (end exclusive) as an ArrayBuffer.
  async read(start, end) {
    const key = new URL(`${this.url}${this.url.includes('?') ? '&' : '?'}bytes=${start}-${end}`, location.href);
    const cache = await this.#cache();
    const cached = await cache?.match(key);
    if (cached) {
      this.size ??= Number(cached.headers.get('x-total-size')) || null;
      return cached.arrayBuffer();
    }
    const response = await fetch(this.url, {
      headers: { ...this.headers, Range: `bytes=${start}-${end - 1}` },
    });
    if (response.status === 416) {
      throw new Error(`${this.url}: bytes ${start}-${end} are outside the file`);
    }
    if (response.status !== 206) {
      const text = response.ok ? 'the server ignored the Range header' : await response.text();
      throw new Error(`${this.url}: ${response.status} ${describeError(text)}`);
    }
    const total = Number(response.headers.get('content-range')?.split('/')[1]);
    if (total) this.size = total;
    const bytes = await response.arrayBuffer();
    await cache
      ?.put(key, new Response(bytes, { headers: { 'x-total-size': String(this.size ?? '') } }))
      .catch(() => {});
    return bytes;
  }
}

function describeError(text) {
  try {
    const body = JSON.parse(text);
    return body.error?.message ?? body.error ?? text;
  } catch {
    return text;
  }
}

// Thrown by the cursor when the header runs past the bytes read so far.
class NeedMore extends Error {}

class Cursor {
  constructor(buffer) {
    this.view = new DataView(buffer);
    this.bytes = new Uint8Array(buffer);
    this.at = 0;
    this.decoder = new TextDecoder();
  }
  #need(n) {
    if (this.at + n > this.bytes.length) throw new NeedMore();
  }
  u8() { this.#need(1); return this.view.getUint8(this.at++); }
  u32() { this.#need(4); const v = this.view.getUint32(this.at, true); this.at += 4; return v; }
  i32() { this.#need(4); const v = this.view.getInt32(this.at, true); this.at += 4; return v; }
  f32() { this.#need(4); const v = this.view.getFloat32(this.at, true); this.at += 4; return v; }
  f64() { this.#need(8); const v = this.view.getFloat64(this.at, true); this.at += 8; return v; }
  u64() { this.#need(8); const v = this.view.getBigUint64(this.at, true); this.at += 8; return Number(v); }
  i64() { this.#need(8); const v = this.view.getBigInt64(this.at, true); this.at += 8; return Number(v); }
  string() {
    const length = this.u64();
    this.#need(length);
    const text = this.decoder.decode(this.bytes.subarray(this.at, this.at + length));
    this.at += length;
    return text;
  }
  value(type) {
    switch (type) {
      case 0: return this.u8();
      case 1: { const v = this.u8(); return v > 127 ? v - 256 : v; }
      case 2: { this.#need(2); const v = this.view.getUint16(this.at, true); this.at += 2; return v; }
      case 3: { this.#need(2); const v = this.view.getInt16(this.at, true); this.at += 2; return v; }
      case 4: return this.u32();
      case 5: return this.i32();
      case 6: return this.f32();
      case 7: return this.u8() !== 0;
      case 8: return this.string();
      case 9: {
        const itemType = this.u32();
        const count = this.u64();
        const items = new Array(count);
        for (let i = 0; i < count; i++) items[i] = this.value(itemType);
        return items;
      }
      case 10: return this.u64();
      case 11: return this.i64();
      case 12: return this.f64();
      default: throw new Error(`GGUF metadata value of unknown type ${type}`);
    }
  }
}

function parseHeader(buffer) {
  const cursor = new Cursor(buffer);
  const magic = cursor.u32();
  if (magic !== 0x46554747) throw new Error('not a GGUF file (its first bytes are not "GGUF")');
  const version = cursor.u32();
  if (version < 2 || version > 3) throw new Error(`GGUF version ${version} (2 and 3 are read)`);
  const tensorCount = cursor.u64();
  const metadataCount = cursor.u64();
  const metadata = new Map();
  for (let i = 0; i < metadataCount; i++) {
    const key = cursor.string();
    metadata.set(key, cursor.value(cursor.u32()));
  }
  const tensors = new Map();
  for (let i = 0; i < tensorCount; i++) {
    const name = cursor.string();
    const dims = [];
    for (let n = cursor.u32(), d = 0; d < n; d++) dims.push(cursor.u64());
    const typeId = cursor.u32();
    const offset = cursor.u64();
    const known = GGML_TYPES[typeId];
    if (!known) {
      throw new Error(`tensor \`${name}\` has ggml type ${typeId}, which the in-page engine does not read`);
    }
    const [type, blockElements, blockBytes] = known;
    const elements = dims.reduce((a, b) => a * b, 1);
    const bytes = (elements / blockElements) * blockBytes;
    tensors.set(name, { name, dims, type, offset, bytes, blockElements });
  }
  const alignment = metadata.get('general.alignment') ?? 32;
  const dataStart = Math.ceil(cursor.at / alignment) * alignment;
  return { metadata, tensors, dataStart };
}

// A GGUF file's metadata and tensor table, and its tensors' bytes on demand.
export class GgufFile {
  static async open(reader) {
    let length = FIRST_HEADER_BYTES;
    for (;;) {
      const end = reader.size ? Math.min(length, reader.size) : length;
      const buffer = await reader.read(0, end);
      try {
        return new GgufFile(reader, parseHeader(buffer));
      } catch (error) {
        if (!(error instanceof NeedMore)) throw error;
        if (reader.size && end >= reader.size) throw new Error('the GGUF header is cut short');
        length *= 2;
      }
    }
  }

  constructor(reader, { metadata, tensors, dataStart }) {
    this.reader = reader;
    this.metadata = metadata;
    this.tensors = tensors;
    this.dataStart = dataStart;
  }

  tensor(name) {
    return this.tensors.get(name);
  }

  // The stored bytes of tensor `name`, in pieces of at most `pieceBytes` so a progress
  // bar moves and no single request is huge; `onBytes(n)` hears each piece.
  async tensorBytes(name, onBytes = () => {}, pieceBytes = 8 << 20) {
    const tensor = this.tensors.get(name);
    if (!tensor) throw new Error(`tensor \`${name}\` is missing`);
    const out = new Uint8Array(tensor.bytes);
    const start = this.dataStart + tensor.offset;
    for (let at = 0; at < tensor.bytes; at += pieceBytes) {
      const end = Math.min(tensor.bytes, at + pieceBytes);
      out.set(new Uint8Array(await this.reader.read(start + at, start + end)), at);
      onBytes(end - at);
    }
    return out;
  }
}
