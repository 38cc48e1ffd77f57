//! Recording a forward pass: [`Batch`] collects the dispatches of one submission over
//! [`View`]s of device buffers, with the parameters and bind groups [`Bindings`] keeps
//! from one decode step to the next, and submits them in pieces; the norm, rotary
//! embedding, attention and element-wise steps are recorded here, the products in
//! [`crate::products`]. [`AttentionShape`] is the attention geometry and the scratch
//! it needs.

use hearth_model::Activation;
use hearth_sdk::helpers::{CandidateSampling, LogitAdjustments};

use crate::device::Gpu;
use crate::kernels::{
    argmax_parts, quantized_input_words, top_k_parts, InputQuantizer, Kernels, Weight,
    MATVEC_TOKENS,
};
use crate::profile::{Profiler, MAX_TIMED};

/// Dispatches per submission: a batch goes to the queue in pieces of this many, so the
/// GPU runs the first layers while the CPU encodes the rest. On an H100 a decode step
/// of a 1B model (some 200 dispatches) ran 8–16 % faster in pieces of 40 than whole.
const SUBMIT_DISPATCHES: usize = 40;

/// Bytes reserved per dispatch in the parameter buffer; a parameter block is at most
/// 128 bytes, the rest is the device's uniform offset alignment.
const PARAM_BYTES: u64 = 128;

/// How rotary embedding turns a head: its values, the leading `n_rot` of them rotated
/// in pairs (adjacent, or NeoX's halves) by angles of the position `pos0 + t` of token
/// `t` and the frequency base.
#[derive(Clone, Copy)]
pub struct Rotation {
    pub head_dim: u32,
    pub n_rot: u32,
    pub pos0: u32,
    pub neox: bool,
    pub freq_base: f32,
}

/// A matrix of f32 rows inside a buffer: row `t` starts at `offset + t * stride`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u32,
    pub stride: u32,
}

impl<'a> View<'a> {
    pub fn new(buffer: &'a wgpu::Buffer, offset: u32, stride: u32) -> Self {
        Self { buffer, offset, stride }
    }
}

pub(crate) struct Op<'a> {
    pipeline: &'a wgpu::ComputePipeline,
    bindings: Vec<(u32, &'a wgpu::Buffer)>,
    params: u64,
    groups: [u32; 3],
}

/// A bind group and what it binds besides the parameters.
struct Bound {
    pipeline: wgpu::ComputePipeline,
    buffers: Vec<(u32, wgpu::Buffer)>,
    group: wgpu::BindGroup,
}

/// The parameter buffer and bind groups kept from one submission to the next. A decode
/// step records the same dispatches over the same buffers every token (positions and
/// offsets live in the parameters), so after the first step only the parameter bytes
/// are written: no buffer or bind group is created per token.
#[derive(Default)]
pub struct Bindings {
    params: Option<wgpu::Buffer>,
    /// By dispatch index within a batch.
    bound: Vec<Bound>,
}

impl Bindings {
    /// The parameter buffer, replaced by a larger one (and every bind group with it)
    /// when `bytes` do not fit.
    fn params(&mut self, device: &wgpu::Device, bytes: u64) -> wgpu::Buffer {
        match &self.params {
            Some(buffer) if buffer.size() >= bytes => buffer.clone(),
            _ => {
                let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("kernel parameters"),
                    size: bytes.next_power_of_two(),
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                self.bound.clear();
                self.params = Some(buffer.clone());
                buffer
            }
        }
    }

    /// The bind group of dispatch `index`: the one kept if it binds the same, else a
    /// new one, kept for next time.
    fn group(&mut self, device: &wgpu::Device, params: &wgpu::Buffer, index: usize, op: &Op<'_>) {
        let same = self.bound.get(index).is_some_and(|bound| {
            bound.pipeline == *op.pipeline
                && bound.buffers.len() == op.bindings.len()
                && bound.buffers.iter().zip(&op.bindings).all(|(a, b)| a.0 == b.0 && a.1 == *b.1)
        });
        if same {
            return;
        }
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: params,
                offset: op.params,
                size: wgpu::BufferSize::new(PARAM_BYTES),
            }),
        }];
        entries.extend(op.bindings.iter().map(|&(binding, buffer)| wgpu::BindGroupEntry {
            binding,
            resource: buffer.as_entire_binding(),
        }));
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &op.pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let bound = Bound {
            pipeline: op.pipeline.clone(),
            buffers: op
                .bindings
                .iter()
                .map(|&(binding, buffer)| (binding, buffer.clone()))
                .collect(),
            group,
        };
        if index < self.bound.len() {
            self.bound[index] = bound;
        } else {
            self.bound.push(bound);
        }
    }
}

