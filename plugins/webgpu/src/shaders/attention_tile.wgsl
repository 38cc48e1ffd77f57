// A prompt's attention on the GPU plans, in tiles of queries: one workgroup per (KV head,
// tile of tokens, split of SPLIT_KEYS keys) computes the split's partial result for every
// query head of that KV head and every token of the tile (as many tokens as their heads
// fit in QUERIES (token, head) rows), so each key and value it loads serves every row. attention.wgsl's
// `attention_split` gives each (head, token) a workgroup of its own that loads its keys
// and values alone: a prompt of 512 tokens then reads each layer's cache some 16 000
// times over. The host appends this file to attention.wgsl (its parameters, bindings and
// `first_key`) and runs attention.wgsl's combining pass after it, unchanged: each row's
// slot holds the exp-weighted sum of the split's values and its (max, sum), as
// `attention_split` leaves them.
//
// The split's keys go through workgroup memory BLOCK at a time: the block's keys, then
// every row's scores against them (an invocation per key and four rows), the rows' running
// max and sum (online softmax: what came before is rescaled when the max grows; eight
// invocations a row, so QUERIES · 8 = WG), the block's values, and each row's weighted
// sum (an invocation per four dimensions and up to four rows). Heads are up to 128
// values, a power of two that divides 4·WG (the host runs `attention_split` for others),
// and a KV head has at most QUERIES query heads.
//
// Splits begin at multiples of SPLIT_KEYS, so a split may end before a tile's last key
// or hold none of a row's keys: such a row's slot gets max LOWEST, sum 0 and zero values,
// which the combining pass weighs by 0.

// The rows a workgroup covers, the keys in workgroup memory at a time and the keys a
// split (the host reads SPLIT_KEYS from here).
const QUERIES: u32 = 16u;
const BLOCK: u32 = 32u;
const SPLIT_KEYS: u32 = 256u;
// The widest head in vec4s, and the stride of the block's keys and values: one vec4 more,
// so the keys neighbouring invocations score lie in different banks.
const HEAD4: u32 = 32u;
const KV_STRIDE: u32 = HEAD4 + 1u;
// Rows' scores lie BLOCK + 1 apart, so the invocations that sum their rows' weights
// read different banks.
const SCORE_STRIDE: u32 = BLOCK + 1u;

var<workgroup> tile_queries: array<vec4<f32>, QUERIES * HEAD4>;
var<workgroup> tile_kv: array<vec4<f32>, BLOCK * KV_STRIDE>;
var<workgroup> tile_scores: array<f32, QUERIES * SCORE_STRIDE>;
// Each row's running max and sum, and the factor its value sums take for this block.
var<workgroup> row_max: array<f32, QUERIES>;
var<workgroup> row_sum: array<f32, QUERIES>;
var<workgroup> row_rescale: array<f32, QUERIES>;
// Each invocation's share of its row's max, then of its sum: eight invocations a row.
var<workgroup> row_parts: array<f32, WG>;

// Where value i of a block of keys (or values) goes in `tile_kv`, and the key it belongs
// to: dimensions spread over neighbouring invocations, so the loads are coalesced; keys
// past `end` load the last one again (their weights are 0).
fn block_slot(i: u32, hd4: u32) -> u32 {
    return (i / hd4) * KV_STRIDE + i % hd4;
}
fn block_key(i: u32, hd4: u32, first: u32, end: u32) -> u32 {
    return min(first + i / hd4, end - 1u);
}

