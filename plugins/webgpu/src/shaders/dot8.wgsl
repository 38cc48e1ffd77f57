// Each quantized type's chunk of a weight row against the decode product's input
// quantized to 8 bits (input_q8.wgsl: `xq`, `xd`, `xsum`): `dot8(row, chunk)` is
// Σ w·x over the 32 elements of chunk `chunk` of the row at byte `row`, with the
// weights' integer quants multiplied by the input's four at a time (`dot4I8Packed`)
// and the scales applied once per chunk. Sections start with `//! TYPE`; the host
// appends the type's section after its decode.wgsl section, whose block size and
// readers it uses. Quants go in as bytes of 0..63 (offsets like Q4_0's −8 are taken
// off through `xsum`), so the signed byte product is exact.

//! Q4_0
fn dot8(row: u32, chunk: u32) -> f32 {
    let block = block_at(row + chunk * BLOCK_BYTES);
    var sum = 0;
    for (var k = 0u; k < 4u; k++) {
        let q = block.q[k];
        sum += dot4I8Packed(q & 0x0f0f0f0fu, xq[k]) + dot4I8Packed((q >> 4u) & 0x0f0f0f0fu, xq[k + 4u]);
    }
    return block.d * xd * f32(sum - 8 * xsum);
}
//! Q4_1
fn dot8(row: u32, chunk: u32) -> f32 {
    let at = (row + chunk * BLOCK_BYTES) >> 2u;
    let dm = unpack2x16float(W[at]);
    var sum = 0;
    for (var k = 0u; k < 4u; k++) {
        let q = W[at + 1u + k];
        sum += dot4I8Packed(q & 0x0f0f0f0fu, xq[k]) + dot4I8Packed((q >> 4u) & 0x0f0f0f0fu, xq[k + 4u]);
    }
    return xd * (dm.x * f32(sum) + dm.y * f32(xsum));
}
//! Q5_0
fn dot8(row: u32, chunk: u32) -> f32 {
    let base = row + chunk * BLOCK_BYTES;
    let high = u32_at(base + 2u);
    var sum = 0;
    for (var k = 0u; k < 4u; k++) {
        let q = u32_at(base + 6u + k * 4u);
        let lo = (q & 0x0f0f0f0fu) | fifth_bits(high >> (k * 4u));
        let hi = ((q >> 4u) & 0x0f0f0f0fu) | fifth_bits(high >> (16u + k * 4u));
        sum += dot4I8Packed(lo, xq[k]) + dot4I8Packed(hi, xq[k + 4u]);
    }
    return f16_at(base) * xd * f32(sum - 16 * xsum);
}
//! Q5_1
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
    return xd * (dm.x * f32(sum) + dm.y * f32(xsum));
}
//! Q8_0
fn dot8(row: u32, chunk: u32) -> f32 {
    let block = block_at(row + chunk * BLOCK_BYTES);
    var sum = 0;
    for (var k = 0u; k < 8u; k++) {
        sum += dot4I8Packed(block.q[k], xq[k]);
    }
    return block.d * xd * f32(sum);
}
//! Q4_K
fn dot8(row: u32, chunk: u32) -> f32 {
    let base = row + (chunk / 8u) * BLOCK_BYTES;
    let sub = chunk % 8u;
    let dm = unpack2x16float(W[base >> 2u]);
    let sm = k_scale_min(base + 4u, sub);
    let quants = (base >> 2u) + 4u + (sub / 2u) * 8u;
    let shift = (sub & 1u) * 4u;
    var sum = 0;
    for (var k = 0u; k < 8u; k++) {
        sum += dot4I8Packed((W[quants + k] >> shift) & 0x0f0f0f0fu, xq[k]);
    }
    return xd * (dm.x * sm.x * f32(sum) - dm.y * sm.y * f32(xsum));
}
//! Q5_K
fn dot8(row: u32, chunk: u32) -> f32 {
    let base = row + (chunk / 8u) * BLOCK_BYTES;
    let sub = chunk % 8u;
    let dm = unpack2x16float(W[base >> 2u]);
    let sm = k_scale_min(base + 4u, sub);
    let high = (base >> 2u) + 4u;
    let quants = (base >> 2u) + 12u + (sub / 2u) * 8u;
    let shift = (sub & 1u) * 4u;
    var sum = 0;
    for (var k = 0u; k < 8u; k++) {
        let q = ((W[quants + k] >> shift) & 0x0f0f0f0fu) | (((W[high + k] >> sub) & 0x01010101u) << 4u);
        sum += dot4I8Packed(q, xq[k]);
    }
    return xd * (dm.x * sm.x * f32(sum) - dm.y * sm.y * f32(xsum));
}
//! Q6_K
// Two scales a chunk (one per 16 elements), so two sums, each with its own quants'
// offset of 32.
fn dot8(row: u32, chunk: u32) -> f32 {
    let base = row + (chunk / 8u) * BLOCK_BYTES;
    let half = (chunk % 8u) / 4u;
    let k = chunk % 4u;
    let low = base + half * 64u + (k % 2u) * 32u;
    let high = base + 128u + half * 32u;
    let scales = base + 192u + half * 8u + 2u * k;
    let shift = select(0u, 4u, k >= 2u);
    var sums = vec2<i32>(0);
    var xsums = vec2<i32>(0);
    let low_words = q6_k_words(low);
    let high_words = q6_k_words(high);
    for (var w = 0u; w < 8u; w++) {
        let q = ((low_words[w] >> shift) & 0x0f0f0f0fu) | (((high_words[w] >> (2u * k)) & 0x03030303u) << 4u);
        let part = select(1u, 0u, w < 4u);
        sums[part] += dot4I8Packed(q, xq[w]);
        xsums[part] += dot4I8Packed(0x01010101u, xq[w]);
    }
    let parts = vec2<f32>(sums - 32 * xsums);
    return f16_at(base + 208u) * xd * (i8_at(scales) * parts.x + i8_at(scales + 1u) * parts.y);
}
