//! Gemma 3n's block on the device: the program [`hearth_model::altup`] describes, step
//! by step, with no readback. The AltUp streams live in one buffer, stream by stream
//! (stream `j`'s rows from `j · UBATCH · n_embd`), so each stream's rows are contiguous
//! like any other activation's; prediction and correction mix them per token
//! (altup.wgsl) with coefficients that a small kernel computes from the router on the
//! device.

use hearth_model::altup::HALF_SQRT_2;
use hearth_model::{Activation, AltUp, Config, Role};

use crate::batch::{Batch, View};
use crate::device::{Gpu, GpuBuffer};
use crate::forward::{Forward, Scratch, F32, UBATCH};
use crate::kernels::{pipeline, ACTIVATION, NORM, ROWS};
use crate::weights::AltUpWeights;

/// The pipelines only Gemma 3n's block uses.
pub struct AltUpKernels {
    coefficients: wgpu::ComputePipeline,
    predict: wgpu::ComputePipeline,
    correct: wgpu::ComputePipeline,
    rescale_to_norm: wgpu::ComputePipeline,
    sparsify: wgpu::ComputePipeline,
    add_rows: wgpu::ComputePipeline,
    weigh_rows: wgpu::ComputePipeline,
    soft_cap: wgpu::ComputePipeline,
}

impl AltUpKernels {
    pub fn new(gpu: &Gpu) -> Self {
        let altup = format!("{}\n{ACTIVATION}", include_str!("shaders/altup.wgsl"));
        let rows = format!("{ROWS}\n{ACTIVATION}");
        Self {
            coefficients: pipeline(gpu, "altup coefficients", &altup, "coefficients"),
            predict: pipeline(gpu, "altup predict", &altup, "predict"),
            correct: pipeline(gpu, "altup correct", &altup, "correct"),
            rescale_to_norm: pipeline(gpu, "rescale_to_norm", NORM, "rescale_to_norm"),
            sparsify: pipeline(gpu, "sparsify", NORM, "sparsify"),
            add_rows: pipeline(gpu, "add_rows", &rows, "add_rows"),
            weigh_rows: pipeline(gpu, "weigh_rows", &rows, "weigh_rows"),
            soft_cap: pipeline(gpu, "soft_cap", &rows, "soft_cap"),
        }
    }
}

/// The activations of Gemma 3n's block beyond those every block has.
pub struct AltUpScratch {
    /// The AltUp streams, stream `j`'s rows from `j · UBATCH · n_embd`.
    streams: GpuBuffer,
    /// The streams predicted for this layer, laid out as `streams`.
    predictions: GpuBuffer,
    /// Every layer's per-layer input, `n_layer · per_layer_dim` values per token, and the
    /// projection of the embeddings that goes into it.
    inputs: GpuBuffer,
    model_part: GpuBuffer,
    /// The router's logits (`streams` per token) and the coefficients made from them.
    router: GpuBuffer,
    coefs: GpuBuffer,
    /// LAuReL's low-rank values and its output.
    laurel_low: GpuBuffer,
    laurel: GpuBuffer,
    per_layer_gate: GpuBuffer,
    /// V before its norm, and that norm's unit weights.
    pub(crate) v_raw: GpuBuffer,
    pub(crate) unit_norm: GpuBuffer,
}

impl AltUpScratch {
    pub fn new(gpu: &Gpu, config: &Config, altup: &AltUp) -> Self {
        let act = |label: &str, width: u32| {
            gpu.storage(label, u64::from(UBATCH) * u64::from(width) * F32)
        };
        let (e, s) = (config.n_embd, altup.streams);
        let per_layer = config.n_layer * altup.per_layer_dim;
        Self {
            streams: act("altup streams", s * e),
            predictions: act("altup predictions", s * e),
            inputs: act("per-layer inputs", per_layer),
            model_part: act("per-layer model projection", per_layer),
            router: act("altup router", s),
            coefs: act("altup coefficients", s * s),
            laurel_low: act("laurel low rank", altup.laurel_rank),
            laurel: act("laurel", e),
            per_layer_gate: act("per-layer gate", altup.per_layer_dim),
            v_raw: act("v_raw", config.kv_dim()),
            unit_norm: gpu
                .upload("unit norm", bytemuck::cast_slice(&vec![1.0f32; config.head_dim as usize])),
        }
    }
}

