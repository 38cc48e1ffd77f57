// Matrix products and row lookups over quantized GGUF weights, read in place.
// The weight buffer is the tensor's raw bytes (rows of blocks of BLOCK_ELEMS elements,
// BLOCK_BYTES bytes each); the host appends the `decode` function for the tensor's
// type, which expands one chunk of 32 elements of a row into `wv` (a K-quant
// super-block of 256 holds 8 chunks). Rows are contiguous in the file, so a buffer
// holds a range of rows.

struct MatmulParams {
    rows: u32,      // rows of W in this buffer
    ncols: u32,     // elements per row (a multiple of 32)
    ntok: u32,      // tokens (columns of x)
    row0: u32,      // index of this buffer's first row in the whole tensor
    x_off: u32,     // offset of token 0 in x, in f32
    x_stride: u32,  // distance between tokens in x, in f32
    y_off: u32,
    y_stride: u32,
    output: u32,    // how `store` writes, see there
    scale: f32,     // multiplies W·x (LoRA scale; 1 otherwise)
    // A routed product (a mixture-of-experts layer) multiplies by one expert's matrix,
    // the one `route` names: `route` is that token's slot there (UNROUTED for a plain
    // product), the buffer holds `experts` whole matrices of `rows` rows from expert
    // `expert0` on, and with `weighted` the product is scaled by the slot's weight.
    route: u32,
    expert0: u32,
    experts: u32,
    weighted: u32,
    // A product may write its rows to up to three places (a fused Q, K and V product:
    // the query's rows, the K cache's and the V cache's): rows from `split1` on go to
    // y1 (row t from `y1_off + t * y1_stride`), rows from `split2` on to y2; 0 where
    // there is no such segment. Only the first segment takes `output` 1, 2 or 3.
    split1: u32,
    y1_off: u32,
    y1_stride: u32,
    split2: u32,
    y2_off: u32,
    y2_stride: u32,
    // A paired product (a gated feed-forward's gate and up projections stacked in one
    // weight, the up rows from buffer row `paired` on; 0 = not paired) computes kernel
    // rows 2i and 2i + 1 from gate row i and up row i and stores act(gate) · up as row i.
    paired: u32,
    // The buffer row where this product's matrix starts (one of several matrices
    // stacked in one weight; 0 for a weight of its own).
    w_row0: u32,
    // A split product whose first two segments are a layer's Q and K, in heads of
    // `rope_head_dim` rows whose leading `rope_n_rot` turn in adjacent pairs, rotates
    // them by rotary position embedding as it stores them (token t at position
    // `rope_pos0 + t`), which saves rope.wgsl's pass; `rope_n_rot` 0: no rotation.
    rope_n_rot: u32,
    rope_head_dim: u32,
    rope_pos0: u32,
    rope_freq_base: f32,
}

const UNROUTED: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> W: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
// The second and third segments' outputs; a product of one segment binds y again.
@group(0) @binding(6) var<storage, read_write> y1: array<f32>;
@group(0) @binding(7) var<storage, read_write> y2: array<f32>;

// Per token and chosen expert (a slot): the expert's index, then its weight's bits
// (written by route.wgsl). A plain product binds a placeholder it never reads.
@group(0) @binding(5) var<storage, read> route: array<u32>;

var<private> wv: array<vec4<f32>, 8>;

// Whether this buffer holds the routed expert's matrix (always, for a plain product).
fn routed_here() -> bool {
    if (p.route == UNROUTED) {
        return true;
    }
    let expert = route[2u * p.route];
    return expert >= p.expert0 && expert < p.expert0 + p.experts;
}

// The buffer row where this product's matrix starts: `w_row0`, or the routed expert's
// first row (0 where another buffer holds it; `store` then drops the sums).
fn matrix_row0() -> u32 {
    if (p.route == UNROUTED || !routed_here()) {
        return p.w_row0;
    }
    return (route[2u * p.route] - p.expert0) * p.rows;
}

// The buffer row a kernel reads for its row `row` (of this buffer's rows): in a paired
// product even rows are gate rows and odd rows the up rows beside them.
fn weight_row(row: u32) -> u32 {
    if (p.paired == 0u) {
        return matrix_row0() + row;
    }
    return matrix_row0() + (row & 1u) * p.paired + row / 2u;
}

// Write one product s·W·x of token t and row `row` (of the whole tensor) to y
// (output 0), add it (1: the residual stream), or, as the up projection of a gated
// feed-forward whose gate projection is in y, write act(y) · s·W·x (2: SiLU, 3: GELU),
// which saves the activation its own pass; rows past `split1` and `split2` go to their
// own segments. `activate` comes from activation.wgsl, appended by the host.
// A routed product stores only from the buffer holding its expert, scaled by the
// expert's weight when `weighted`.
fn store(t: u32, row: u32, product: f32) {
    if (!routed_here()) {
        return;
    }
    var value = product * p.scale;
    if (p.route != UNROUTED && p.weighted == 1u) {
        value *= bitcast<f32>(route[2u * p.route + 1u]);
    }
    if (p.split2 != 0u && row >= p.split2) {
        y2[p.y2_off + t * p.y2_stride + row - p.split2] = value;
        return;
    }
    if (p.split1 != 0u && row >= p.split1) {
        y1[p.y1_off + t * p.y1_stride + row - p.split1] = value;
        return;
    }
    let at = p.y_off + t * p.y_stride + row;
    if (p.output == 0u) {
        y[at] = value;
    } else if (p.output == 1u) {
        y[at] += value;
    } else {
        y[at] = activate(y[at], p.output == 3u) * value;
    }
}

