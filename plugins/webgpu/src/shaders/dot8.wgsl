// Each quantized type's chunks of a weight row against the decode product's input
// quantized to 8 bits (input_q8.wgsl: `xq`, `xd`, `xsum`): `dot8(row, unit)` is
// Σ w·x over the 32 elements of each chunk of unit `unit` of the row at byte `row`,
// with the weights' integer quants multiplied by the input's four at a time
// (`dot4I8Packed`) and the scales applied once per chunk. A unit is UNIT_CHUNKS chunks,
// UNIT_STRIDE apart in groups of UNIT_CHUNKS · UNIT_STRIDE (input_q8.wgsl's
// `unit_chunk`): one chunk, or for Q6_K the two chunks whose quants share bytes, so
// that an invocation loads those bytes once where it loaded them for each chunk. On an
// H100 that made Q6_K's products 3–5 % faster; Q4_K's, in pairs of chunks, were 6 %
// slower, so they stay single (docs/BENCHMARKS.md, 2026-12-07). Sections start with
// `//! TYPE`; the host appends the type's section after its decode.wgsl section, whose
// block size and readers it uses. Quants go in as bytes of 0..63 (offsets like Q4_0's
// −8 are taken off through `xsum`), so the signed byte product is exact.

//! Q4_0
const UNIT_CHUNKS: u32 = 1u;
const UNIT_STRIDE: u32 = 1u;
fn dot8(row: u32, chunk: u32) -> f32 {
    let base = row + chunk * BLOCK_BYTES;
    let block = head_block(aligned_words(base), base);
    var sum = 0;
    for (var k = 0u; k < 4u; k++) {
        let q = block.q[k];
        sum += dot4I8Packed(q & 0x0f0f0f0fu, xq[k]) + dot4I8Packed((q >> 4u) & 0x0f0f0f0fu, xq[k + 4u]);
    }
    return block.d * xd[0] * f32(sum - 8 * xsum[0]);
}
//! Q4_1
const UNIT_CHUNKS: u32 = 1u;
const UNIT_STRIDE: u32 = 1u;
fn dot8(row: u32, chunk: u32) -> f32 {
    let at = (row + chunk * BLOCK_BYTES) >> 2u;
    let dm = unpack2x16float(W[at]);
    var sum = 0;
    for (var k = 0u; k < 4u; k++) {
        let q = W[at + 1u + k];
        sum += dot4I8Packed(q & 0x0f0f0f0fu, xq[k]) + dot4I8Packed((q >> 4u) & 0x0f0f0f0fu, xq[k + 4u]);
    }
    return xd[0] * (dm.x * f32(sum) + dm.y * f32(xsum[0]));
}
//! Q5_0
const UNIT_CHUNKS: u32 = 1u;
const UNIT_STRIDE: u32 = 1u;
fn dot8(row: u32, chunk: u32) -> f32 {
    let base = row + chunk * BLOCK_BYTES;
    let block = head_block(aligned_words(base), base);
    let high = block.q[0];
    var sum = 0;
    for (var k = 0u; k < 4u; k++) {
        let q = block.q[k + 1u];
        let lo = (q & 0x0f0f0f0fu) | fifth_bits(high >> (k * 4u));
        let hi = ((q >> 4u) & 0x0f0f0f0fu) | fifth_bits(high >> (16u + k * 4u));
        sum += dot4I8Packed(lo, xq[k]) + dot4I8Packed(hi, xq[k + 4u]);
    }
    return block.d * xd[0] * f32(sum - 16 * xsum[0]);
}
//! Q5_1
const UNIT_CHUNKS: u32 = 1u;
const UNIT_STRIDE: u32 = 1u;
fn dot8(row: u32, chunk: u32) -> f32 {
    let at = (row + chunk * BLOCK_BYTES) >> 2u;
    let dm = unpack2x16float(W[at]);
    let high = W[at + 1u];
    var sum = 0;
    for (var k = 0u; k < 4u; k++) {
        let q = W[at + 2u + k];
        let lo = (q & 0x0f0f0f0fu) | fifth_bits(high >> (k * 4u));
        let hi = ((q >> 4u) & 0x0f0f0f0fu) | fifth_bits(high >> (16u + k * 4u));
        sum += dot4I8Packed(lo, xq[k]) + dot4I8Packed(hi, xq[k + 4u]);
    }
    return xd[0] * (dm.x * f32(sum) + dm.y * f32(xsum[0]));
}
//! Q8_0
const UNIT_CHUNKS: u32 = 1u;
const UNIT_STRIDE: u32 = 1u;
fn dot8(row: u32, chunk: u32) -> f32 {
    let base = row + chunk * BLOCK_BYTES;
    let block = head_block(aligned_words(base), base);
    var sum = 0;
    for (var k = 0u; k < 8u; k++) {
        sum += dot4I8Packed(block.q[k], xq[k]);
    }
    return block.d * xd[0] * f32(sum);
}
//! Q4_K
const UNIT_CHUNKS: u32 = 1u;
const UNIT_STRIDE: u32 = 1u;
fn dot8(row: u32, chunk: u32) -> f32 {
    let base = row + (chunk / 8u) * BLOCK_BYTES;
    let sub = chunk % 8u;
    let dm = unpack2x16float(W[base >> 2u]);
    let sm = k_scale_min(k_scale_words(base), sub);
    let quants = (base >> 2u) + 4u + (sub / 2u) * 8u;
    let shift = (sub & 1u) * 4u;
    var sum = 0;
    for (var k = 0u; k < 8u; k++) {
        sum += dot4I8Packed((W[quants + k] >> shift) & 0x0f0f0f0fu, xq[k]);
    }
    return xd[0] * (dm.x * sm.x * f32(sum) - dm.y * sm.y * f32(xsum[0]));
}
//! Q5_K
const UNIT_CHUNKS: u32 = 1u;
const UNIT_STRIDE: u32 = 1u;
fn dot8(row: u32, chunk: u32) -> f32 {
    let base = row + (chunk / 8u) * BLOCK_BYTES;
    let sub = chunk % 8u;
    let dm = unpack2x16float(W[base >> 2u]);
    let sm = k_scale_min(k_scale_words(base), sub);
    let high = (base >> 2u) + 4u;
    let quants = (base >> 2u) + 12u + (sub / 2u) * 8u;
    let shift = (sub & 1u) * 4u;
    var sum = 0;
    for (var k = 0u; k < 8u; k++) {
        let q = ((W[quants + k] >> shift) & 0x0f0f0f0fu) | (((W[high + k] >> sub) & 0x01010101u) << 4u);
        sum += dot4I8Packed(q, xq[k]);
    }
    return xd[0] * (dm.x * sm.x * f32(sum) - dm.y * sm.y * f32(xsum[0]));
}
//! Q6_K
// A unit is chunks k and k + 2 of a half super-block (k = 0 or 1), whose quants' low
// four bits are the low and the high nibbles of the same 32 bytes; all four chunks of
// the half take their top two bits from the same 32 bytes. Two scales a chunk (one per
// 16 elements), so four sums, each with its quants' offset of 32.
const UNIT_CHUNKS: u32 = 2u;
const UNIT_STRIDE: u32 = 2u;
fn dot8(row: u32, unit: u32) -> f32 {
    let base = row + (unit / 4u) * BLOCK_BYTES;
    let half = (unit / 2u) % 2u;
    let k = unit % 2u;
    let low_words = q6_k_words(base + half * 64u + k * 32u);
    let high_words = q6_k_words(base + 128u + half * 32u);
    let scales = base + 192u + half * 8u + 2u * k;
    // Chunk k's first and last 16 elements, then chunk k + 2's.
    var sums = vec4<i32>(0);
    var xsums = vec4<i32>(0);
    for (var w = 0u; w < 8u; w++) {
        let h = high_words[w] >> (2u * k);
        let q0 = (low_words[w] & 0x0f0f0f0fu) | ((h & 0x03030303u) << 4u);
        let q1 = ((low_words[w] >> 4u) & 0x0f0f0f0fu) | (((h >> 4u) & 0x03030303u) << 4u);
        let part = select(1u, 0u, w < 4u);
        sums[part] += dot4I8Packed(q0, xq[w]);
        sums[2u + part] += dot4I8Packed(q1, xq[8u + w]);
        xsums[part] += dot4I8Packed(0x01010101u, xq[w]);
        xsums[2u + part] += dot4I8Packed(0x01010101u, xq[8u + w]);
    }
    let parts = vec4<f32>(sums - 32 * xsums);
    let first = xd[0] * (i8_at(scales) * parts.x + i8_at(scales + 1u) * parts.y);
    let second = xd[1] * (i8_at(scales + 4u) * parts.z + i8_at(scales + 5u) * parts.w);
    return f16_at(base + 208u) * (first + second);
}
