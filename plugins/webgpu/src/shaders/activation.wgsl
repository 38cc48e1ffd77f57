// The gated feed-forward's activation: SiLU, or GELU's tanh approximation when `gelu`.

const SQRT_2_OVER_PI: f32 = 0.7978845608;

fn activate(a: f32, gelu: bool) -> f32 {
    if (!gelu) {
        return a / (1.0 + exp(-a));
    }
    // tanh through exp, clamped: WGSL's tanh is not exact for large arguments everywhere.
    let z = clamp(SQRT_2_OVER_PI * (a + 0.044715 * a * a * a), -15.0, 15.0);
    let e = exp(2.0 * z);
    return 0.5 * a * (1.0 + (e - 1.0) / (e + 1.0));
}
