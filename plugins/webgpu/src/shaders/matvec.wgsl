// The GPU plan's matrix product for a few tokens (a decode step): one workgroup per
// output row. Its invocations take the row's chunks in turn, so neighbours read
// neighbouring bytes (coalesced) and a row is spread over WG invocations rather than
// read by one; each keeps partial sums for up to TILE tokens, which `reduce` (the
// subgroup or the workgroup-memory variant, chosen by the host) adds up.

const WG: u32 = 64u;
const TILE: u32 = 8u;

@compute @workgroup_size(64)
fn matvec(@builtin(workgroup_id) wid: vec3<u32>, lanes: Lanes) {
    let row = wid.x + wid.y * 65535u;
    if (row >= p.rows) {
        return;
    }
    let t0 = wid.z * TILE;
    let tiles = min(TILE, p.ntok - t0);
    let nblocks = p.ncols / 32u;
    let row_base = row * (p.ncols / BLOCK_ELEMS) * BLOCK_BYTES;
    var acc = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (var b = lanes.lid; b < nblocks; b += WG) {
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
        let total = reduce(lanes, acc[t]);
        if (lanes.lid == 0u) {
            store(p.y_off + (t0 + t) * p.y_stride + p.row0 + row, total);
        }
    }
}
