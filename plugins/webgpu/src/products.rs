//! The matrix products a batch records: plain, accumulating, gated, routed to an
//! expert, split into segments (Q, K and V of one stacked weight into three places,
//! Q and K rotated as they are stored where the kernel can) and paired (a stacked gate
//! and up projection into act(gate) · up).

use hearth_model::Activation;

use crate::batch::{split_groups, Batch, QuantizedRows, Rotation, View};
use crate::kernels::{quantized_input_words, InputQuantizer, Weight};

/// The `output` of quant.wgsl's `store` that multiplies a product by the activation
/// of what its view holds (a gated feed-forward's gate): 3 for GELU, 2 for SiLU.
pub(crate) fn gated_output(activation: Activation) -> u32 {
    if activation == Activation::GeluTanh {
        3
    } else {
        2
    }
}

/// Which matrix of a stacked weight a routed product multiplies by: the expert that
/// slot `slot` of `route` names (route.wgsl writes them), its output scaled by that
/// slot's weight when `weighted`.
#[derive(Clone, Copy)]
pub struct Routed<'a> {
    pub route: &'a wgpu::Buffer,
    pub slot: u32,
    pub weighted: bool,
}

/// Where a product's rows go besides its first view, and how it reads its weight.
#[derive(Clone, Copy, Default)]
struct Layout<'a> {
    /// Rows from the first number on go to the view (quant.wgsl's `split1`, `split2`).
    segments: [Option<(u32, View<'a>)>; 2],
    /// A paired product's first up row (quant.wgsl's `paired`).
    paired: Option<u32>,
    /// The output matrix's product for one token, which gives the logits.
    logits: bool,
    /// How the first two segments turn (quant.wgsl's `rope_n_rot` and after).
    rotation: Option<Rotation>,
}

impl<'a> Batch<'a> {
    /// The logits `y = W · x` of one token's final-normed state `x` through the output
    /// matrix `W`, by the product kept for them (kernels.rs).
    pub fn logits(&mut self, w: &'a Weight, x: View<'a>, y: View<'a>) {
        let layout = Layout { logits: true, ..Layout::default() };
        self.product_laid_out(w, x, y, 1, 0, 1.0, None, layout);
    }

    /// `y[t] (+)= scale · W · x[t]` for `ntok` tokens.
    pub fn matmul(
        &mut self,
        w: &'a Weight,
        x: View<'a>,
        y: View<'a>,
        ntok: u32,
        accumulate: bool,
        scale: f32,
    ) {
        self.product(w, x, y, ntok, u32::from(accumulate), scale, None);
    }

    /// `gate[t] = act(gate[t]) · W · x[t]`: a gated feed-forward's up projection with
    /// the activation of the gate projection already in `gate`, in one pass.
    pub fn matmul_gated(
        &mut self,
        w: &'a Weight,
        x: View<'a>,
        gate: View<'a>,
        ntok: u32,
        activation: Activation,
    ) {
        let output = gated_output(activation);
        self.product(w, x, gate, ntok, output, 1.0, None);
    }

    /// `y_i[t] = W_i · x[t]` for the matrices stacked in `w` in the order of `outputs`,
    /// each of `rows` rows into its own view (up to three, in distinct buffers): a
    /// layer's Q, K and V in one product.
    pub fn matmul_split(
        &mut self,
        w: &'a Weight,
        x: View<'a>,
        outputs: &[(u32, View<'a>)],
        ntok: u32,
    ) {
        self.split_product(w, x, outputs, ntok, None);
    }

    /// [`Batch::matmul_split`] of a layer's Q, K and V that rotates Q's and K's adjacent
    /// pairs by rotary position embedding as it stores them, so no pass of
    /// [`Batch::rope`] follows; only where [`Batch::rotates_pairs`] says it can.
    pub fn matmul_split_rotated(
        &mut self,
        w: &'a Weight,
        x: View<'a>,
        outputs: &[(u32, View<'a>); 3],
        ntok: u32,
        rotation: Rotation,
    ) {
        assert!(!rotation.neox, "a product rotates adjacent pairs only");
        assert!(self.rotates_pairs(w, ntok), "a rotating product where one can run");
        self.split_product(w, x, outputs, ntok, Some(rotation));
    }

    /// Whether a split product of `ntok` tokens through `w` can rotate adjacent pairs of
    /// its rows ([`Batch::matmul_split_rotated`]): where its kernel holds each pair and
    /// no part of the weight splits one.
    pub fn rotates_pairs(&self, w: &Weight, ntok: u32) -> bool {
        self.kernels.rotates_pairs(ntok, w.nrows / w.matrices)
            && w.parts.iter().all(|part| part.rows % 2 == 0)
    }

    fn split_product(
        &mut self,
        w: &'a Weight,
        x: View<'a>,
        outputs: &[(u32, View<'a>)],
        ntok: u32,
        rotation: Option<Rotation>,
    ) {
        let [(first_rows, y), rest @ ..] = outputs else {
            panic!("a split product has an output");
        };
        assert!(rest.len() <= 2, "a product writes at most three segments");
        let mut layout = Layout { rotation, ..Layout::default() };
        let mut split = *first_rows;
        for (segment, &(rows, view)) in layout.segments.iter_mut().zip(rest) {
            *segment = Some((split, view));
            split += rows;
        }
        assert_eq!(split, w.nrows, "the outputs' rows are the weight's");
        self.product_laid_out(w, x, *y, ntok, 0, 1.0, None, layout);
    }

    /// `gate[t] = act(G · x[t]) · U · x[t]` for a weight of a gated feed-forward's gate
    /// projection G stacked on its up projection U, in one pass; only where
    /// [`Kernels::pair`](crate::kernels::Kernels::pair) says the product of `ntok` tokens can.
    pub fn matmul_paired(
        &mut self,
        w: &'a Weight,
        x: View<'a>,
        gate: View<'a>,
        ntok: u32,
        activation: Activation,
    ) {
        let output = gated_output(activation);
        let layout = Layout { paired: Some(w.nrows / 2), ..Layout::default() };
        self.product_laid_out(w, x, gate, ntok, output, 1.0, None, layout);
    }

    /// A matrix product whose results `store` (quant.wgsl) writes as `output` says; a
    /// routed one multiplies by the matrix of the expert in its slot of the routing.
    #[allow(clippy::too_many_arguments)] // the kernel's parameters, one each
    pub(crate) fn product(
        &mut self,
        w: &'a Weight,
        x: View<'a>,
        y: View<'a>,
        ntok: u32,
        output: u32,
        scale: f32,
        routed: Option<Routed<'a>>,
    ) {
        self.product_laid_out(w, x, y, ntok, output, scale, routed, Layout::default());
    }

    #[allow(clippy::too_many_arguments)] // the kernel's parameters, one each
    fn product_laid_out(
        &mut self,
        w: &'a Weight,
        x: View<'a>,
        y: View<'a>,
        ntok: u32,
        output: u32,
        scale: f32,
        routed: Option<Routed<'a>>,
        layout: Layout<'a>,
    ) {
        let kernels = self.kernels;
        let paired = layout.paired.is_some();
        let matrix_rows = w.nrows / w.matrices;
        let expect = "a paired product where one can run";
        let mut product = kernels.product(ntok, matrix_rows, paired, layout.logits).expect(expect);
        let mut x = x;
        if product.quantized_input.contains(&w.ty) {
            match self.quantize_input(x, w.ncols, ntok) {
                Some(quantized) => x = quantized,
                None => product = kernels.f32_product(matrix_rows, paired).expect(expect),
            }
        }
        let quantized = self.quantized;
        assert!(!paired || w.parts.len() == 1, "a paired product reads one buffer");
        let pipeline = &product.pipelines[&w.ty];
        let [segment1, segment2] = layout.segments.map(|segment| {
            segment.map_or([0, 0, 0], |(split, view)| [split, view.offset, view.stride])
        });
        let rotation = layout.rotation.map_or([0; 4], |r| {
            assert!(product.holds_pairs, "the product that rotates holds each pair");
            [r.n_rot, r.head_dim, r.pos0, r.freq_base.to_bits()]
        });
        let [y1, y2] = [0, 1].map(|i| {
            layout.segments[i].map_or(&kernels.unsegmented[i].buffer, |(_, view)| view.buffer)
        });
        for part in &w.parts {
            // A routed product computes one matrix's rows; a plain one the part's.
            let (rows, row0, route, route_words) = match routed {
                Some(r) => (
                    matrix_rows,
                    0,
                    r.route,
                    [
                        r.slot,
                        part.row0 / matrix_rows,
                        part.rows / matrix_rows,
                        u32::from(r.weighted),
                    ],
                ),
                None => (part.rows, part.row0, &kernels.unrouted.buffer, [u32::MAX, 0, 0, 0]),
            };
            let [gx, gy] = split_groups(rows.div_ceil(product.rows));
            let [slot, expert0, experts, weighted] = route_words;
            let words = [
                [rows, w.ncols, ntok, row0, x.offset, x.stride, y.offset, y.stride].as_slice(),
                &[output, scale.to_bits(), slot, expert0, experts, weighted],
                &segment1,
                &segment2,
                &[layout.paired.unwrap_or(0), part.first],
                &rotation,
            ]
            .concat();
            let bindings = vec![
                (1, &part.buffer.buffer),
                (2, x.buffer),
                (3, y.buffer),
                (5, route),
                (6, y1),
                (7, y2),
            ];
            self.push(pipeline, bindings, &words, [gx, gy, ntok.div_ceil(product.tokens)]);
        }
        // The quantized rows stay for the next product unless this one wrote over them.
        self.quantized = quantized.filter(|rows| ![y.buffer, y1, y2].contains(&rows.x.buffer));
    }

    /// The view of `ntok` tokens of `x`, `ncols` values each, quantized to 8 bits for the
    /// product that reads them: by a pass recorded now (norm.wgsl's `quantize_input`),
    /// unless the buffer still holds them (from the norm or attention that wrote them,
    /// or for the product before); `None` where they do not fit the buffer.
    fn quantize_input(&mut self, x: View<'a>, ncols: u32, ntok: u32) -> Option<View<'a>> {
        let quantizer = self.kernels.quantize_input.as_ref()?;
        if !InputQuantizer::fits(ncols, ntok) {
            return None;
        }
        let stride = quantized_input_words(quantizer.input, ncols);
        let rows = QuantizedRows { x, ncols, ntok };
        if self.quantized != Some(rows) {
            let words = [ntok, ncols, x.offset, 0, 0, 0, 0, x.stride, stride];
            let bindings = vec![(1, x.buffer), (7, &quantizer.buffer.buffer)];
            let groups = quantizer.groups(ncols, ntok);
            self.push(&quantizer.pass, bindings, &words, groups);
            self.quantized = Some(rows);
        }
        Some(View::new(&quantizer.buffer.buffer, 0, stride))
    }
}
