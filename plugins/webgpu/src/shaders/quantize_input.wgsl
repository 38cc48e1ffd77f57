// The decode product's 8-bit input (input_q8.wgsl), made once per product: one
// invocation per chunk of 32 values of one token. Each chunk becomes eight words of
// signed bytes, x / max |x| · 127 rounded, and a pair of its scale (max |x| / 127) and
// the sum of its quants; a part's words are its chunks' quants in order, then the
// pairs. A token's PARTS parts take `out_stride` words from word `t · out_stride`, an
// equal share each (the host makes the shares multiples of 4, so the product reads
// them as vectors): the first quantizes the values, the second what the first left
// over.

const PARTS: u32 = 1u;

struct QuantizeParams {
    ncols: u32,
    ntok: u32,
    x_off: u32,     // offset of token 0 in x, in f32 (a multiple of 4)
    x_stride: u32,  // distance between tokens in x, in f32 (a multiple of 4)
    out_stride: u32,
}

@group(0) @binding(0) var<uniform> p: QuantizeParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> prepared: array<u32>;

@compute @workgroup_size(64)
fn quantize_input(@builtin(global_invocation_id) gid: vec3<u32>) {
    let chunks = p.ncols / 32u;
    let chunk = gid.x;
    let t = gid.y;
    if (chunk >= chunks || t >= p.ntok) {
        return;
    }
    let at = (p.x_off + t * p.x_stride) / 4u + chunk * 8u;
    var v: array<vec4<f32>, 8>;
    for (var k = 0u; k < 8u; k++) {
        v[k] = x[at + k];
    }
    let part_words = p.out_stride / PARTS;
    for (var part = 0u; part < PARTS; part++) {
        var m = vec4<f32>(0.0);
        for (var k = 0u; k < 8u; k++) {
            m = max(m, abs(v[k]));
        }
        let amax = max(max(m.x, m.y), max(m.z, m.w));
        let inverse = select(0.0, 1.0 / amax, amax > 0.0);
        let out = t * p.out_stride + part * part_words;
        var sum = 0;
        for (var k = 0u; k < 8u; k++) {
            let q = pack4x8snorm(v[k] * inverse);
            prepared[out + chunk * 8u + k] = q;
            sum += dot4I8Packed(q, 0x01010101u);
            // What this part leaves for the next.
            v[k] -= unpack4x8snorm(q) * amax;
        }
        let pair = out + chunks * 8u + chunk * 2u;
        prepared[pair] = bitcast<u32>(amax / 127.0);
        prepared[pair + 1u] = bitcast<u32>(sum);
    }
}
