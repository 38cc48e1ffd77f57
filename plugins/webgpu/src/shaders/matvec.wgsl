// The GPU plan's matrix product for a few tokens (a decode step): a workgroup of WG
// invocations computes ROWS output rows of one token. Its invocations take the rows'
// units in turn (a 32-element chunk, or Q6_K's two chunks whose quants share bytes:
// UNIT_CHUNKS, dot8.wgsl), so neighbours read neighbouring bytes (coalesced);
// each loads a unit of the token's input once (`load_input`) and uses it for all ROWS
// rows (`row_dot`: the input is read ROWS times less than with a workgroup per row),
// keeps one partial sum per row in vectors of four rows, and `reduce` (the subgroup or
// the workgroup-memory variant, chosen by the host) adds each vector up in one pass.
// The host appends one of two input modules: input_f32.wgsl (the chunk as f32, weights
// decoded to f32) or input_q8.wgsl (the unit quantized to 8 bits, in one part or two,
// beforehand by norm.wgsl's quantize_input or rmsnorm_quantized; integer dot products).
// A paired product's gate and up rows alternate, so with ROWS even a workgroup holds
// both sums of each of its pairs.
//
// WG and ROWS are the defaults the host substitutes (plan.rs, `MatvecShape`). Of the
// shapes swept on an H200 (docs/BENCHMARKS.md, 2026-12-06), 64 invocations with four
// rows read every 8B matrix fastest (1.4–2.7× the 32 invocations of before) and decoded
// fastest, on an H100 too (the 1B shape +5 % in two A/B runs).

const WG: u32 = 64u;
// The rows and tokens a workgroup covers (the host reads them from here).
const ROWS: u32 = 4u;
const TOKENS: u32 = 1u;
const QUADS: u32 = (ROWS + 3u) / 4u;

@compute @workgroup_size(WG)
fn matvec(@builtin(workgroup_id) wid: vec3<u32>, lanes: Lanes) {
    let row0 = (wid.x + wid.y * 65535u) * ROWS;
    if (row0 >= p.rows) {
        return;
    }
    let t = wid.z * TOKENS;
    let nblocks = p.ncols / 32u;
    let row_bytes = (p.ncols / BLOCK_ELEMS) * BLOCK_BYTES;
    let x0 = (p.x_off + t * p.x_stride) / 4u;
    // Rows past the last one read the last row again; their sums are not stored.
    let last = p.rows - 1u;
    var acc: array<vec4<f32>, QUADS>;
    for (var unit = lanes.lid; unit < nblocks / UNIT_CHUNKS; unit += WG) {
        load_input(x0, unit);
        for (var r = 0u; r < ROWS; r++) {
            acc[r / 4u][r % 4u] += row_dot(weight_row(min(row0 + r, last)) * row_bytes, unit);
        }
    }
    for (var quad = 0u; quad < QUADS; quad++) {
        let total = reduce(lanes, acc[quad]);
        let i = lanes.lid;
        let r = quad * 4u + i;
        if (i < 4u && r < ROWS && row0 + r <= last) {
            store_sum(t, p.row0 + row0 + r, total[i], total[min(i + 1u, 3u)]);
        }
        // The next vector's reduction reuses the workgroup memory.
        workgroupBarrier();
    }
}
