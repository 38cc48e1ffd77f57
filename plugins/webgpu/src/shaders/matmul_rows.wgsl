// The software plan's matrix product (plan.rs says when it is used).

// The rows and tokens a workgroup covers (the host reads them from here).
const ROWS: u32 = 64u;
const TOKENS: u32 = 8u;

// One invocation per output row and tile of TOKENS tokens: each block of the row is
// decoded once and used for every token of the tile. A row per invocation (rather than
// a workgroup per row) keeps the workgroup count low, which is what software adapters
// such as lavapipe pay for; the shared x values are read by every lane alike.
@compute @workgroup_size(64)
fn matmul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = gid.x + wid.y * 65535u * ROWS;
    if (row >= p.rows) {
        return;
    }
    let t0 = gid.z * TOKENS;
    let nblocks = p.ncols / 32u;
    let row_base = (matrix_row0() + row) * (p.ncols / BLOCK_ELEMS) * BLOCK_BYTES;
    var acc = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let tiles = min(TOKENS, p.ntok - t0);
    for (var b = 0u; b < nblocks; b++) {
        decode(row_base, b);
        for (var t = 0u; t < tiles; t++) {
            let xb = (p.x_off + (t0 + t) * p.x_stride) / 4u + b * 8u;
            var s = 0.0;
            for (var k = 0u; k < 8u; k++) {
                s += dot(wv[k], x[xb + k]);
            }
            acc[t] += s;
        }
    }
    for (var t = 0u; t < tiles; t++) {
        store(t0 + t, p.row0 + row, acc[t]);
    }
}
