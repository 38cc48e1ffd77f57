// The gated feed-forward's activation: SiLU, or GELU's tanh approximation when `gelu`;
// and tanh itself, for Gemma 3n's router and logit soft cap.

const SQRT_2_OVER_PI: f32 = 0.7978845608;

// tanh through exp, clamped: WGSL's tanh is not exact for large arguments everywhere.
fn tanh_exp(x: f32) -> f32 {
    let e = exp(2.0 * clamp(x, -15.0, 15.0));
    return (e - 1.0) / (e + 1.0);
}

fn activate(a: f32, gelu: bool) -> f32 {
    if (!gelu) {
        return a / (1.0 + exp(-a));
    }
    return 0.5 * a * (1.0 + tanh_exp(SQRT_2_OVER_PI * (a + 0.044715 * a * a * a)));
}
