// The GPU plan's matrix product for many tokens (a prompt chunk): a workgroup computes
// a tile of ROWS rows × TOKENS tokens. For each chunk of 32 columns its invocations decode
// the chunk of every row of the tile into workgroup memory, one row each, and copy the
// tokens' 32 inputs beside it; each decoded weight then serves TOKENS tokens instead of
// being decoded again per token, and each invocation accumulates 4 rows × 8 tokens.
// A paired product's gate and up rows alternate, so one invocation holds both sums.

// The rows and tokens a workgroup covers (the host reads them from here).
const ROWS: u32 = 64u;
const TOKENS: u32 = 32u;

// Chunk element e of the tile's row r: wt[e * 16 + r / 4][r % 4].
var<workgroup> wt: array<vec4<f32>, 512>;
// Chunk element e of the tile's token t: xt[e * 8 + t / 4][t % 4].
var<workgroup> xt: array<vec4<f32>, 256>;

@compute @workgroup_size(64)
fn matmul_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = (wid.x + wid.y * 65535u) * ROWS;
    if (row0 >= p.rows) {
        return;
    }
    let t0 = wid.z * TOKENS;
    let nblocks = p.ncols / 32u;
    // Invocations past the last row decode that row again; their sums are not written.
    let own_row = min(row0 + lid, p.rows - 1u);
    let row_base = weight_row(own_row) * (p.ncols / BLOCK_ELEMS) * BLOCK_BYTES;
    // Each invocation copies 16 inputs of one token: half `lid % 2` of its chunk.
    let x_token = lid / 2u;
    let x_half = lid % 2u;
    let x_valid = t0 + x_token < p.ntok;
    let x_base = (p.x_off + (t0 + x_token) * p.x_stride) / 4u + x_half * 4u;
    // The invocation's own outputs: rows 4·rg.. and tokens 8·tg.. of the tile.
    let rg = lid % 16u;
    let tg = lid / 16u;
    var acc: array<vec4<f32>, 8>;
    for (var b = 0u; b < nblocks; b++) {
        decode(row_base, b);
        for (var k = 0u; k < 8u; k++) {
            for (var c = 0u; c < 4u; c++) {
                wt[(k * 4u + c) * 16u + lid / 4u][lid % 4u] = wv[k][c];
            }
        }
        for (var j = 0u; j < 4u; j++) {
            var v = vec4<f32>(0.0);
            if (x_valid) {
                v = x[x_base + b * 8u + j];
            }
            let e = x_half * 16u + j * 4u;
            for (var c = 0u; c < 4u; c++) {
                xt[(e + c) * 8u + x_token / 4u][x_token % 4u] = v[c];
            }
        }
        workgroupBarrier();
        for (var e = 0u; e < 32u; e++) {
            let w = wt[e * 16u + rg];
            let xa = xt[e * 8u + tg * 2u];
            let xb = xt[e * 8u + tg * 2u + 1u];
            acc[0] += w * xa.x;
            acc[1] += w * xa.y;
            acc[2] += w * xa.z;
            acc[3] += w * xa.w;
            acc[4] += w * xb.x;
            acc[5] += w * xb.y;
            acc[6] += w * xb.z;
            acc[7] += w * xb.w;
        }
        // The tile is overwritten by the next chunk once everyone has used it.
        workgroupBarrier();
    }
    for (var j = 0u; j < 8u; j++) {
        let t = t0 + tg * 8u + j;
        for (var c = 0u; c < 4u; c++) {
            let row = row0 + rg * 4u + c;
            if (t < p.ntok && row < p.rows) {
                store_sum(t, p.row0 + row, acc[j][c], acc[j][min(c + 1u, 3u)]);
            }
        }
    }
}
