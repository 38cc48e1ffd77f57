// The decode product's input as f32 (matvec.wgsl): a chunk of 32 values, each weight
// chunk decoded to f32 (`decode`) and multiplied in f32.

var<private> xv: array<vec4<f32>, 8>;

// matvec.wgsl's unit is a chunk.
const UNIT_CHUNKS: u32 = 1u;

// Chunk `chunk` of the token whose input starts at vec4 `x0`.
fn load_input(x0: u32, chunk: u32) {
    for (var k = 0u; k < 8u; k++) {
        xv[k] = x[x0 + chunk * 8u + k];
    }
}

fn row_dot(row: u32, chunk: u32) -> f32 {
    decode(row, chunk);
    var s = 0.0;
    for (var k = 0u; k < 8u; k++) {
        s += dot(wv[k], xv[k]);
    }
    return s;
}
