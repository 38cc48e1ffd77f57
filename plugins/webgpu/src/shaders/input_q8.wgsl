// The decode product's input quantized to 8 bits (matvec.wgsl), as llama.cpp's CPU and
// CUDA products quantize theirs: each chunk of 32 values is 32 signed bytes with one
// scale (max |x| / 127), and each weight chunk is multiplied by them in integers, four
// bytes per `dot4I8Packed` (`dot8`, per weight type in dot8.wgsl), so no weight is
// converted to a float. norm.wgsl quantizes the input once per product, or as its
// RMSNorm writes it (before, every invocation quantized the chunks it read): on an
// H100 the 8B shape's products then ran twice as fast as with f32 input
// (docs/BENCHMARKS.md, 2026-12-06, third session). Here `x` is that buffer, a token's
// PARTS parts taking `p.x_stride` words (norm.wgsl says how they are laid out). With
// two parts (`input=q16`) the second is what the first left over, quantized again: the
// input is then exact to 1/254² of a chunk's largest value, and every weight chunk is
// multiplied twice.

const PARTS: u32 = 1u;

// The unit's chunks' quants (eight words a chunk, chunk after chunk, four quants a word
// in element order), their scales and their sums: of the part `dot8` multiplies now,
// and of each part.
var<private> xq: array<u32, 8 * UNIT_CHUNKS>;
var<private> xd: array<f32, UNIT_CHUNKS>;
var<private> xsum: array<i32, UNIT_CHUNKS>;
var<private> part_q: array<array<u32, 8 * UNIT_CHUNKS>, PARTS>;
var<private> part_d: array<array<f32, UNIT_CHUNKS>, PARTS>;
var<private> part_sum: array<array<i32, UNIT_CHUNKS>, PARTS>;

// Chunk `i` of unit `unit` (dot8.wgsl says what a unit is).
fn unit_chunk(unit: u32, i: u32) -> u32 {
    let group = unit / UNIT_STRIDE;
    return group * UNIT_STRIDE * UNIT_CHUNKS + unit % UNIT_STRIDE + i * UNIT_STRIDE;
}

// Unit `unit` of the token whose quantized input starts at vec4 `x0`.
fn load_input(x0: u32, unit: u32) {
    let chunks = p.ncols / 32u;
    for (var part = 0u; part < PARTS; part++) {
        let at = x0 + part * (p.x_stride / PARTS / 4u);
        for (var i = 0u; i < UNIT_CHUNKS; i++) {
            let chunk = unit_chunk(unit, i);
            let low = bitcast<vec4<u32>>(x[at + 2u * chunk]);
            let high = bitcast<vec4<u32>>(x[at + 2u * chunk + 1u]);
            let words = array<u32, 8>(low.x, low.y, low.z, low.w, high.x, high.y, high.z, high.w);
            for (var k = 0u; k < 8u; k++) {
                part_q[part][8u * i + k] = words[k];
            }
            let pairs = x[at + 2u * chunks + chunk / 2u];
            let pair = select(pairs.xy, pairs.zw, (chunk & 1u) == 1u);
            part_d[part][i] = pair.x;
            part_sum[part][i] = bitcast<i32>(pair.y);
        }
    }
}

fn row_dot(row: u32, unit: u32) -> f32 {
    var s = 0.0;
    for (var part = 0u; part < PARTS; part++) {
        xq = part_q[part];
        xd = part_d[part];
        xsum = part_sum[part];
        s += dot8(row, unit);
    }
    return s;
}