@compute @workgroup_size(WG)
fn attention_tile(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let group = p.heads / p.kv_heads;
    let tokens = QUERIES / group;
    let rows = tokens * group;
    let t0 = wid.y * tokens;
    let split = wid.z;
    let hd4 = p.head_dim / 4u;
    let kv_base4 = wid.x * hd4;
    let last_token = min(t0 + tokens, p.ntok) - 1u;
    // The keys any of the tile's rows sees in this split.
    let begin = max(split * SPLIT_KEYS, first_key(t0));
    let end = min((split + 1u) * SPLIT_KEYS, p.pos0 + last_token + 1u);

    // Row r is token t0 + r / group, head wid.x · group + r % group: a token's rows are
    // neighbouring heads, whose queries lie together.
    for (var i = lid; i < rows * hd4; i += WG) {
        let t = min(t0 + i / hd4 / group, p.ntok - 1u);
        tile_queries[i] = q[(t * p.heads + wid.x * group) * hd4 + i % (group * hd4)];
    }
    if (lid < QUERIES) {
        row_max[lid] = LOWEST;
        row_sum[lid] = 0.0;
    }
    if (split == 0u) {
        for (var t = t0; t <= last_token; t++) {
            store_fresh(t, wid.x, lid);
        }
    }

    // Scores: invocation `lid` takes key `lid % BLOCK` of the block for rows
    // lid / BLOCK + score_rows·j. Values: dimensions 4·(lid % hd4).. for rows
    // lid / hd4 + value_rows·j.
    let key_lane = lid % BLOCK;
    let score_rows = WG / BLOCK;
    let d4 = lid % hd4;
    let value_rows = WG / hd4;
    var acc: array<vec4<f32>, 4>;
    for (var first = begin; first < end; first += BLOCK) {
        workgroupBarrier();
        for (var i = lid; i < BLOCK * hd4; i += WG) {
            tile_kv[block_slot(i, hd4)] = key4(block_key(i, hd4, first, end), kv_base4 + i % hd4);
        }
        workgroupBarrier();
        // Each key's vector is read once for the invocation's four rows.
        var dots: array<vec4<f32>, 4>;
        for (var d = 0u; d < hd4; d++) {
            let key4 = tile_kv[key_lane * KV_STRIDE + d];
            for (var j = 0u; j < 4u; j++) {
                dots[j] += tile_queries[(lid / BLOCK + score_rows * j) * hd4 + d] * key4;
            }
        }
        let key = first + key_lane;
        for (var j = 0u; j < 4u; j++) {
            let r = lid / BLOCK + score_rows * j;
            let t = t0 + r / group;
            let sees = r < rows && t < p.ntok && key < end && key >= first_key(t) && key <= p.pos0 + t;
            let score = (dots[j].x + dots[j].y + dots[j].z + dots[j].w) * p.scale;
            tile_scores[r * SCORE_STRIDE + key_lane] = select(LOWEST, score, sees);
        }
        workgroupBarrier();
        // The values load while each row's eight invocations find its new max, turn its
        // block's scores into weights and add them up, four scores each.
        for (var i = lid; i < BLOCK * hd4; i += WG) {
            tile_kv[block_slot(i, hd4)] = value4(block_key(i, hd4, first, end), kv_base4 + i % hd4);
        }
        let row = lid / 8u;
        let at = row * SCORE_STRIDE + (lid % 8u) * 4u;
        var part_max = LOWEST;
        for (var i = 0u; i < 4u; i++) {
            part_max = max(part_max, tile_scores[at + i]);
        }
        row_parts[lid] = part_max;
        workgroupBarrier();
        var m = row_max[row];
        for (var i = 0u; i < 8u; i++) {
            m = max(m, row_parts[row * 8u + i]);
        }
        var part_sum = 0.0;
        for (var i = 0u; i < 4u; i++) {
            let score = tile_scores[at + i];
            let weight = select(0.0, exp(score - m), score > LOWEST);
            tile_scores[at + i] = weight;
            part_sum += weight;
        }
        workgroupBarrier();
        row_parts[lid] = part_sum;
        workgroupBarrier();
        if (lid % 8u == 0u) {
            var sum = 0.0;
            for (var i = 0u; i < 8u; i++) {
                sum += row_parts[lid + i];
            }
            let rescale = exp(row_max[row] - m);
            row_rescale[row] = rescale;
            row_sum[row] = row_sum[row] * rescale + sum;
            row_max[row] = m;
        }
        workgroupBarrier();
        // Each value vector is read once for the invocation's rows.
        for (var j = 0u; j < 4u; j++) {
            acc[j] *= row_rescale[min(lid / hd4 + value_rows * j, QUERIES - 1u)];
        }
        for (var i = 0u; i < BLOCK; i++) {
            let value = tile_kv[i * KV_STRIDE + d4];
            for (var j = 0u; j < 4u; j++) {
                let r = min(lid / hd4 + value_rows * j, QUERIES - 1u);
                acc[j] += tile_scores[r * SCORE_STRIDE + i] * value;
            }
        }
    }
    workgroupBarrier();
    for (var j = 0u; j < 4u; j++) {
        let r = lid / hd4 + value_rows * j;
        let t = t0 + r / group;
        if (r < rows && t < p.ntok) {
            let slot = (t * p.heads + wid.x * group + r % group) * p.splits + split;
            let at = slot * p.head_dim + 4u * d4;
            sums[at] = acc[j].x;
            sums[at + 1u] = acc[j].y;
            sums[at + 2u] = acc[j].z;
            sums[at + 3u] = acc[j].w;
            if (d4 == 0u) {
                stats[slot] = vec2<f32>(row_max[r], row_sum[r]);
            }
        }
    }
}
