//! F32
const BLOCK_BYTES: u32 = 128u;
fn decode(base: u32) {
    for (var k = 0u; k < 8u; k++) {
        let i = (base >> 2u) + k * 4u;
        wv[k] = vec4<f32>(bitcast<f32>(W[i]), bitcast<f32>(W[i + 1u]), bitcast<f32>(W[i + 2u]), bitcast<f32>(W[i + 3u]));
    }
}
//! F16
const BLOCK_BYTES: u32 = 64u;
fn decode(base: u32) {
    for (var k = 0u; k < 8u; k++) {
        let i = (base >> 2u) + k * 2u;
        wv[k] = vec4<f32>(unpack2x16float(W[i]), unpack2x16float(W[i + 1u]));
    }
}
//! Q4_0
const BLOCK_BYTES: u32 = 18u;
fn decode(base: u32) {
    let d = f16_at(base);
    let m = -8.0 * d;
    for (var k = 0u; k < 4u; k++) {
        let q = u32_at(base + 2u + k * 4u);
        wv[k] = nibbles_lo(q) * d + m;
        wv[k + 4u] = nibbles_hi(q) * d + m;
    }
}
//! Q4_1
const BLOCK_BYTES: u32 = 20u;
fn decode(base: u32) {
    let dm = unpack2x16float(W[base >> 2u]);
    for (var k = 0u; k < 4u; k++) {
        let q = W[(base >> 2u) + 1u + k];
        wv[k] = nibbles_lo(q) * dm.x + dm.y;
        wv[k + 4u] = nibbles_hi(q) * dm.x + dm.y;
    }
}
//! Q8_0
const BLOCK_BYTES: u32 = 34u;
fn decode(base: u32) {
    let d = f16_at(base);
    for (var k = 0u; k < 8u; k++) {
        let q = u32_at(base + 2u + k * 4u);
        let v = vec4<i32>(i32(q << 24u) >> 24u, i32(q << 16u) >> 24u, i32(q << 8u) >> 24u, i32(q) >> 24u);
        wv[k] = vec4<f32>(v) * d;
    }
}
