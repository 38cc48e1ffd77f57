// The software plan's matrix product for a few tokens (a decode step; plan.rs says
// when the software plan is used): one pass per token, each invocation computing RUN
// neighbouring output rows (RUN is even, so a paired product's gate and up rows,
// which alternate, meet in one invocation).
//
// lavapipe loads storage buffers one lane at a time, so loads, not arithmetic, are
// what a product costs there (an invocation doing the same arithmetic on values it
// computes runs five times faster than one loading its weights). Each 32-element chunk
// of the token's input is loaded once and used for all RUN rows, instead of once per
// row: on lavapipe this and the aligned block reads of decode.wgsl made the products of
// SmolLM2's shapes 2–4× faster than matmul_rows.wgsl's row per invocation. Workgroups
// of 16 keep a 576-row matrix in several workgroups, so both threads get a share.

const RUN: u32 = 8u;
const WG: u32 = 16u;
// The rows (RUN · WG) and tokens a workgroup covers (the host reads them from here).
const ROWS: u32 = 128u;
const TOKENS: u32 = 1u;

// The byte where row `row0 + r` starts, or the last row's past the end.
fn at(row0: u32, r: u32) -> u32 {
    let row_bytes = (p.ncols / BLOCK_ELEMS) * BLOCK_BYTES;
    return weight_row(min(row0 + r, p.rows - 1u)) * row_bytes;
}

// Block `b` of the row starting at byte `row` times the input's chunk `xv`.
fn block_dot(row: u32, b: u32, xv: array<vec4<f32>, 8>) -> f32 {
    decode(row, b);
    var s = 0.0;
    for (var k = 0u; k < 8u; k++) {
        s += dot(wv[k], xv[k]);
    }
    return s;
}

@compute @workgroup_size(WG)
fn matvec_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // No early return for rows past the end: they read the last row again and store
    // nothing, so every lane stays on one path.
    let row0 = ((wid.x + wid.y * 65535u) * WG + lid) * RUN;
    let t = wid.z;
    let nblocks = p.ncols / 32u;
    let x0 = (p.x_off + t * p.x_stride) / 4u;
    let last = p.rows - 1u;
    // Eight accumulators of their own, not an array summed in a loop over the rows:
    // lavapipe kept the array in memory, and the products of SmolLM2's shapes ran
    // 12–20 % slower that way.
    let rows = array<u32, RUN>(at(row0, 0u), at(row0, 1u), at(row0, 2u), at(row0, 3u),
        at(row0, 4u), at(row0, 5u), at(row0, 6u), at(row0, 7u));
    var a0 = 0.0;
    var a1 = 0.0;
    var a2 = 0.0;
    var a3 = 0.0;
    var a4 = 0.0;
    var a5 = 0.0;
    var a6 = 0.0;
    var a7 = 0.0;
    for (var b = 0u; b < nblocks; b++) {
        var xv: array<vec4<f32>, 8>;
        for (var k = 0u; k < 8u; k++) {
            xv[k] = x[x0 + b * 8u + k];
        }
        a0 += block_dot(rows[0], b, xv);
        a1 += block_dot(rows[1], b, xv);
        a2 += block_dot(rows[2], b, xv);
        a3 += block_dot(rows[3], b, xv);
        a4 += block_dot(rows[4], b, xv);
        a5 += block_dot(rows[5], b, xv);
        a6 += block_dot(rows[6], b, xv);
        a7 += block_dot(rows[7], b, xv);
    }
    let acc = array<f32, RUN>(a0, a1, a2, a3, a4, a5, a6, a7);
    for (var r = 0u; r < RUN; r++) {
        if (row0 + r <= last) {
            store_sum(t, p.row0 + row0 + r, acc[r], acc[min(r + 1u, RUN - 1u)]);
        }
    }
}
