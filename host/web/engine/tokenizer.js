// Byte-level BPE from a GGUF file's vocabulary and merges, with the same rules as
// sdk/src/helpers/tokenizer.rs: control and user-defined tokens matched whole first,
// then the pre-tokenizer `tokenizer.ggml.pre` names (GPT-2's regex; SmolLM's digits
// split apart first; Llama 3's and Qwen2's regexes), then GPT-2's byte-to-character
// table and the merges by rank. SentencePiece vocabularies are refused by name.

const TOKEN_CONTROL = 3;
const TOKEN_USER_DEFINED = 4;
const END_OF_TURN_TEXTS = ['<|im_end|>', '<|eot_id|>', '<|eom_id|>', '<|endoftext|>', '<end_of_turn>', '<|end|>'];

const GPT2_REGEX = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const LLAMA3_REGEX = /(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;
const QWEN2_REGEX = /(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

// Splits by `regex`, keeping every character (unmatched runs become pieces too, as the
// Rust side's `Isolated` split keeps them).
function splitIsolated(text, regex) {
  const pieces = [];
  let last = 0;
  for (const match of text.matchAll(regex)) {
    if (match.index > last) pieces.push(text.slice(last, match.index));
    if (match[0]) pieces.push(match[0]);
    last = match.index + match[0].length;
  }
  if (last < text.length) pieces.push(text.slice(last));
  return pieces;
}

// The pre-tokenizer of `tokenizer.ggml.pre`: text to the words BPE merges within.
function preTokenizer(pre) {
  switch (pre) {
    case 'gpt2':
    case 'default':
    case 'gpt-2':
      return (text) => splitIsolated(text, GPT2_REGEX);
    case 'smollm':
      // Every digit on its own, then GPT-2's regex within each piece.
      return (text) => splitIsolated(text, /\p{N}/gu).flatMap((piece) => splitIsolated(piece, GPT2_REGEX));
    case 'llama3':
    case 'llama-bpe':
    case 'smaug-bpe':
      return (text) => splitIsolated(text, LLAMA3_REGEX);
    case 'qwen2':
      return (text) => splitIsolated(text, QWEN2_REGEX);
    default:
      throw new Error(`pre-tokenizer \`${pre}\` is not supported`);
  }
}

// GPT-2's table: each byte as a printable character.
function byteToUnicode() {
  const table = new Array(256);
  let next = 256;
  for (let byte = 0; byte < 256; byte++) {
    const printable = (byte >= 0x21 && byte <= 0x7e) || (byte >= 0xa1 && byte <= 0xac) || (byte >= 0xae && byte <= 0xff);
    table[byte] = String.fromCodePoint(printable ? byte : next++);
  }
  return table;
}

export class Tokenizer {
  constructor(metadata) {
    const model = metadata.get('tokenizer.ggml.model');
    if (model !== 'gpt2') {
      throw new Error(`tokenizer model \`${model}\` (the in-page engine reads byte-level BPE, \`gpt2\`)`);
    }
    this.texts = metadata.get('tokenizer.ggml.tokens');
    const types = metadata.get('tokenizer.ggml.token_type') ?? this.texts.map(() => 1);
    this.split = preTokenizer(metadata.get('tokenizer.ggml.pre') ?? 'default');
    this.ids = new Map(this.texts.map((text, id) => [text, id]));
    this.ranks = new Map(metadata.get('tokenizer.ggml.merges').map((merge, rank) => [merge, rank]));
    this.bytes = byteToUnicode();
    const unicodeToByte = new Map(this.bytes.map((char, byte) => [char, byte]));
    const encoder = new TextEncoder();
    this.pieces = this.texts.map((text, id) => {
      if (types[id] === TOKEN_CONTROL) return new Uint8Array(0);
      if (types[id] === TOKEN_USER_DEFINED) return encoder.encode(text);
      const out = [];
      for (const char of text) {
        const byte = unicodeToByte.get(char);
        if (byte === undefined) out.push(...encoder.encode(char));
        else out.push(byte);
      }
      return new Uint8Array(out);
    });
    // Longest first, so a special token that contains another wins.
    this.specials = this.texts
      .filter((_, id) => types[id] === TOKEN_CONTROL || types[id] === TOKEN_USER_DEFINED)
      .sort((a, b) => b.length - a.length);
    const optional = (key) => (Number.isInteger(metadata.get(key)) ? metadata.get(key) : null);
    this.bos = optional('tokenizer.ggml.bos_token_id');
    this.eos = optional('tokenizer.ggml.eos_token_id');
    this.addBos = metadata.get('tokenizer.ggml.add_bos_token') === true;
    this.endOfGeneration = new Set(
      [this.eos, optional('tokenizer.ggml.eot_token_id'), optional('tokenizer.ggml.eom_token_id')].filter((id) => id !== null),
    );
    this.texts.forEach((text, id) => {
      if (types[id] === TOKEN_CONTROL && END_OF_TURN_TEXTS.includes(text)) this.endOfGeneration.add(id);
    });
    this.cache = new Map();
  }

  tokenText(id) {
    return this.texts[id] ?? '';
  }

  // The ids of `text`, with BOS first when the model adds it.
  encode(text) {
    const ids = this.addBos && this.bos !== null ? [this.bos] : [];
    for (const [segment, special] of this.#specialSegments(text)) {
      if (special) {
        ids.push(this.ids.get(segment));
        continue;
      }
      for (const word of this.split(segment)) ids.push(...this.#word(word));
    }
    return ids;
  }

  // `text` cut at every special token, leftmost and then longest first.
  #specialSegments(text) {
    const segments = [];
    let start = 0;
    let at = 0;
    while (at < text.length) {
      const special = this.specials.length && this.specials.find((s) => text.startsWith(s, at));
      if (special) {
        if (at > start) segments.push([text.slice(start, at), false]);
        segments.push([special, true]);
        at += special.length;
        start = at;
      } else {
        at++;
      }
    }
    if (start < text.length) segments.push([text.slice(start), false]);
    return segments;
  }

  // BPE within one word: its bytes as characters, merged by rank.
  #word(word) {
    const kept = this.cache.get(word);
    if (kept) return kept;
    let symbols = Array.from(new TextEncoder().encode(word), (byte) => this.bytes[byte]);
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const rank = this.ranks.get(`${symbols[i]} ${symbols[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = i;
        }
      }
      if (best < 0) break;
      const [left, right] = [symbols[best], symbols[best + 1]];
      const next = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && symbols[i] === left && symbols[i + 1] === right) {
          next.push(left + right);
          i++;
        } else {
          next.push(symbols[i]);
        }
      }
      symbols = next;
    }
    const ids = symbols.map((symbol) => {
      const id = this.ids.get(symbol);
      if (id === undefined) throw new Error(`the vocabulary has no token for \`${symbol}\``);
      return id;
    });
    if (this.cache.size < 50000) this.cache.set(word, ids);
    return ids;
  }

  // A streaming decoder: `push(id)` returns the text that is complete so far.
  decoder() {
    const utf8 = new TextDecoder('utf-8');
    return { push: (id) => utf8.decode(this.pieces[id] ?? new Uint8Array(0), { stream: true }), end: () => utf8.decode() };
  }
}
