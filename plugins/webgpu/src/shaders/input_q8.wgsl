// The decode product's input quantized to 8 bits (matvec.wgsl), as llama.cpp's CPU and
// CUDA products quantize theirs: each chunk of 32 values is 32 signed bytes with one
// scale (max |x| / 127), and each weight chunk is multiplied by them in integers, four
// bytes per `dot4I8Packed` (`dot8`, per weight type in dot8.wgsl), so no weight is
// converted to a float. quantize_input.wgsl quantizes the input once per product, so
// each invocation loads 40 bytes a chunk where f32 input is 128: on an H100 that made
// the 8B shape's products 2–2.4× faster (docs/BENCHMARKS.md, 2026-12-06, third
// session). Here `x` is that buffer: a token's quants, eight words a chunk, then its
// chunks' (scale, sum of quants) pairs.

// The chunk's quants, four a word in element order; their scale; their sum.
var<private> xq: array<u32, 8>;
var<private> xd: f32;
var<private> xsum: i32;

// Chunk `chunk` of the token whose quantized input starts at vec4 `x0`.
fn load_input(x0: u32, chunk: u32) {
    let low = bitcast<vec4<u32>>(x[x0 + 2u * chunk]);
    let high = bitcast<vec4<u32>>(x[x0 + 2u * chunk + 1u]);
    xq = array<u32, 8>(low.x, low.y, low.z, low.w, high.x, high.y, high.z, high.w);
    let pairs = x[x0 + 2u * (p.ncols / 32u) + chunk / 2u];
    let pair = select(pairs.xy, pairs.zw, (chunk & 1u) == 1u);
    xd = pair.x;
    xsum = bitcast<i32>(pair.y);
}

fn row_dot(row: u32, chunk: u32) -> f32 {
    return dot8(row, chunk);
}