/// Dispatches recorded for one submission, and copies to make after them.
pub struct Batch<'a> {
    gpu: &'a Gpu,
    pub(crate) kernels: &'a Kernels,
    stride: u64,
    params: Vec<u8>,
    ops: Vec<Op<'a>>,
    copies: Vec<(&'a wgpu::Buffer, &'a wgpu::Buffer, u64)>,
    /// Copies to make before the dispatches: (from, its byte, to, bytes), into `to`'s
    /// start.
    first_copies: Vec<(&'a wgpu::Buffer, u64, &'a wgpu::Buffer, u64)>,
    /// What the quantized input's buffer holds, while it still does
    /// ([`Batch::push`] forgets it; `products.rs` keeps it across the products that read it).
    pub(crate) quantized: Option<QuantizedRows<'a>>,
}

/// `ntok` rows of `ncols` values of a view, as the 8-bit input's buffer holds them.
#[derive(Clone, Copy)]
pub(crate) struct QuantizedRows<'a> {
    pub(crate) x: View<'a>,
    pub(crate) ncols: u32,
    pub(crate) ntok: u32,
}

impl PartialEq for QuantizedRows<'_> {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.x, other.x);
        a.buffer == b.buffer
            && [a.offset, a.stride, self.ncols, self.ntok]
                == [b.offset, b.stride, other.ncols, other.ntok]
    }
}

/// Work groups for `count` items when one dimension holds at most 65535.
pub(crate) fn split_groups(count: u32) -> [u32; 2] {
    [count.min(65535), count.div_ceil(65535)]
}

/// adjust.wgsl's entries for `adjustments`: each bias as (token, its bits) in order,
/// then each seen token as (token, the bits of [`LogitAdjustments::deduction`] for its
/// occurrences).
pub fn adjustment_entries(adjustments: &LogitAdjustments) -> Vec<u32> {
    let bias = adjustments.bias.iter().flat_map(|bias| [bias.token, bias.bias.to_bits()]);
    let seen = adjustments
        .seen
        .iter()
        .flat_map(|&(token, count)| [token, adjustments.deduction(count).to_bits()]);
    bias.chain(seen).collect()
}

impl<'a> Batch<'a> {
    pub fn new(gpu: &'a Gpu, kernels: &'a Kernels) -> Self {
        let stride =
            PARAM_BYTES.next_multiple_of(u64::from(gpu.limits.min_uniform_buffer_offset_alignment));
        Self {
            gpu,
            kernels,
            stride,
            params: Vec::new(),
            ops: Vec::new(),
            copies: Vec::new(),
            first_copies: Vec::new(),
            quantized: None,
        }
    }

