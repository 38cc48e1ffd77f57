// The software plan's paired product (quant.wgsl's `paired`: a gated feed-forward's
// gate and up projections stacked in one weight): as in matmul_rows.wgsl, one
// invocation per output row and tile of TOKENS tokens, here reading the row's gate row
// and up row block by block and storing act(gate) · up, so the activation and the up
// projection need no passes of their own.

// The kernel rows (two per output row) and tokens a workgroup covers (the host reads
// them from here).
const ROWS: u32 = 128u;
const TOKENS: u32 = 8u;

@compute @workgroup_size(64)
fn matmul_pairs(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let pair = gid.x + wid.y * 65535u * (ROWS / 2u);
    if (2u * pair >= p.rows) {
        return;
    }
    let t0 = gid.z * TOKENS;
    let nblocks = p.ncols / 32u;
    let row_bytes = (p.ncols / BLOCK_ELEMS) * BLOCK_BYTES;
    let gate_base = weight_row(2u * pair) * row_bytes;
    let up_base = weight_row(2u * pair + 1u) * row_bytes;
    var gate = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    var up = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let tiles = min(TOKENS, p.ntok - t0);
    for (var b = 0u; b < nblocks; b++) {
        decode(gate_base, b);
        let gate_values = wv;
        decode(up_base, b);
        for (var t = 0u; t < tiles; t++) {
            let xb = (p.x_off + (t0 + t) * p.x_stride) / 4u + b * 8u;
            var g = 0.0;
            var u = 0.0;
            for (var k = 0u; k < 8u; k++) {
                let xv = x[xb + k];
                g += dot(gate_values[k], xv);
                u += dot(wv[k], xv);
            }
            gate[t] += g;
            up[t] += u;
        }
    }
    for (var t = 0u; t < tiles; t++) {
        store_sum(t0 + t, 2u * pair, gate[t], up[t]);
    }
}
