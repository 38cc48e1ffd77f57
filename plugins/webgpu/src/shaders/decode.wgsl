//! F32
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 128u;
fn decode(row: u32, chunk: u32) {
    let base = row + chunk * BLOCK_BYTES;
    for (var k = 0u; k < 8u; k++) {
        let i = (base >> 2u) + k * 4u;
        wv[k] = vec4<f32>(bitcast<f32>(W[i]), bitcast<f32>(W[i + 1u]), bitcast<f32>(W[i + 2u]), bitcast<f32>(W[i + 3u]));
    }
}
//! F16
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 64u;
fn decode(row: u32, chunk: u32) {
    let base = row + chunk * BLOCK_BYTES;
    for (var k = 0u; k < 8u; k++) {
        let i = (base >> 2u) + k * 2u;
        wv[k] = vec4<f32>(unpack2x16float(W[i]), unpack2x16float(W[i + 1u]));
    }
}
//! BF16
// A bf16 is the high half of an f32.
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 64u;
fn decode(row: u32, chunk: u32) {
    let base = row + chunk * BLOCK_BYTES;
    for (var k = 0u; k < 8u; k++) {
        let i = (base >> 2u) + k * 2u;
        let a = W[i];
        let b = W[i + 1u];
        wv[k] = vec4<f32>(bitcast<f32>(a << 16u), bitcast<f32>(a & 0xffff0000u), bitcast<f32>(b << 16u), bitcast<f32>(b & 0xffff0000u));
    }
}
//! Q4_0
// f16 d, 16 bytes of nibbles (low: elements 0..16, high: 16..32); d·(q − 8).
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 18u;
struct Block {
    d: f32,
    q: array<u32, 4>,
}
// The block at byte `base`, read as the five aligned words that hold it (see
// `block_word`).
fn block_at(base: u32) -> Block {
    let at = base >> 2u;
    let odd = (base & 2u) != 0u;
    var w: array<u32, 5>;
    for (var k = 0u; k < 5u; k++) {
        w[k] = W[at + k];
    }
    var block: Block;
    block.d = unpack2x16float(select(w[0], w[0] >> 16u, odd)).x;
    for (var k = 0u; k < 4u; k++) {
        block.q[k] = block_word(w[k], w[k + 1u], odd);
    }
    return block;
}
fn decode(row: u32, chunk: u32) {
    let block = block_at(row + chunk * BLOCK_BYTES);
    for (var k = 0u; k < 4u; k++) {
        wv[k] = (nibbles_lo(block.q[k]) - 8.0) * block.d;
        wv[k + 4u] = (nibbles_hi(block.q[k]) - 8.0) * block.d;
    }
}
//! Q4_1
// f16 d, f16 m, 16 bytes of nibbles; d·q + m.
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 20u;
fn decode(row: u32, chunk: u32) {
    let base = row + chunk * BLOCK_BYTES;
    let dm = unpack2x16float(W[base >> 2u]);
    for (var k = 0u; k < 4u; k++) {
        let q = W[(base >> 2u) + 1u + k];
        wv[k] = nibbles_lo(q) * dm.x + dm.y;
        wv[k + 4u] = nibbles_hi(q) * dm.x + dm.y;
    }
}
//! Q5_0
// f16 d, a 32-bit word of fifth bits (bit i for element i), 16 bytes of nibbles;
// d·(q − 16).
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 22u;
fn decode(row: u32, chunk: u32) {
    let base = row + chunk * BLOCK_BYTES;
    let d = f16_at(base);
    let high = u32_at(base + 2u);
    for (var k = 0u; k < 4u; k++) {
        let q = u32_at(base + 6u + k * 4u);
        wv[k] = (nibbles_lo(q) + 16.0 * bits4(high, k * 4u) - 16.0) * d;
        wv[k + 4u] = (nibbles_hi(q) + 16.0 * bits4(high, 16u + k * 4u) - 16.0) * d;
    }
}
//! Q5_1
// f16 d, f16 m, the fifth bits, 16 bytes of nibbles; d·q + m.
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 24u;
fn decode(row: u32, chunk: u32) {
    let base = row + chunk * BLOCK_BYTES;
    let dm = unpack2x16float(W[base >> 2u]);
    let high = W[(base >> 2u) + 1u];
    for (var k = 0u; k < 4u; k++) {
        let q = W[(base >> 2u) + 2u + k];
        wv[k] = (nibbles_lo(q) + 16.0 * bits4(high, k * 4u)) * dm.x + dm.y;
        wv[k + 4u] = (nibbles_hi(q) + 16.0 * bits4(high, 16u + k * 4u)) * dm.x + dm.y;
    }
}
//! Q8_0
// f16 d, 32 signed bytes; d·q.
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 34u;
struct Block {
    d: f32,
    q: array<u32, 8>,
}
// The block at byte `base`, read as the nine aligned words that hold it (see
// `block_word`).
fn block_at(base: u32) -> Block {
    let at = base >> 2u;
    let odd = (base & 2u) != 0u;
    var w: array<u32, 9>;
    for (var k = 0u; k < 9u; k++) {
        w[k] = W[at + k];
    }
    var block: Block;
    block.d = unpack2x16float(select(w[0], w[0] >> 16u, odd)).x;
    for (var k = 0u; k < 8u; k++) {
        block.q[k] = block_word(w[k], w[k + 1u], odd);
    }
    return block;
}
fn decode(row: u32, chunk: u32) {
    let block = block_at(row + chunk * BLOCK_BYTES);
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
fn decode(row: u32, chunk: u32) {
    let base = row + (chunk / 8u) * BLOCK_BYTES;
    let sub = chunk % 8u;
    let dm = unpack2x16float(W[base >> 2u]);
    let sm = k_scale_min(base + 4u, sub);
    let scale = dm.x * sm.x;
    let min = dm.y * sm.y;
    let quants = (base >> 2u) + 4u + (sub / 2u) * 8u;
    for (var k = 0u; k < 8u; k++) {
        let q = W[quants + k];
        var nibbles = nibbles_lo(q);
        if ((sub & 1u) == 1u) {
            nibbles = nibbles_hi(q);
        }
        wv[k] = scale * nibbles - min;
    }
}
//! Q5_K
// Q4_K with 32 bytes of fifth bits before the nibbles: bit `j` of byte `l` tops element
// `l` of chunk `j`.
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 176u;
fn decode(row: u32, chunk: u32) {
    let base = row + (chunk / 8u) * BLOCK_BYTES;
    let sub = chunk % 8u;
    let dm = unpack2x16float(W[base >> 2u]);
    let sm = k_scale_min(base + 4u, sub);
    let scale = dm.x * sm.x;
    let min = dm.y * sm.y;
    let high = (base >> 2u) + 4u;
    let quants = (base >> 2u) + 12u + (sub / 2u) * 8u;
    for (var k = 0u; k < 8u; k++) {
        let q = W[quants + k];
        var nibbles = nibbles_lo(q);
        if ((sub & 1u) == 1u) {
            nibbles = nibbles_hi(q);
        }
        wv[k] = scale * (nibbles + 16.0 * byte_bits(W[high + k], sub, 1u)) - min;
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
// The eight words of the 32 bytes at `at` (even: a super-block is 210 bytes, so every
// other one starts half a word in), from the nine aligned words under them, each loaded
// once.
fn q6_k_words(at: u32) -> array<u32, 8> {
    var aligned_words: array<u32, 9>;
    for (var i = 0u; i < 9u; i++) {
        aligned_words[i] = W[(at >> 2u) + i];
    }
    var words: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        words[i] = even_word(aligned_words[i], aligned_words[i + 1u], (at & 2u) == 0u);
    }
    return words;
}
fn decode(row: u32, chunk: u32) {
    let base = row + (chunk / 8u) * BLOCK_BYTES;
    let half = (chunk % 8u) / 4u;
    let k = chunk % 4u;
    let d = f16_at(base + 208u);
    let low = base + half * 64u + (k % 2u) * 32u;
    let high = base + 128u + half * 32u;
    let scales = base + 192u + half * 8u + 2u * k;
    // Elements 0..16 of the chunk share one scale, 16..32 the next.
    let d_lo = d * i8_at(scales);
    let d_hi = d * i8_at(scales + 1u);
    let low_words = q6_k_words(low);
    let high_words = q6_k_words(high);
    for (var w = 0u; w < 8u; w++) {
        var nibbles = nibbles_lo(low_words[w]);
        if (k >= 2u) {
            nibbles = nibbles_hi(low_words[w]);
        }
        let q = nibbles + 16.0 * byte_bits(high_words[w], 2u * k, 3u) - 32.0;
        wv[w] = select(d_hi, d_lo, w < 4u) * q;
    }
}
