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

@compute @workgroup_size(WG)
fn matvec_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // No early return for rows past the end: they read the last row again and store
    // nothing, so every lane stays on one path.
    let row0 = ((wid.x + wid.y * 65535u) * WG + lid) * RUN;
    let t = wid.z;
    let nblocks = p.ncols / 32u;
    let row_bytes = (p.ncols / BLOCK_ELEMS) * BLOCK_BYTES;
    let x0 = (p.x_off + t * p.x_stride) / 4u;
    let last = p.rows - 1u;
    var acc: array<f32, RUN>;
    for (var b = 0u; b < nblocks; b++) {
        var xv: array<vec4<f32>, 8>;
        for (var k = 0u; k < 8u; k++) {
            xv[k] = x[x0 + b * 8u + k];
        }
        for (var r = 0u; r < RUN; r++) {
            decode(weight_row(min(row0 + r, last)) * row_bytes, b);
            var s = 0.0;
            for (var k = 0u; k < 8u; k++) {
                s += dot(wv[k], xv[k]);
            }
            acc[r] += s;
        }
    }
    for (var r = 0u; r < RUN; r++) {
        if (row0 + r <= last) {
            store_sum(t, p.row0 + row0 + r, acc[r], acc[min(r + 1u, RUN - 1u)]);
        }
    }
}
