// The GPU plan's matrix product for many tokens on cooperative matrices (tensor cores):
// a workgroup of ROWS invocations computes a tile of ROWS rows × TOKENS tokens, each
// subgroup of 32 a part of 64 rows × 64 tokens in sixteen 16×16 sums. Each invocation
// loads one row's 32-column chunk and a share of the tokens' 32 inputs (`fetch`), then
// decodes the chunk into workgroup memory as f16 and copies the inputs beside it as f16
// (`stash`); then each subgroup multiplies its four 16-row parts by its four 16-token
// parts, 16 columns at a time, summing in f32. A part of 64 × 64 loads eight matrices
// from workgroup memory for sixteen products, where one of 32 × 64 loads six for eight:
// the loads, not the tensor cores, bound a chunk.
// The next chunk's loads are in flight while the subgroups multiply one chunk: fetched
// into registers before the products, decoded and stored after them, so the products
// hide the loads' latency. With two copies of the tiles (COPIES) the next chunk goes
// into the other copy and a chunk costs one barrier; with one copy, two. The host
// prepends `enable f16;` and `enable wgpu_cooperative_matrix;` and uses this kernel
// only where the adapter has 16×16×16 f16 matrices with f32 sums on subgroups of
// exactly 32.
//
// A row's 32 columns and a token's 32 inputs each lie together in workgroup memory,
// STRIDE values apart: A (16 rows × 16 columns) is read row-major from wt (coopLoadT),
// B (16 columns × 16 tokens) column-major from xt, C (16 rows × 16 tokens) goes out
// through the subgroup's slot of `sums`. STRIDE is 8 values more than a chunk, so the
// 16-byte pieces of eight neighbouring rows (or tokens) a matrix load reads at once lie
// in different banks of workgroup memory; at 32, as at a stride of ROWS, they all fall
// in the same four banks. A paired product's gate and up rows alternate, so a row's sum
// sits beside its pair's.
//
// ROWS and COPIES are the defaults the host substitutes (kernels.rs,
// `Kernels::with_shapes`): ROWS is a multiple of 64, and tiles of 256 rows, for
// products that still fill the GPU with them, fit the 48 KiB of workgroup memory an
// H100 allows only with one copy.

// The rows and tokens a workgroup covers (the host reads them from here).
const ROWS: u32 = 128u;
const TOKENS: u32 = 128u;
const COPIES: u32 = 2u;
const STRIDE: u32 = 40u;
// One invocation per row.
const WG: u32 = ROWS;
// The subgroups' parts side by side along a tile's rows; those along its tokens follow.
const ROW_PARTS: u32 = ROWS / 64u;
// The vec4s of the tokens' inputs each invocation copies a chunk.
const XQUADS: u32 = TOKENS * 8u / WG;
const W_TILE: u32 = ROWS * STRIDE;
const X_TILE: u32 = TOKENS * STRIDE;
// The tiles hold vectors of four values, the matrix loads count in them.
const STRIDE4: u32 = STRIDE / 4u;

// Copy c of the chunk: column e of the tile's row r at value c * W_TILE + r * STRIDE + e
// of wt, column e of token t at value c * X_TILE + t * STRIDE + e of xt. In vectors of
// four, so that an invocation stores its row's 32 values in eight stores, not 32.
var<workgroup> wt: array<vec4<f16>, COPIES * W_TILE / 4u>;
var<workgroup> xt: array<vec4<f16>, COPIES * X_TILE / 4u>;
// Each subgroup's 16×16 slot: zero until the end (workgroup memory starts zeroed), so
// it gives the sums their first value, then holds one part of them at a time on its
// way out.
var<workgroup> sums: array<f32, WG / 32u * 256u>;

// The next chunk on its way to workgroup memory: the row's words are in `words`
// (quant.wgsl), the inputs here.
var<private> xr: array<vec4<f32>, XQUADS>;

// Load chunk `b` of the invocation's row (at byte `row_base`) and its inputs' share;
// tokens past the last read the last again (their sums are not stored).
fn fetch(row_base: u32, t0: u32, lid: u32, b: u32) {
    load_chunk(row_base, b);
    for (var q = 0u; q < XQUADS; q++) {
        let i = lid + q * WG;
        let t = min(t0 + i / 8u, p.ntok - 1u);
        xr[q] = x[(p.x_off + t * p.x_stride) / 4u + b * 8u + i % 8u];
    }
}

// Decode chunk `b` of the row at byte `row_base`, which `fetch` loaded, and store it and
// the inputs into copy `c` of the tiles.
fn stash(c: u32, lid: u32, row_base: u32, b: u32) {
    decode_loaded(row_base, b);
    let w = (c * W_TILE + lid * STRIDE) / 4u;
    for (var k = 0u; k < 8u; k++) {
        wt[w + k] = vec4<f16>(wv[k]);
    }
    for (var q = 0u; q < XQUADS; q++) {
        let i = lid + q * WG;
        xt[(c * X_TILE + (i / 8u) * STRIDE) / 4u + i % 8u] = vec4<f16>(xr[q]);
    }
}

