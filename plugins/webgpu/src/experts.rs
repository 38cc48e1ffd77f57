//! A mixture of experts' feed-forward on the device, with no readback: the router's
//! product gives each token's logits over the experts, the route kernel (route.wgsl,
//! the model layer's `Experts::route`) writes the chosen experts and their weights to a
//! buffer, and each chosen expert's products read the expert's index from there to
//! find its matrix in the stacked 3-D weight.

use hearth_model::{Activation, Experts};

use crate::batch::{Batch, View};
use crate::kernels::{Routed, Weight};
use crate::products::gated_output;

impl<'a> Batch<'a> {
    /// Route `ntok` tokens: from the router's logits (`count` per token, in `logits`),
    /// write `used` slots of (expert, weight) per token to `route`.
    pub fn route(
        &mut self,
        logits: &'a wgpu::Buffer,
        route: &'a wgpu::Buffer,
        ntok: u32,
        experts: Experts,
    ) {
        let words = [ntok, experts.count, experts.used, u32::from(experts.normalize)];
        let bindings = vec![(1, logits), (2, route)];
        let kernels = self.kernels;
        self.push(&kernels.route, bindings, &words, [ntok.div_ceil(64), 1, 1]);
    }

    /// `gate = act(gate_e x) · up_e x` for one token and the expert in `slot`.
    #[allow(clippy::too_many_arguments)] // two weights, the routing, and the rows
    pub fn expert_gate_up(
        &mut self,
        gate_w: &'a Weight,
        up_w: &'a Weight,
        route: &'a wgpu::Buffer,
        slot: u32,
        x: View<'a>,
        gate: View<'a>,
        activation: Activation,
    ) {
        let routed = Some(Routed { route, slot, weighted: false });
        self.product(gate_w, x, gate, 1, 0, 1.0, routed);
        self.product(up_w, x, gate, 1, gated_output(activation), 1.0, routed);
    }

    /// `y (+)= weight · down_e x` for one token and the expert in `slot`.
    pub fn expert_down(
        &mut self,
        w: &'a Weight,
        route: &'a wgpu::Buffer,
        slot: u32,
        x: View<'a>,
        y: View<'a>,
        accumulate: bool,
    ) {
        let routed = Some(Routed { route, slot, weighted: true });
        self.product(w, x, y, 1, u32::from(accumulate), 1.0, routed);
    }
}