impl<'a> Batch<'a> {
    /// Per token, `outputs` coefficients `matrix · tanh(router) + bias` (`matrix` f32,
    /// `outputs × streams`).
    #[allow(clippy::too_many_arguments)] // the kernel's parameters, one each
    fn altup_coefficients(
        &mut self,
        router: &'a wgpu::Buffer,
        matrix: &'a wgpu::Buffer,
        coefs: &'a wgpu::Buffer,
        ntok: u32,
        streams: u32,
        outputs: u32,
        bias: f32,
    ) {
        let words = [ntok, 0, streams, 0, outputs, bias.to_bits()];
        let bindings = vec![(1, router), (2, matrix), (3, coefs)];
        let pipeline = &self.kernels.altup.coefficients;
        self.push(pipeline, bindings, &words, [outputs.div_ceil(64), ntok, 1]);
    }

    /// `predictions[j] = streams[j] + Σ_k c[j·S + k] · streams[k]` for every stream `j`.
    fn altup_predict(
        &mut self,
        streams: &'a wgpu::Buffer,
        coefs: &'a wgpu::Buffer,
        predictions: &'a wgpu::Buffer,
        ntok: u32,
        [e, count]: [u32; 2],
    ) {
        let bindings = vec![(4, coefs), (5, streams), (7, predictions)];
        self.altup_mix(&self.kernels.altup.predict, bindings, ntok, [e, count]);
    }

    /// `streams[j] = predictions[j] + c[j] · (out − predictions[0])` for every stream `j`.
    fn altup_correct(
        &mut self,
        predictions: &'a wgpu::Buffer,
        coefs: &'a wgpu::Buffer,
        out: &'a wgpu::Buffer,
        streams: &'a wgpu::Buffer,
        ntok: u32,
        [e, count]: [u32; 2],
    ) {
        let bindings = vec![(4, coefs), (5, predictions), (6, out), (7, streams)];
        self.altup_mix(&self.kernels.altup.correct, bindings, ntok, [e, count]);
    }

    /// A kernel over every value of every stream of `ntok` tokens (`count` streams of `e`).
    fn altup_mix(
        &mut self,
        pipeline: &'a wgpu::ComputePipeline,
        bindings: Vec<(u32, &'a wgpu::Buffer)>,
        ntok: u32,
        [e, count]: [u32; 2],
    ) {
        let words = [ntok, e, count, UBATCH * e, 0, 0];
        self.push(pipeline, bindings, &words, [e.div_ceil(64), ntok, count]);
    }

    /// Each of `rows` rows of `n` in `y` rescaled to the L2 norm of the same row of `like`.
    fn rescale_to_norm(&mut self, y: View<'a>, like: View<'a>, rows: u32, n: u32) {
        let words = [rows, n, like.offset, y.offset, 0, 0, 0];
        let bindings = vec![(1, like.buffer), (3, y.buffer)];
        self.push(&self.kernels.altup.rescale_to_norm, bindings, &words, [rows, 1, 1]);
    }

    /// Activation sparsity over `rows` rows of `n`: `max(y − mean − k · std, 0)`.
    pub(crate) fn sparsify(&mut self, y: View<'a>, rows: u32, n: u32, k: f32) {
        let words = [rows, n, 0, y.offset, 0, 0, k.to_bits()];
        self.push(&self.kernels.altup.sparsify, vec![(3, y.buffer)], &words, [rows, 1, 1]);
    }

    /// `y[r] (+)= scale · x[r]` for `rows` rows of `n` values.
    #[allow(clippy::too_many_arguments)] // the kernel's parameters, one each
    fn add_rows(
        &mut self,
        y: View<'a>,
        x: View<'a>,
        rows: u32,
        n: u32,
        scale: f32,
        accumulate: bool,
    ) {
        let words =
            [rows, n, y.offset, y.stride, scale.to_bits(), x.offset, x.stride, accumulate.into()];
        let bindings = vec![(1, y.buffer), (3, x.buffer)];
        self.push(&self.kernels.altup.add_rows, bindings, &words, [n.div_ceil(64), rows, 1]);
    }

    /// `y[r] = x[r] ⊙ w` for `rows` rows of `w`'s `n` values.
    fn weigh_rows(&mut self, y: View<'a>, x: View<'a>, w: &'a wgpu::Buffer, rows: u32, n: u32) {
        let words = [rows, n, y.offset, y.stride, 0, x.offset, x.stride, 0];
        let bindings = vec![(1, y.buffer), (2, w), (3, x.buffer)];
        self.push(&self.kernels.altup.weigh_rows, bindings, &words, [n.div_ceil(64), rows, 1]);
    }

    /// `y = cap · tanh(y / cap)` over `rows` rows of `n` values.
    pub fn soft_cap(&mut self, y: View<'a>, rows: u32, n: u32, cap: f32) {
        let words = [rows, n, y.offset, y.stride, cap.to_bits()];
        self.push(
            &self.kernels.altup.soft_cap,
            vec![(1, y.buffer)],
            &words,
            [n.div_ceil(64), rows, 1],
        );
    }
}

/// A buffer's rows of `width` values from its start.
fn rows_of(buffer: &GpuBuffer, width: u32) -> View<'_> {
    View::new(&buffer.buffer, 0, width)
}

