// The GPU plan's matrix product for many tokens on cooperative matrices (tensor cores):
// a workgroup of four subgroups of 32 computes a tile of ROWS rows × TOKENS tokens. For
// each chunk of 32 columns, half the invocations decode the chunk of one row each into
// workgroup memory as f16 and the other half copy the tokens' 32 inputs beside it as
// f16; then each subgroup multiplies its 16 rows by both halves of the tokens, 16
// columns at a time, summing in f32. The host prepends `enable f16;` and
// `enable wgpu_cooperative_matrix;` and uses this kernel only where the adapter has
// 16×16×16 f16 matrices with f32 sums on subgroups of exactly 32.
//
// Every matrix is column-major: element (i, j) of a matrix at `m` with stride s is
// m[j * s + i]. A (16 rows × 16 columns) comes from wt, B (16 columns × 16 tokens)
// from xt, C (16 rows × 16 tokens) goes to yt.
// A paired product's gate and up rows alternate, so a row's sum sits beside its pair's.

// The rows and tokens a workgroup covers (the host reads them from here).
const ROWS: u32 = 64u;
const TOKENS: u32 = 32u;
const WG: u32 = 128u;

// Chunk column e of the tile's row r: wt[e * ROWS + r].
var<workgroup> wt: array<f16, 2048>;
// Chunk column e of the tile's token t: xt[t * 32 + e].
var<workgroup> xt: array<f16, 1024>;
// The tile's sums, token t of row r: yt[t * ROWS + r]; zero until the end (workgroup
// memory starts zeroed), so it also gives the accumulators their first value.
var<workgroup> yt: array<f32, 2048>;

@compute @workgroup_size(128)
fn matmul_matrix(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) subgroup: u32,
) {
    let row0 = (wid.x + wid.y * 65535u) * ROWS;
    if (row0 >= p.rows) {
        return;
    }
    let t0 = wid.z * TOKENS;
    let nblocks = p.ncols / 32u;
    // Invocations 0..64 decode row `lid` (past the last row they decode that row again;
    // its sums are not written); 64..128 copy 16 inputs of token (lid − 64) / 2.
    let own_row = min(row0 + lid, p.rows - 1u);
    let row_base = weight_row(own_row) * (p.ncols / BLOCK_ELEMS) * BLOCK_BYTES;
    let x_token = (lid - 64u) / 2u;
    let x_half = lid % 2u;
    let x_valid = lid >= 64u && t0 + x_token < p.ntok;
    let x_base = (p.x_off + (t0 + x_token) * p.x_stride) / 4u + x_half * 4u;
    let r16 = subgroup * 16u;
    var low = coopLoad<coop_mat16x16<f32, C>>(&yt[r16], ROWS);
    var high = coopLoad<coop_mat16x16<f32, C>>(&yt[16u * ROWS + r16], ROWS);
    for (var b = 0u; b < nblocks; b++) {
        if (lid < 64u) {
            decode(row_base, b);
            for (var k = 0u; k < 8u; k++) {
                for (var c = 0u; c < 4u; c++) {
                    wt[(k * 4u + c) * ROWS + lid] = f16(wv[k][c]);
                }
            }
        } else {
            for (var j = 0u; j < 4u; j++) {
                var v = vec4<f32>(0.0);
                if (x_valid) {
                    v = x[x_base + b * 8u + j];
                }
                let e = x_token * 32u + x_half * 16u + j * 4u;
                for (var c = 0u; c < 4u; c++) {
                    xt[e + c] = f16(v[c]);
                }
            }
        }
        workgroupBarrier();
        for (var e = 0u; e < 32u; e += 16u) {
            let a = coopLoad<coop_mat16x16<f16, A>>(&wt[e * ROWS + r16], ROWS);
            let b_low = coopLoad<coop_mat16x16<f16, B>>(&xt[e], 32u);
            let b_high = coopLoad<coop_mat16x16<f16, B>>(&xt[16u * 32u + e], 32u);
            low = coopMultiplyAdd(a, b_low, low);
            high = coopMultiplyAdd(a, b_high, high);
        }
        // The tiles are overwritten by the next chunk once every subgroup has used them.
        workgroupBarrier();
    }
    coopStore(low, &yt[r16], ROWS);
    coopStore(high, &yt[16u * ROWS + r16], ROWS);
    workgroupBarrier();
    for (var i = lid; i < ROWS * TOKENS; i += WG) {
        let t = t0 + i / ROWS;
        let row = row0 + i % ROWS;
        if (t < p.ntok && row < p.rows) {
            store_sum(t, p.row0 + row, yt[i], yt[min(i + 1u, ROWS * TOKENS - 1u)]);
        }
    }
}
