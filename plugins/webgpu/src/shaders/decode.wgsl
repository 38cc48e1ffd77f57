//! F32
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 128u;
const CHUNK_WORDS: u32 = 32u;
fn load_chunk(row: u32, chunk: u32) {
    words = aligned_words(row + chunk * BLOCK_BYTES);
}
fn decode_loaded(row: u32, chunk: u32) {
    for (var k = 0u; k < 8u; k++) {
        wv[k] = bitcast<vec4<f32>>(vec4<u32>(words[k * 4u], words[k * 4u + 1u], words[k * 4u + 2u], words[k * 4u + 3u]));
    }
}
//! F16
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 64u;
const CHUNK_WORDS: u32 = 16u;
fn load_chunk(row: u32, chunk: u32) {
    words = aligned_words(row + chunk * BLOCK_BYTES);
}
fn decode_loaded(row: u32, chunk: u32) {
    for (var k = 0u; k < 8u; k++) {
        wv[k] = vec4<f32>(unpack2x16float(words[k * 2u]), unpack2x16float(words[k * 2u + 1u]));
    }
}
//! BF16
// A bf16 is the high half of an f32.
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 64u;
const CHUNK_WORDS: u32 = 16u;
fn load_chunk(row: u32, chunk: u32) {
    words = aligned_words(row + chunk * BLOCK_BYTES);
}
fn decode_loaded(row: u32, chunk: u32) {
    for (var k = 0u; k < 8u; k++) {
        let a = words[k * 2u];
        let b = words[k * 2u + 1u];
        wv[k] = vec4<f32>(bitcast<f32>(a << 16u), bitcast<f32>(a & 0xffff0000u), bitcast<f32>(b << 16u), bitcast<f32>(b & 0xffff0000u));
    }
}
//! Q4_0
// f16 d, 16 bytes of nibbles (low: elements 0..16, high: 16..32); d·(q − 8).
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 18u;
// The five aligned words that hold a block (see `block_word`).
const CHUNK_WORDS: u32 = 5u;
fn load_chunk(row: u32, chunk: u32) {
    words = aligned_words(row + chunk * BLOCK_BYTES);
}
fn decode_loaded(row: u32, chunk: u32) {
    let block = head_block(words, row + chunk * BLOCK_BYTES);
    for (var k = 0u; k < 4u; k++) {
        wv[k] = (nibbles_lo(block.q[k]) - 8.0) * block.d;
        wv[k + 4u] = (nibbles_hi(block.q[k]) - 8.0) * block.d;
    }
}
//! Q4_1
// f16 d, f16 m, 16 bytes of nibbles; d·q + m.
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 20u;
const CHUNK_WORDS: u32 = 5u;
fn load_chunk(row: u32, chunk: u32) {
    words = aligned_words(row + chunk * BLOCK_BYTES);
}
fn decode_loaded(row: u32, chunk: u32) {
    let dm = unpack2x16float(words[0]);
    for (var k = 0u; k < 4u; k++) {
        let q = words[1u + k];
        wv[k] = nibbles_lo(q) * dm.x + dm.y;
        wv[k + 4u] = nibbles_hi(q) * dm.x + dm.y;
    }
}
//! Q5_0
// f16 d, a 32-bit word of fifth bits (bit i for element i), 16 bytes of nibbles;
// d·(q − 16).
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 22u;
// The six aligned words that hold a block (see `block_word`).
const CHUNK_WORDS: u32 = 6u;
fn load_chunk(row: u32, chunk: u32) {
    words = aligned_words(row + chunk * BLOCK_BYTES);
}
fn decode_loaded(row: u32, chunk: u32) {
    let block = head_block(words, row + chunk * BLOCK_BYTES);
    let high = block.q[0];
    for (var k = 0u; k < 4u; k++) {
        let q = block.q[k + 1u];
        wv[k] = (nibbles_lo(q) + 16.0 * bits4(high, k * 4u) - 16.0) * block.d;
        wv[k + 4u] = (nibbles_hi(q) + 16.0 * bits4(high, 16u + k * 4u) - 16.0) * block.d;
    }
}
//! Q5_1
// f16 d, f16 m, the fifth bits, 16 bytes of nibbles; d·q + m.
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 24u;
const CHUNK_WORDS: u32 = 6u;
fn load_chunk(row: u32, chunk: u32) {
    words = aligned_words(row + chunk * BLOCK_BYTES);
}
fn decode_loaded(row: u32, chunk: u32) {
    let dm = unpack2x16float(words[0]);
    let high = words[1];
    for (var k = 0u; k < 4u; k++) {
        let q = words[2u + k];
        wv[k] = (nibbles_lo(q) + 16.0 * bits4(high, k * 4u)) * dm.x + dm.y;
        wv[k + 4u] = (nibbles_hi(q) + 16.0 * bits4(high, 16u + k * 4u)) * dm.x + dm.y;
    }
}
//! Q8_0
// f16 d, 32 signed bytes; d·q.
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 34u;
// The nine aligned words that hold a block (see `block_word`).
const CHUNK_WORDS: u32 = 9u;
fn load_chunk(row: u32, chunk: u32) {
    words = aligned_words(row + chunk * BLOCK_BYTES);
}
fn decode_loaded(row: u32, chunk: u32) {
    let block = head_block(words, row + chunk * BLOCK_BYTES);
    for (var k = 0u; k < 8u; k++) {
        let q = block.q[k];
        let v = vec4<i32>(i32(q << 24u) >> 24u, i32(q << 16u) >> 24u, i32(q << 8u) >> 24u, i32(q) >> 24u);
        wv[k] = vec4<f32>(v) * block.d;
    }
}
//! Q4_K
// Super-blocks of 256: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins
// (`k_scale_min` in quant.wgsl), 128 bytes of nibbles, 32 bytes per pair of chunks
// (low nibbles: the even chunk, high: the odd one); (d·sc)·q − dmin·m.
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 144u;
// d and dmin, the scales and mins, the chunk's eight words of nibbles.
const CHUNK_WORDS: u32 = 12u;
fn load_chunk(row: u32, chunk: u32) {
    load_k_chunk(row, chunk, 4u);
}
fn decode_loaded(row: u32, chunk: u32) {
    let sub = chunk % 8u;
    let sm = k_chunk_scale_min(sub);
    for (var k = 0u; k < 8u; k++) {
        wv[k] = sm.x * k_chunk_nibbles(words[4u + k], sub) - sm.y;
    }
}
//! Q5_K
// Q4_K with 32 bytes of fifth bits before the nibbles: bit `j` of byte `l` tops element
// `l` of chunk `j`.
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 176u;
// d and dmin, the scales and mins, the eight words of fifth bits, the chunk's eight
// words of nibbles.
const CHUNK_WORDS: u32 = 20u;
fn load_chunk(row: u32, chunk: u32) {
    load_k_chunk(row, chunk, 12u);
}
fn decode_loaded(row: u32, chunk: u32) {
    let sub = chunk % 8u;
    let sm = k_chunk_scale_min(sub);
    for (var k = 0u; k < 8u; k++) {
        let q = k_chunk_nibbles(words[12u + k], sub) + 16.0 * byte_bits(words[4u + k], sub, 1u);
        wv[k] = sm.x * q - sm.y;
    }
}
//! Q6_K
// Super-blocks of 256 in two halves of 128: 128 bytes of low nibbles (64 per half), 64
// of high bit pairs (32 per half), 16 signed scales (one per 16 elements), f16 d.
// Element `32k + l` of a half (chunk k of the half) takes a nibble of byte `l` (k even)
// or `l + 32` (k odd), the low one for k < 2, and bits `2k, 2k + 1` of high byte `l`;
// (d·sc)·(q − 32).
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 210u;
// The eight words of 32 bytes at an even byte, from the nine aligned words under them
// (`aligned` where the bytes start at a word: a super-block is 210 bytes, so every
// other one starts half a word in).
fn q6_k_even_words(aligned_words: array<u32, 9>, aligned: bool) -> array<u32, 8> {
    var words: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        words[i] = even_word(aligned_words[i], aligned_words[i + 1u], aligned);
    }
    return words;
}
// The eight words of the 32 bytes at `at`, each aligned word under them loaded once.
fn q6_k_words(at: u32) -> array<u32, 8> {
    var aligned_words: array<u32, 9>;
    for (var i = 0u; i < 9u; i++) {
        aligned_words[i] = W[(at >> 2u) + i];
    }
    return q6_k_even_words(aligned_words, (at & 2u) == 0u);
}
// The chunk's bytes as aligned words: nine under its 32 bytes of low bits, nine under
// the half's 32 bytes of high bits, the one holding its two scales and the one holding d.
const CHUNK_WORDS: u32 = 20u;
// Where chunk `chunk`'s low bits, high bits and scales start, and d lies.
fn q6_k_chunk(row: u32, chunk: u32) -> vec4<u32> {
    let base = row + (chunk / 8u) * BLOCK_BYTES;
    let half = (chunk % 8u) / 4u;
    let k = chunk % 4u;
    return vec4<u32>(base + half * 64u + (k % 2u) * 32u, base + 128u + half * 32u, base + 192u + half * 8u + 2u * k, base + 208u);
}
fn load_chunk(row: u32, chunk: u32) {
    let at = q6_k_chunk(row, chunk) >> vec4<u32>(2u);
    for (var i = 0u; i < 9u; i++) {
        words[i] = W[at.x + i];
        words[9u + i] = W[at.y + i];
    }
    words[18] = W[at.z];
    words[19] = W[at.w];
}
fn decode_loaded(row: u32, chunk: u32) {
    let k = chunk % 4u;
    let bytes = q6_k_chunk(row, chunk);
    // Every field of the super-block lies at an even byte, and all at one parity of word.
    let aligned = (bytes.x & 2u) == 0u;
    var low_aligned: array<u32, 9>;
    var high_aligned: array<u32, 9>;
    for (var i = 0u; i < 9u; i++) {
        low_aligned[i] = words[i];
        high_aligned[i] = words[9u + i];
    }
    let low_words = q6_k_even_words(low_aligned, aligned);
    let high_words = q6_k_even_words(high_aligned, aligned);
    let d = unpack2x16float(words[19] >> ((bytes.w & 2u) * 8u)).x;
    // Elements 0..16 of the chunk share one scale, 16..32 the next.
    let scales = words[18] >> ((bytes.z & 2u) * 8u);
    let d_lo = d * f32(i32(scales << 24u) >> 24u);
    let d_hi = d * f32(i32(scales << 16u) >> 24u);
    for (var w = 0u; w < 8u; w++) {
        var nibbles = nibbles_lo(low_words[w]);
        if (k >= 2u) {
            nibbles = nibbles_hi(low_words[w]);
        }
        let q = nibbles + 16.0 * byte_bits(high_words[w], 2u * k, 3u) - 32.0;
        wv[w] = select(d_hi, d_lo, w < 4u) * q;
    }
}