/// Stream `j`'s rows of `e` values in a buffer laid out stream by stream, `UBATCH` rows
/// to a stream.
fn stream(buffer: &GpuBuffer, j: u32, e: u32) -> View<'_> {
    View::new(&buffer.buffer, j * UBATCH * e, e)
}

impl Forward<'_> {
    /// Gemma 3n's embeddings and blocks for the batch's `ntok` tokens; with `last`, the
    /// last token's final hidden state (the streams' mean) in its row of `s.h`.
    #[allow(clippy::too_many_arguments)] // the batch, its buffers and its tokens
    pub(crate) fn record_altup<'b>(
        &'b self,
        batch: &mut Batch<'b>,
        s: &'b Scratch,
        a: &'b AltUpScratch,
        w: &'b AltUpWeights,
        ntok: u32,
        pos: u32,
        last: bool,
    ) {
        let c = self.config;
        let altup = c.altup.as_ref().expect("an AltUp model's config");
        let (e, streams, p) = (c.n_embd, altup.streams, altup.per_layer_dim);
        let per_layer = c.n_layer * p;

        batch.get_rows(&self.weights.token_embd, &s.ids.buffer, rows_of(&s.h, e), ntok);
        batch.scale_rows(rows_of(&s.h, e), ntok, e, c.embedding_scale());
        let inputs = rows_of(&a.inputs, per_layer);
        batch.get_rows(&w.per_layer_token_embd, &s.ids.buffer, inputs, ntok);
        batch.scale_rows(inputs, ntok, per_layer, (p as f32).sqrt());
        let model_part = rows_of(&a.model_part, per_layer);
        let model_proj = &w.per_layer_model_proj;
        batch.matmul(
            model_proj,
            rows_of(&s.h, e),
            model_part,
            ntok,
            false,
            1.0 / (e as f32).sqrt(),
        );
        let norm = &w.per_layer_proj_norm.buffer;
        batch.rmsnorm(model_part, norm, inputs, ntok * c.n_layer, p, c.eps, true);
        batch.scale_rows(inputs, ntok, per_layer, HALF_SQRT_2);

        batch.add_rows(stream(&a.streams, 0, e), rows_of(&s.h, e), ntok, e, 1.0, false);
        for (j, proj) in (1..).zip(&w.altup_proj) {
            batch.matmul(proj, rows_of(&s.h, e), stream(&a.streams, j, e), ntok, false, 1.0);
            batch.rescale_to_norm(stream(&a.streams, j, e), rows_of(&s.h, e), ntok, e);
        }

        for index in 0..self.weights.layers.len() {
            self.record_altup_layer(batch, s, a, index, ntok, pos);
        }

        if last {
            // The streams' mean, the others unembedded and rescaled to the first's norm.
            let at = (ntok - 1) * e;
            let last_of =
                |buffer: &'b GpuBuffer, j: u32| View::new(&buffer.buffer, j * UBATCH * e + at, e);
            let out = View::new(&s.h.buffer, at, e);
            let share = 1.0 / streams as f32;
            batch.add_rows(out, last_of(&a.streams, 0), 1, e, share, false);
            for (j, unembed) in (1..).zip(&w.altup_unembd_proj) {
                let y = last_of(&a.predictions, j);
                batch.matmul(unembed, last_of(&a.streams, j), y, 1, false, 1.0);
                batch.rescale_to_norm(y, last_of(&a.streams, 0), 1, e);
                batch.add_rows(out, y, 1, e, share, true);
            }
        }
    }

    /// Layer `index` of Gemma 3n: predict, LAuReL and attention, the (sparse)
    /// feed-forward, correct, and the layer's per-layer input into the streams.
    fn record_altup_layer<'b>(
        &'b self,
        batch: &mut Batch<'b>,
        s: &'b Scratch,
        a: &'b AltUpScratch,
        index: usize,
        ntok: u32,
        pos: u32,
    ) {
        let c = self.config;
        let altup = c.altup.as_ref().expect("an AltUp model's config");
        let (e, streams, p) = (c.n_embd, altup.streams, altup.per_layer_dim);
        let layer = &self.weights.layers[index];
        let plan = c.layer(index as u32);
        let norm = |batch: &mut Batch<'b>, x, role, y, accumulate| {
            batch.rmsnorm(x, &layer.vector(role).buffer, y, ntok, e, c.eps, accumulate);
        };
        let project = |batch: &mut Batch<'b>, role, x, y| {
            self.project(batch, s, index, role, x, y, ntok, false);
        };
        // The router's coefficients of `x`: `outputs` per token, plus `bias`.
        let coefficients = |batch: &mut Batch<'b>, x, role, outputs, bias| {
            norm(batch, x, Role::AltupRouterNorm, rows_of(&s.xn, e), false);
            let router = rows_of(&a.router, streams);
            let weight = layer.weight(Role::AltupRouter);
            batch.matmul(weight, rows_of(&s.xn, e), router, ntok, false, 1.0 / e as f32);
            let matrix = &layer.vector(role).buffer;
            let coefs = &a.coefs.buffer;
            batch.altup_coefficients(router.buffer, matrix, coefs, ntok, streams, outputs, bias);
        };

        coefficients(batch, stream(&a.streams, 0, e), Role::AltupPredict, streams * streams, 0.0);
        let coefs = &a.coefs.buffer;
        let sizes = [e, streams];
        batch.altup_predict(&a.streams.buffer, coefs, &a.predictions.buffer, ntok, sizes);
        let active = stream(&a.predictions, 0, e);
        norm(batch, active, Role::AttnNorm, rows_of(&s.xn, e), false);
        self.attend(batch, s, index, ntok, pos);

        // LAuReL and the prediction start the residual; attention's output joins it.
        let h = rows_of(&s.h, e);
        project(batch, Role::LaurelL, rows_of(&s.xn, e), rows_of(&a.laurel_low, altup.laurel_rank));
        project(
            batch,
            Role::LaurelR,
            rows_of(&a.laurel_low, altup.laurel_rank),
            rows_of(&a.laurel, e),
        );
        norm(batch, rows_of(&a.laurel, e), Role::LaurelNorm, h, false);
        batch.add_rows(h, rows_of(&s.xn, e), ntok, e, 1.0, true);
        batch.add_rows(h, active, ntok, e, 1.0, true);
        project(batch, Role::O, rows_of(&s.attn, c.q_dim()), rows_of(&s.xn, e));
        norm(batch, rows_of(&s.xn, e), Role::PostAttnNorm, h, true);
        batch.scale_rows(h, ntok, e, HALF_SQRT_2);

        norm(batch, h, Role::FfnNorm, rows_of(&s.xn, e), false);
        let gate = rows_of(&s.gate, c.n_ff);
        self.gate_and_up(batch, s, index, ntok, plan.sparsity);
        project(batch, Role::Down, gate, rows_of(&s.xn, e));
        norm(batch, rows_of(&s.xn, e), Role::PostFfnNorm, h, true);

        coefficients(batch, h, Role::AltupCorrect, streams, 1.0);
        let (predictions, streams_out) = (&a.predictions.buffer, &a.streams.buffer);
        batch.altup_correct(predictions, coefs, &s.h.buffer, streams_out, ntok, sizes);

        let scale = &layer.vector(Role::AltupCorrectScale).buffer;
        batch.weigh_rows(rows_of(&s.xn, e), stream(&a.streams, 0, e), scale, ntok, e);
        let gate = rows_of(&a.per_layer_gate, p);
        project(batch, Role::PerLayerGate, rows_of(&s.xn, e), gate);
        let this_layer = View::new(&a.inputs.buffer, index as u32 * p, c.n_layer * p);
        batch.gated(gate.buffer, this_layer, ntok, p, Activation::GeluTanh);
        project(batch, Role::PerLayerProj, gate, rows_of(&s.xn, e));
        for j in 1..streams {
            norm(batch, rows_of(&s.xn, e), Role::PerLayerNorm, stream(&a.streams, j, e), true);
        }
    }
}