// Store kernel row `row`'s sum, given the next row's too: in a paired product the
// even row stores act(gate) · up (`output` 3: GELU, else SiLU) as the gate's row, and
// the odd row nothing; in a product that rotates Q and K the even row stores its pair
// rotated (`rotate_pair` comes from rotation.wgsl, appended by the host), and the odd
// row nothing.
fn store_sum(t: u32, row: u32, sum: f32, next: f32) {
    if (p.paired != 0u) {
        if ((row & 1u) == 0u) {
            let gate = sum * p.scale;
            y[p.y_off + t * p.y_stride + row / 2u] = activate(gate, p.output == 3u) * next * p.scale;
        }
    } else if (p.rope_n_rot != 0u && row < p.split2) {
        if ((row & 1u) == 0u) {
            // The row within its head, of Q's heads or, from `split1`, of K's.
            let i = select(row, row - p.split1, row >= p.split1) % p.rope_head_dim;
            var pair = vec2<f32>(sum, next);
            if (i < p.rope_n_rot) {
                pair = rotate_pair(pair, p.rope_pos0 + t, i / 2u, p.rope_n_rot, p.rope_freq_base);
            }
            store(t, row, pair.x);
            store(t, row + 1u, pair.y);
        }
    } else {
        store(t, row, sum);
    }
}

// A weight chunk is decoded in two steps, so that a kernel can have one chunk's loads in
// flight while it works on another (matmul_matrix.wgsl): the decoder's `load_chunk`
// puts the aligned words the chunk needs into `words`, its `decode_loaded` decodes them
// into `wv`. Each decoder says how many words that is (CHUNK_WORDS).
var<private> words: array<u32, CHUNK_WORDS>;

// Chunk `chunk` of the weight row at byte `row`, decoded into `wv`.
fn decode(row: u32, chunk: u32) {
    load_chunk(row, chunk);
    decode_loaded(row, chunk);
}

// The CHUNK_WORDS aligned words from the one holding byte `base`.
fn aligned_words(base: u32) -> array<u32, CHUNK_WORDS> {
    var w: array<u32, CHUNK_WORDS>;
    for (var k = 0u; k < CHUNK_WORDS; k++) {
        w[k] = W[(base >> 2u) + k];
    }
    return w;
}

