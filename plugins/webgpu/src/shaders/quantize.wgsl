// The decode product's input quantized to 8 bits (input_q8.wgsl reads it), written
// by the kernels that produce a product's input (norm.wgsl, attention.wgsl), which the
// host appends this file to. Each chunk of 32 values becomes eight words of signed
// bytes, x / max |x| · 127 rounded, and a pair of its scale (max |x| / 127) and the sum
// of its quants; a part's words are its chunks' quants in order, then the pairs. A
// row's PARTS parts take an equal share of its words (the host makes the shares
// multiples of 4, so the product reads them as vectors): the first quantizes the
// values, the second what the first left over.

const PARTS: u32 = 1u;

@group(0) @binding(7) var<storage, read_write> prepared: array<u32>;

// Chunk `chunk` of a row of `chunks`, its 32 values in `values`, into the row's
// `row_words` words of `prepared` from word `out`.
fn quantize_chunk(values: array<vec4<f32>, 8>, out: u32, row_words: u32, chunk: u32, chunks: u32) {
    var v = values;
    let part_words = row_words / PARTS;
    for (var part = 0u; part < PARTS; part++) {
        var m = vec4<f32>(0.0);
        for (var k = 0u; k < 8u; k++) {
            m = max(m, abs(v[k]));
        }
        let amax = max(max(m.x, m.y), max(m.z, m.w));
        let inverse = select(0.0, 1.0 / amax, amax > 0.0);
        let at = out + part * part_words;
        var sum = 0;
        for (var k = 0u; k < 8u; k++) {
            let q = pack4x8snorm(v[k] * inverse);
            prepared[at + chunk * 8u + k] = q;
            sum += dot4I8Packed(q, 0x01010101u);
            // What this part leaves for the next.
            v[k] -= unpack4x8snorm(q) * amax;
        }
        let pair = at + chunks * 8u + chunk * 2u;
        prepared[pair] = bitcast<u32>(amax / 127.0);
        prepared[pair + 1u] = bitcast<u32>(sum);
    }
}

