// The decode product's input quantized to 8 bits (matvec.wgsl), as llama.cpp's CPU and
// CUDA products quantize theirs: each chunk of 32 values becomes 32 signed bytes with
// one scale (max |x| / 127), and each weight chunk is multiplied by them in integers,
// four bytes per `dot4I8Packed` (`dot8`, per weight type in dot8.wgsl), so no weight is
// converted to a float (on NVIDIA's SMs a conversion issues at a quarter of the rate
// of a multiply-add, and the f32 product converts every weight). Each invocation
// quantizes the chunks it reads, once for all ROWS rows.

// The chunk's quants, four a word in element order; their scale; their sum.
var<private> xq: array<u32, 8>;
var<private> xd: f32;
var<private> xsum: i32;

fn load_input(at: u32) {
    var v: array<vec4<f32>, 8>;
    var m = vec4<f32>(0.0);
    for (var k = 0u; k < 8u; k++) {
        v[k] = x[at + k];
        m = max(m, abs(v[k]));
    }
    let amax = max(max(m.x, m.y), max(m.z, m.w));
    let inverse = select(0.0, 1.0 / amax, amax > 0.0);
    xd = amax / 127.0;
    xsum = 0;
    for (var k = 0u; k < 8u; k++) {
        xq[k] = pack4x8snorm(v[k] * inverse);
        xsum += dot4I8Packed(xq[k], 0x01010101u);
    }
}

fn row_dot(row: u32, chunk: u32) -> f32 {
    return dot8(row, chunk);
}
