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

// Each invocation's share of its chunk's largest value and quants' sum.
var<workgroup> lane_max: array<f32, 256>;
var<workgroup> lane_sum: array<i32, 256>;

// Invocation `lid`'s four values `values` quantized: eight neighbouring invocations
// hold a chunk (`chunk` of the row's `chunks`, the first of them at a multiple of 8),
// the first writing its scale and sum, into the row's `row_words` words of `prepared`
// from word `out`; an invocation not `inside` the row holds none. Every invocation of
// the workgroup calls it together (it has barriers), up to 256 of them. Each
// invocation loads and stores its own neighbouring values: on an H100 a norm that
// quantized with an invocation a chunk, its 32 values in turn, took 18.5 µs a dispatch
// (profiled, about 7 of them the profiler's own) where the norm alone took 10.2; this
// way it takes 12.8 (docs/BENCHMARKS.md, 2026-12-06).
fn quantize_lanes(
    lid: u32,
    values: vec4<f32>,
    inside: bool,
    out: u32,
    row_words: u32,
    chunk: u32,
    chunks: u32,
) {
    var v = values;
    let first = lid & ~7u;
    let part_words = row_words / PARTS;
    for (var part = 0u; part < PARTS; part++) {
        let m = abs(v);
        lane_max[lid] = max(max(m.x, m.y), max(m.z, m.w));
        workgroupBarrier();
        var amax = 0.0;
        for (var j = 0u; j < 8u; j++) {
            amax = max(amax, lane_max[first + j]);
        }
        let q = pack4x8snorm(v * select(0.0, 1.0 / amax, amax > 0.0));
        lane_sum[lid] = dot4I8Packed(q, 0x01010101u);
        workgroupBarrier();
        let at = out + part * part_words;
        if (inside) {
            prepared[at + chunk * 8u + (lid & 7u)] = q;
        }
        if (inside && lid == first) {
            var sum = 0;
            for (var j = 0u; j < 8u; j++) {
                sum += lane_sum[first + j];
            }
            prepared[at + chunks * 8u + chunk * 2u] = bitcast<u32>(amax / 127.0);
            prepared[at + chunks * 8u + chunk * 2u + 1u] = bitcast<u32>(sum);
        }
        // What this part leaves for the next.
        v -= unpack4x8snorm(q) * amax;
        // Every invocation has read the shares before the next part writes them.
        workgroupBarrier();
    }
}