// The f16 at byte `i`, which is even: every block size and field offset is.
fn f16_at(i: u32) -> f32 {
    return unpack2x16float(W[i >> 2u] >> ((i & 2u) * 8u)).x;
}
fn byte_at(i: u32) -> u32 {
    return (W[i >> 2u] >> ((i & 3u) * 8u)) & 255u;
}
fn i8_at(i: u32) -> f32 {
    return f32(i32(byte_at(i) << 24u) >> 24u);
}
// The word at an even byte given the aligned words `here` (holding that byte) and
// `next`: `here` itself where the byte is aligned, else its upper half and `next`'s lower
// (Q4_0, Q5_0, Q8_0 and Q6_K blocks are not word aligned; the next word, read past a
// buffer's end at its last block, only fills bits that go unused). No branch:
// neighbouring invocations' blocks alternate between aligned and not, and a branch
// would run both ways for each.
fn even_word(here: u32, next: u32, aligned: bool) -> u32 {
    return select((here >> 16u) | (next << 16u), here, aligned);
}
// Word `k` of the data after a block's 2-byte head, given the block's aligned words
// `here` (k) and `next` (k + 1): every block size is even, so a block starts at a word
// (`odd` false: the data straddles the two words) or half a word in (`odd`: the data
// is word-aligned). A block's data takes one load a word this way, where reading each
// word at its even byte would take two.
fn block_word(here: u32, next: u32, odd: bool) -> u32 {
    return select((here >> 16u) | (next << 16u), next, odd);
}
fn nibbles_lo(q: u32) -> vec4<f32> {
    return vec4<f32>(f32(q & 15u), f32((q >> 8u) & 15u), f32((q >> 16u) & 15u), f32((q >> 24u) & 15u));
}
fn nibbles_hi(q: u32) -> vec4<f32> {
    return vec4<f32>(f32((q >> 4u) & 15u), f32((q >> 12u) & 15u), f32((q >> 20u) & 15u), f32(q >> 28u));
}
// Bits `s`, `s + 1`… (`mask` says how many) of each byte of `q`.
fn byte_bits(q: u32, s: u32, mask: u32) -> vec4<f32> {
    return vec4<f32>(f32((q >> s) & mask), f32((q >> (s + 8u)) & mask), f32((q >> (s + 16u)) & mask), f32((q >> (s + 24u)) & mask));
}
// The 6-bit scale and min of chunk `j` of a Q4_K/Q5_K super-block whose 12 scale bytes
// are the words `scales`: chunks 0..4 keep theirs in the low 6 bits of bytes j and
// j + 4, chunks 4..8 in the nibbles of byte j + 4 topped with the high 2 bits of bytes
// j − 4 (scale) and j (min).
fn k_scale_min(scales: vec3<u32>, j: u32) -> vec2<f32> {
    let here = (scales[j / 4u] >> ((j % 4u) * 8u)) & 255u;
    let next = (scales[j / 4u + 1u] >> ((j % 4u) * 8u)) & 255u;
    if (j < 4u) {
        return vec2<f32>(f32(here & 63u), f32(next & 63u));
    }
    let before = (scales[0] >> ((j % 4u) * 8u)) & 255u;
    let scale = (next & 15u) | ((before >> 6u) << 4u);
    let min = (next >> 4u) | ((here >> 6u) << 4u);
    return vec2<f32>(f32(scale), f32(min));
}
// A block of an f16 scale `d` and then words `q` (Q4_0's and Q8_0's quants; Q5_0's fifth
// bits, then its quants) at byte `base`, from the aligned words `w` under it: every block
// size is even, so it starts at a word or half a word in (see `block_word`).
struct HeadBlock {
    d: f32,
    q: array<u32, CHUNK_WORDS - 1u>,
}
fn head_block(w: array<u32, CHUNK_WORDS>, base: u32) -> HeadBlock {
    let odd = (base & 2u) != 0u;
    var block: HeadBlock;
    block.d = unpack2x16float(select(w[0], w[0] >> 16u, odd)).x;
    for (var k = 0u; k < CHUNK_WORDS - 1u; k++) {
        block.q[k] = block_word(w[k], w[k + 1u], odd);
    }
    return block;
}
// Chunk `chunk` of the Q4_K/Q5_K row at byte `row` into `words`: its super-block's first
// `head` words (d and dmin, the scales and mins, Q5_K's fifth bits), then the chunk's
// eight words of nibbles.
fn load_k_chunk(row: u32, chunk: u32, head: u32) {
    let at = (row + (chunk / 8u) * BLOCK_BYTES) >> 2u;
    for (var k = 0u; k < head; k++) {
        words[k] = W[at + k];
    }
    let quants = at + head + ((chunk % 8u) / 2u) * 8u;
    for (var k = 0u; k < 8u; k++) {
        words[head + k] = W[quants + k];
    }
}
// d·scale and dmin·min of chunk `sub` of the super-block whose words `load_k_chunk` loaded.
fn k_chunk_scale_min(sub: u32) -> vec2<f32> {
    return unpack2x16float(words[0]) * k_scale_min(vec3<u32>(words[1], words[2], words[3]), sub);
}
// Chunk `sub`'s four nibbles in word `q`: the low ones for an even chunk, the high for an
// odd one (a pair of chunks shares its 32 bytes).
fn k_chunk_nibbles(q: u32, sub: u32) -> vec4<f32> {
    return select(nibbles_lo(q), nibbles_hi(q), (sub & 1u) == 1u);
}
// The three words of the 12 scale bytes of the K-quant super-block at byte `base`.
fn k_scale_words(base: u32) -> vec3<u32> {
    let at = (base >> 2u) + 1u;
    return vec3<u32>(W[at], W[at + 1u], W[at + 2u]);
}
// Bits 0..4 of `h` as bit 4 of each byte: four elements' fifth bits, to OR onto their
// nibbles (Q5_0, Q5_1).
fn fifth_bits(h: u32) -> u32 {
    return ((h & 1u) << 4u) | ((h & 2u) << 11u) | ((h & 4u) << 18u) | ((h & 8u) << 25u);
}
// Bits `s..s + 4` of `q`, one per element.
fn bits4(q: u32, s: u32) -> vec4<f32> {
    return vec4<f32>(f32((q >> s) & 1u), f32((q >> (s + 1u)) & 1u), f32((q >> (s + 2u)) & 1u), f32((q >> (s + 3u)) & 1u));
}

// Embedding lookup: one invocation expands one block of one token's row. A tensor split
// over several buffers is looked up once per buffer; each fills the rows it holds.
@group(0) @binding(4) var<storage, read> ids: array<u32>;

@compute @workgroup_size(64)
fn get_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let nblocks = p.ncols / 32u;
    let b = gid.x;
    let t = gid.y;
    if (b >= nblocks || t >= p.ntok) {
        return;
    }
    let id = ids[t];
    if (id < p.row0 || id >= p.row0 + p.rows) {
        return;
    }
    decode((id - p.row0) * (p.ncols / BLOCK_ELEMS) * BLOCK_BYTES, b);
    let out = p.y_off + t * p.y_stride + b * 32u;
    for (var k = 0u; k < 8u; k++) {
        y[out + k * 4u] = wv[k].x;
        y[out + k * 4u + 1u] = wv[k].y;
        y[out + k * 4u + 2u] = wv[k].z;
        y[out + k * 4u + 3u] = wv[k].w;
    }
}