@compute @workgroup_size(WG)
fn matmul_matrix(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let row0 = (wid.x + wid.y * 65535u) * ROWS;
    if (row0 >= p.rows) {
        return;
    }
    let t0 = wid.z * TOKENS;
    let nblocks = p.ncols / 32u;
    // Past the last row an invocation decodes that row again; its sums are not stored.
    let own_row = min(row0 + lid, p.rows - 1u);
    let row_base = weight_row(own_row) * (p.ncols / BLOCK_ELEMS) * BLOCK_BYTES;
    let r64 = (subgroup % ROW_PARTS) * 64u;
    let t64 = (subgroup / ROW_PARTS) * 64u;
    let slot = subgroup * 256u;
    // Sum (i, j): rows r64 + 16i.., tokens t64 + 16j...
    var s00 = coopLoad<coop_mat16x16<f32, C>>(&sums[slot], 16u);
    var s01 = s00;
    var s02 = s00;
    var s03 = s00;
    var s10 = s00;
    var s11 = s00;
    var s12 = s00;
    var s13 = s00;
    var s20 = s00;
    var s21 = s00;
    var s22 = s00;
    var s23 = s00;
    var s30 = s00;
    var s31 = s00;
    var s32 = s00;
    var s33 = s00;
    fetch(row_base, t0, lid, 0u);
    for (var b = 0u; b < nblocks; b++) {
        let c = b % COPIES;
        if (COPIES == 1u) {
            // Every subgroup is done with the copy's previous chunk.
            workgroupBarrier();
        }
        stash(c, lid, row_base, b);
        workgroupBarrier();
        // The last chunk fetches itself again, unused: no branch around the loads.
        fetch(row_base, t0, lid, min(b + 1u, nblocks - 1u));
        for (var e = 0u; e < 32u; e += 16u) {
            let v = (c * X_TILE + t64 * STRIDE + e) / 4u;
            let b0 = coopLoad<coop_mat16x16<f16, B>>(&xt[v], STRIDE4);
            let b1 = coopLoad<coop_mat16x16<f16, B>>(&xt[v + 16u * STRIDE4], STRIDE4);
            let b2 = coopLoad<coop_mat16x16<f16, B>>(&xt[v + 32u * STRIDE4], STRIDE4);
            let b3 = coopLoad<coop_mat16x16<f16, B>>(&xt[v + 48u * STRIDE4], STRIDE4);
            let w = (c * W_TILE + r64 * STRIDE + e) / 4u;
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&wt[w], STRIDE4);
            s00 = coopMultiplyAdd(a0, b0, s00);
            s01 = coopMultiplyAdd(a0, b1, s01);
            s02 = coopMultiplyAdd(a0, b2, s02);
            s03 = coopMultiplyAdd(a0, b3, s03);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&wt[w + 16u * STRIDE4], STRIDE4);
            s10 = coopMultiplyAdd(a1, b0, s10);
            s11 = coopMultiplyAdd(a1, b1, s11);
            s12 = coopMultiplyAdd(a1, b2, s12);
            s13 = coopMultiplyAdd(a1, b3, s13);
            let a2 = coopLoadT<coop_mat16x16<f16, A>>(&wt[w + 32u * STRIDE4], STRIDE4);
            s20 = coopMultiplyAdd(a2, b0, s20);
            s21 = coopMultiplyAdd(a2, b1, s21);
            s22 = coopMultiplyAdd(a2, b2, s22);
            s23 = coopMultiplyAdd(a2, b3, s23);
            let a3 = coopLoadT<coop_mat16x16<f16, A>>(&wt[w + 48u * STRIDE4], STRIDE4);
            s30 = coopMultiplyAdd(a3, b0, s30);
            s31 = coopMultiplyAdd(a3, b1, s31);
            s32 = coopMultiplyAdd(a3, b2, s32);
            s33 = coopMultiplyAdd(a3, b3, s33);
        }
        // With two copies, no second barrier: the next chunk goes into the other copy,
        // and the one after into this copy only once every subgroup has passed the next
        // barrier, after these products.
    }
    let rows = row0 + r64;
    let tokens = t0 + t64;
    store_part(s00, rows, tokens, slot, lane);
    store_part(s01, rows, tokens + 16u, slot, lane);
    store_part(s02, rows, tokens + 32u, slot, lane);
    store_part(s03, rows, tokens + 48u, slot, lane);
    store_part(s10, rows + 16u, tokens, slot, lane);
    store_part(s11, rows + 16u, tokens + 16u, slot, lane);
    store_part(s12, rows + 16u, tokens + 32u, slot, lane);
    store_part(s13, rows + 16u, tokens + 48u, slot, lane);
    store_part(s20, rows + 32u, tokens, slot, lane);
    store_part(s21, rows + 32u, tokens + 16u, slot, lane);
    store_part(s22, rows + 32u, tokens + 32u, slot, lane);
    store_part(s23, rows + 32u, tokens + 48u, slot, lane);
    store_part(s30, rows + 48u, tokens, slot, lane);
    store_part(s31, rows + 48u, tokens + 16u, slot, lane);
    store_part(s32, rows + 48u, tokens + 32u, slot, lane);
    store_part(s33, rows + 48u, tokens + 48u, slot, lane);
}

// Store the 16 rows × 16 tokens of `sum` (rows from `row0`, tokens from `t0`) through
// the subgroup's slot, then let the slot be overwritten.
fn store_part(sum: coop_mat16x16<f32, C>, row0: u32, t0: u32, slot: u32, lane: u32) {
    coopStore(sum, &sums[slot], 16u);
    workgroupBarrier();
    for (var i = lane; i < 256u; i += 32u) {
        let r = i % 16u;
        let t = t0 + i / 16u;
        if (t < p.ntok && row0 + r < p.rows) {
            store_sum(t, p.row0 + row0 + r, sums[slot + i], sums[slot + min(i + 1u, 255u)]);
        }
    }
    workgroupBarrier();
}