    /// Record a dispatch. Whatever it writes, the quantized input's buffer may no
    /// longer hold its rows' values, so the batch forgets them; a product that writes
    /// elsewhere restores them (`products.rs`).
    pub(crate) fn push(
        &mut self,
        pipeline: &'a wgpu::ComputePipeline,
        bindings: Vec<(u32, &'a wgpu::Buffer)>,
        words: &[u32],
        groups: [u32; 3],
    ) {
        let at = self.params.len() as u64;
        self.params.extend(words.iter().flat_map(|word| word.to_le_bytes()));
        self.params.resize((at + self.stride) as usize, 0);
        self.ops.push(Op { pipeline, bindings, params: at, groups });
        self.quantized = None;
    }

    /// The dispatches recorded so far.
    pub fn dispatches(&self) -> usize {
        self.ops.len()
    }

    /// `y[t] = W[ids[t]]`: embedding rows for `ntok` token ids.
    pub fn get_rows(&mut self, w: &'a Weight, ids: &'a wgpu::Buffer, y: View<'a>, ntok: u32) {
        let pipeline = &self.kernels.get_rows[&w.ty];
        for part in &w.parts {
            let words = [part.rows, w.ncols, ntok, part.row0, 0, 0, y.offset, y.stride, 0, 0];
            let bindings = vec![(1, &part.buffer.buffer), (3, y.buffer), (4, ids)];
            self.push(pipeline, bindings, &words, [(w.ncols / 32).div_ceil(64), ntok, 1]);
        }
    }

    /// RMSNorm of `rows` contiguous rows of `n` elements, written to `y` or, with
    /// `accumulate`, added to it. Rows written (not added) that the decode product could
    /// read as 8-bit input are quantized by the same dispatch, so the products of a
    /// layer's normed input need no pass of their own.
    #[allow(clippy::too_many_arguments)] // the kernel's parameters, one each
    pub fn rmsnorm(
        &mut self,
        x: View<'a>,
        w: &'a wgpu::Buffer,
        y: View<'a>,
        rows: u32,
        n: u32,
        eps: f32,
        accumulate: bool,
    ) {
        let quantizes = !accumulate && InputQuantizer::fits(n, rows);
        match self.kernels.quantize_input.as_ref().filter(|_| quantizes) {
            Some(quantizer) => {
                let stride = quantized_input_words(quantizer.input, n);
                let words = [rows, n, x.offset, y.offset, eps.to_bits(), 0, 0, 0, stride];
                let bindings =
                    vec![(1, x.buffer), (2, w), (3, y.buffer), (7, &quantizer.buffer.buffer)];
                let groups = quantizer.groups(n, rows);
                self.push(&quantizer.rmsnorm, bindings, &words, groups);
                self.quantized = Some(QuantizedRows {
                    x: View::new(y.buffer, y.offset, n),
                    ncols: n,
                    ntok: rows,
                });
            }
            None => {
                let words = [rows, n, x.offset, y.offset, eps.to_bits(), u32::from(accumulate)];
                let bindings = vec![(1, x.buffer), (2, w), (3, y.buffer)];
                let [gx, gy] = split_groups(rows);
                self.push(&self.kernels.rmsnorm, bindings, &words, [gx, gy, 1]);
            }
        }
    }

    /// Rotary embedding in place of `ntok` tokens of `heads` heads in `q` and, in the
    /// same dispatch, of `kv_heads` heads in `k` where there is one: a layer's queries
    /// and new keys.
    pub fn rope(
        &mut self,
        q: View<'a>,
        k: Option<View<'a>>,
        ntok: u32,
        [heads, kv_heads]: [u32; 2],
        rotation: Rotation,
    ) {
        let Rotation { head_dim, n_rot, pos0, neox, freq_base } = rotation;
        let (k_buffer, k_off, k_heads) = match k {
            Some(k) => (k.buffer, k.offset, kv_heads),
            None => (&self.kernels.unsegmented[0].buffer, 0, 0),
        };
        let words = [ntok, heads, head_dim, n_rot, pos0, q.offset, u32::from(neox)]
            .into_iter()
            .chain([freq_base.to_bits(), k_heads, k_off]);
        self.push(
            &self.kernels.rope,
            vec![(1, q.buffer), (2, k_buffer)],
            &words.collect::<Vec<_>>(),
            [((heads + k_heads) * n_rot / 2).div_ceil(64), ntok, 1],
        );
    }

    /// Causal attention of `ntok` queries at positions `pos0..` over the K and V caches
    /// `cache` (of [`Kernels::cache`](crate::kernels::Kernels::cache)'s type), each
    /// seeing only its last `window` keys when there is one. `fresh` holds the batch's
    /// own keys and values (f32, a token's row after another), which the pass reads from
    /// there and writes into the cache at `pos0..`; `None` where the layer reads an
    /// earlier layer's cache, which holds them already. `partials` holds what
    /// [`AttentionShape::partials`] says. The splits' results are combined by a pass of
    /// their own, or, for a decode step's few queries whose output the next product
    /// reads quantized, by the last split of each (token, head) in the same pass.
    #[allow(clippy::too_many_arguments)] // the kernel's parameters, one each
    pub fn attention(
        &mut self,
        q: &'a wgpu::Buffer,
        cache: [&'a wgpu::Buffer; 2],
        fresh: Option<[&'a wgpu::Buffer; 2]>,
        partials: [&'a wgpu::Buffer; 2],
        out: &'a wgpu::Buffer,
        shape: AttentionShape,
        ntok: u32,
        pos0: u32,
        window: Option<u32>,
    ) {
        let tile = self.kernels.attention_tile.as_ref().filter(|_| shape.tiles(ntok));
        // The output quantized for the product after it, where that product reads 8-bit
        // input and a head is whole chunks.
        let q_dim = shape.heads * shape.head_dim;
        let quantizes = shape.head_dim.is_multiple_of(32) && InputQuantizer::fits(q_dim, ntok);
        let quantizer = self.kernels.quantize_input.as_ref().filter(|_| quantizes);
        let few = self.kernels.attention_split_few.as_ref().filter(|_| ntok <= MATVEC_TOKENS);
        let (split, splits) = match (few, tile) {
            (_, Some(tile)) => (tile, (pos0 + ntok).div_ceil(TILE_SPLIT_KEYS)),
            (Some(few), None) => {
                (few, attention_splits(pos0 + ntok, window, FEW_QUERIES_ATTENTION_KEYS))
            }
            _ => (
                &self.kernels.attention_split,
                attention_splits(pos0 + ntok, window, ATTENTION_KEYS),
            ),
        };
        let split_groups = match tile {
            Some(_) => [shape.kv_heads, ntok.div_ceil(shape.tile_tokens()), splits],
            None => [shape.heads, ntok, splits],
        };
        let combine_groups = [shape.heads, ntok, 1];
        let words = [
            ntok,
            shape.heads,
            shape.kv_heads,
            shape.head_dim,
            pos0,
            splits,
            shape.scale.to_bits(),
            window.unwrap_or(0),
            u32::from(fresh.is_some()),
        ];
        let [sums, stats] = partials;
        let [k, v] = cache;
        let [k_new, v_new] = fresh
            .unwrap_or([&self.kernels.unsegmented[0].buffer, &self.kernels.unsegmented[1].buffer]);
        let mut bindings =
            vec![(1, q), (2, k), (3, v), (4, sums), (5, stats), (8, k_new), (9, v_new)];
        let Some(quantizer) = quantizer else {
            self.push(split, bindings, &words, split_groups);
            let bindings = vec![(4, sums), (5, stats), (6, out)];
            self.push(&self.kernels.attention_combine, bindings, &words, combine_groups);
            return;
        };
        let stride = quantized_input_words(quantizer.input, q_dim);
        let words = [words.as_slice(), &[stride]].concat();
        let quantized = [(6, out), (7, &quantizer.buffer.buffer)];
        if few.is_some() && tile.is_none() {
            // One pass: the last split of each (token, head) combines them.
            bindings.extend(quantized);
            bindings.push((10, &quantizer.finished.buffer));
            self.push(&quantizer.attention_few, bindings, &words, split_groups);
        } else {
            self.push(split, bindings, &words, split_groups);
            let bindings = [vec![(4, sums), (5, stats)], quantized.to_vec()].concat();
            self.push(&quantizer.attention_combine, bindings, &words, combine_groups);
        }
        let rows = View::new(out, 0, q_dim);
        self.quantized = Some(QuantizedRows { x: rows, ncols: q_dim, ntok });
    }

    /// `g = act(g) * u` over `rows` rows of `n` values, `g` contiguous.
    pub fn gated(
        &mut self,
        g: &'a wgpu::Buffer,
        u: View<'a>,
        rows: u32,
        n: u32,
        activation: Activation,
    ) {
        let words = [rows, n, u.offset, u.stride, u32::from(activation == Activation::GeluTanh)];
        let bindings = vec![(1, g), (2, u.buffer)];
        self.push(&self.kernels.gated, bindings, &words, [n.div_ceil(64), rows, 1]);
    }

    /// `y[r] += bias` for `rows` rows of `bias`'s length `n`.
    pub fn add_bias(&mut self, y: View<'a>, bias: &'a wgpu::Buffer, rows: u32, n: u32) {
        let words = [rows, n, y.offset, y.stride, 0];
        let bindings = vec![(1, y.buffer), (2, bias)];
        self.push(&self.kernels.add_bias, bindings, &words, [n.div_ceil(64), rows, 1]);
    }

    /// `y[r] *= scale` for `rows` rows of `n` values.
    pub fn scale_rows(&mut self, y: View<'a>, rows: u32, n: u32, scale: f32) {
        let words = [rows, n, y.offset, y.stride, scale.to_bits()];
        self.push(&self.kernels.scale_rows, vec![(1, y.buffer)], &words, [n.div_ceil(64), rows, 1]);
    }

    /// The largest of the first `n` values of `logits`, its index and their sum, as
    /// (largest, index's bits, sum) in `total`'s first three f32 (argmax.wgsl), through
    /// `parts` ([`argmax_parts`] vectors of four).
    pub fn argmax(
        &mut self,
        logits: &'a wgpu::Buffer,
        n: u32,
        parts: &'a wgpu::Buffer,
        total: &'a wgpu::Buffer,
    ) {
        let passes = &self.kernels.argmax;
        self.two_passes(passes, argmax_parts(n), logits, n, [parts, total]);
    }

    /// The [`TOP_K_MAX`](crate::kernels::TOP_K_MAX) largest of the first `n` values of
    /// `logits` with their indices, largest first, and their sum: as (value, index's
    /// bits) pairs in `total`, then (sum, 0) (top_k.wgsl), through `parts`
    /// ([`top_k_parts`] of `TOP_K_MAX` + 1 pairs). Only where
    /// [`Kernels::top_k_on_device`].
    pub fn top_k(
        &mut self,
        logits: &'a wgpu::Buffer,
        n: u32,
        parts: &'a wgpu::Buffer,
        total: &'a wgpu::Buffer,
    ) {
        let passes = self.kernels.top_k.as_ref().expect("top-k runs on a GPU plan");
        self.two_passes(passes, top_k_parts(n), logits, n, [parts, total]);
    }

    /// The token `draw` picks from [`Batch::top_k`]'s `candidates` of a vocabulary of
    /// `vocab` with `sampling`, as the host's sampler picks it
    /// ([`CandidateSampling::pick`]), into `pick` as [`Batch::argmax`] leaves its pick
    /// (sample.wgsl). Only where [`Kernels::top_k_on_device`].
    pub fn sample(
        &mut self,
        candidates: &'a wgpu::Buffer,
        vocab: u32,
        sampling: &CandidateSampling,
        draw: f32,
        pick: &'a wgpu::Buffer,
    ) {
        let pipeline = self.kernels.sample.as_ref().expect("sampling runs on a GPU plan");
        let words = [
            sampling.top_k,
            vocab,
            sampling.top_p.to_bits(),
            sampling.min_p.to_bits(),
            sampling.temperature.to_bits(),
            draw.to_bits(),
        ];
        self.push(pipeline, vec![(1, candidates), (2, pick)], &words, [1, 1, 1]);
    }

    /// The first `vocab` values of `logits` adjusted in place as `adjustments` says
    /// ([`LogitAdjustments::apply`]), from the entries [`adjustment_entries`] wrote to
    /// `entries` (adjust.wgsl). Only where [`Kernels::top_k_on_device`].
    pub fn adjust(
        &mut self,
        logits: &'a wgpu::Buffer,
        vocab: u32,
        adjustments: &LogitAdjustments,
        entries: &'a wgpu::Buffer,
    ) {
        let pipeline = self.kernels.adjust.as_ref().expect("adjusting runs on a GPU plan");
        let words = [
            adjustments.bias.len() as u32,
            adjustments.seen.len() as u32,
            vocab,
            adjustments.repeat.to_bits(),
        ];
        self.push(pipeline, vec![(1, entries), (2, logits)], &words, [1, 1, 1]);
    }

    /// A reduction of `n` logits in two passes, argmax.wgsl's and top_k.wgsl's shape:
    /// the first reduces `count` parts of them into `parts`, the second the parts into
    /// `total`.
    fn two_passes(
        &mut self,
        [first, second]: &'a [wgpu::ComputePipeline; 2],
        count: u32,
        logits: &'a wgpu::Buffer,
        n: u32,
        [parts, total]: [&'a wgpu::Buffer; 2],
    ) {
        let words = [n, count];
        self.push(first, vec![(1, logits), (2, parts)], &words, [count, 1, 1]);
        self.push(second, vec![(2, parts), (3, total)], &words, [1, 1, 1]);
    }

    /// Copy the first `bytes` of `from` to `to` once the dispatches are done.
    pub fn copy(&mut self, from: &'a wgpu::Buffer, to: &'a wgpu::Buffer, bytes: u64) {
        self.copies.push((from, to, bytes));
    }

    /// Copy `bytes` of `from` from byte `at` to the start of `to` before the dispatches.
    pub fn copy_first(
        &mut self,
        from: &'a wgpu::Buffer,
        at: u64,
        to: &'a wgpu::Buffer,
        bytes: u64,
    ) {
        self.first_copies.push((from, at, to, bytes));
    }

    /// Encode the recorded dispatches into compute passes of `SUBMIT_DISPATCHES`, each
    /// submitted as its own command buffer, the copies after the last, with bind groups
    /// made for this batch alone.
    pub fn submit(self) {
        self.submit_with(&mut Bindings::default());
    }

    /// [`Batch::submit`] with the parameter buffer and bind groups kept in `bindings`;
    /// returns the last submission's index (`None` where there was nothing to submit).
    pub fn submit_with(self, bindings: &mut Bindings) -> Option<wgpu::SubmissionIndex> {
        if self.ops.is_empty() && self.copies.is_empty() && self.first_copies.is_empty() {
            return None;
        }
        let device = &self.gpu.device;
        let params = bindings.params(device, self.params.len().max(4) as u64);
        self.gpu.queue.write_buffer(&params, 0, &self.params);
        for (index, op) in self.ops.iter().enumerate() {
            bindings.group(device, &params, index, op);
        }
        let ops: Vec<_> = self.ops.iter().zip(&bindings.bound).collect();
        if let Some(profiler) = &self.gpu.profiler {
            return self.submit_timed(profiler, &ops);
        }
        let mut pieces = ops.chunks(SUBMIT_DISPATCHES).peekable();
        let mut encoder = device.create_command_encoder(&Default::default());
        for &(from, at, to, bytes) in &self.first_copies {
            encoder.copy_buffer_to_buffer(from, at, to, 0, bytes);
        }
        while let Some(piece) = pieces.next() {
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                for (op, bound) in piece {
                    pass.set_pipeline(op.pipeline);
                    pass.set_bind_group(0, &bound.group, &[]);
                    pass.dispatch_workgroups(op.groups[0], op.groups[1], op.groups[2]);
                }
            }
            if pieces.peek().is_some() {
                let next = device.create_command_encoder(&Default::default());
                self.gpu.queue.submit([std::mem::replace(&mut encoder, next).finish()]);
            }
        }
        for &(from, to, bytes) in &self.copies {
            encoder.copy_buffer_to_buffer(from, 0, to, 0, bytes);
        }
        Some(self.gpu.queue.submit([encoder.finish()]))
    }

    /// Submit `ops` with each dispatch in a pass of its own between two timestamps,
    /// wait, and give the profiler the times (profile.rs).
    fn submit_timed(
        &self,
        profiler: &Profiler,
        ops: &[(&Op<'a>, &Bound)],
    ) -> Option<wgpu::SubmissionIndex> {
        let device = &self.gpu.device;
        let timed = ops.len().min(MAX_TIMED);
        let mut encoder = device.create_command_encoder(&Default::default());
        for &(from, at, to, bytes) in &self.first_copies {
            encoder.copy_buffer_to_buffer(from, at, to, 0, bytes);
        }
        for (index, (op, bound)) in ops.iter().enumerate() {
            let timestamp_writes = (index < timed).then(|| wgpu::ComputePassTimestampWrites {
                query_set: &profiler.queries,
                beginning_of_pass_write_index: Some(2 * index as u32),
                end_of_pass_write_index: Some(2 * index as u32 + 1),
            });
            let mut pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes });
            pass.set_pipeline(op.pipeline);
            pass.set_bind_group(0, &bound.group, &[]);
            pass.dispatch_workgroups(op.groups[0], op.groups[1], op.groups[2]);
        }
        for &(from, to, bytes) in &self.copies {
            encoder.copy_buffer_to_buffer(from, 0, to, 0, bytes);
        }
        let bytes = (timed * 2 * 8) as u64;
        let resolved = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("resolved timestamps"),
            size: bytes.max(8),
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = self.gpu.readback(bytes.max(8));
        encoder.resolve_query_set(&profiler.queries, 0..(timed * 2) as u32, &resolved, 0);
        encoder.copy_buffer_to_buffer(&resolved, 0, &staging, 0, bytes);
        let submission = self.gpu.queue.submit([encoder.finish()]);
        match self.gpu.read_mapped(&staging, timed * 4) {
            Ok(words) => {
                let ticks: Vec<u64> = words
                    .chunks_exact(2)
                    .map(|pair| u64::from(pair[0].to_bits()) | u64::from(pair[1].to_bits()) << 32)
                    .collect();
                let pipelines: Vec<_> = ops[..timed].iter().map(|(op, _)| op.pipeline).collect();
                profiler.record(&pipelines, &ticks);
            }
            Err(error) => eprintln!("GPU profile: the timestamps were not read back: {error}"),
        }
        Some(submission)
    }
}

/// The attention geometry of a model with a cache of `ctx` positions.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub ctx: u32,
    /// Factor on `q·k`.
    pub scale: f32,
}

/// Keys per attention split (`KEYS` in attention.wgsl) of a prompt's queries where
/// attention_tile.wgsl does not take them, so that their partial results stay small.
pub(crate) const ATTENTION_KEYS: u32 = 128;

/// Keys per attention split of a decode step's queries, at most [`MATVEC_TOKENS`], on
/// the GPU plans: each key is then read in one round of loads.
pub(crate) const FEW_QUERIES_ATTENTION_KEYS: u32 = 32;

/// Query (token, head) rows a workgroup of attention_tile.wgsl covers (`QUERIES`), the
/// widest head it takes (4 · `HEAD4`), and the keys of its splits (`SPLIT_KEYS`): a split
/// begins at a multiple of them, whatever the window.
pub(crate) const TILE_QUERIES: u32 = 16;
pub(crate) const TILE_HEAD_DIM: u32 = 128;
pub(crate) const TILE_SPLIT_KEYS: u32 = 256;

/// Attention splits per (head, token) of `per_split` keys when the last query sees
/// `keys` keys.
fn attention_splits(keys: u32, window: Option<u32>, per_split: u32) -> u32 {
    keys.min(window.unwrap_or(u32::MAX)).div_ceil(per_split)
}

impl AttentionShape {
    /// The largest head the attention kernel holds in workgroup memory.
    pub const MAX_HEAD_DIM: u32 = 256;

    /// Whether `ntok` queries take attention_tile.wgsl (where the plan has it): more than
    /// a decode step's, heads of a power of two values up to [`TILE_HEAD_DIM`] (so an
    /// invocation's four dimensions tile the workgroup), and at most [`TILE_QUERIES`] query
    /// heads a KV head.
    fn tiles(&self, ntok: u32) -> bool {
        ntok > MATVEC_TOKENS
            && self.head_dim.is_power_of_two()
            && (4..=TILE_HEAD_DIM).contains(&self.head_dim)
            && self.heads / self.kv_heads <= TILE_QUERIES
    }

    /// The tokens one of attention_tile.wgsl's workgroups covers: as many as their query
    /// heads fit in [`TILE_QUERIES`] rows.
    fn tile_tokens(&self) -> u32 {
        TILE_QUERIES / (self.heads / self.kv_heads)
    }

    /// The f32 values of the two scratch buffers attention needs for `ntok` queries:
    /// the splits' weighted value sums and their (max, sum) pairs.
    pub fn partials(&self, ntok: u32) -> [u64; 2] {
        let slots = |n: u32, per_split: u32| {
            let splits = attention_splits(self.ctx, None, per_split);
            u64::from(n) * u64::from(self.heads) * u64::from(splits)
        };
        // A decode step's few queries may take more splits each.
        let few = ntok.min(MATVEC_TOKENS);
        let slots = slots(ntok, ATTENTION_KEYS).max(slots(few, FEW_QUERIES_ATTENTION_KEYS));
        [slots * u64::from(self.head_dim), slots * 2]
    }
}
