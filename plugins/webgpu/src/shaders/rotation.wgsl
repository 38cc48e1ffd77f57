// Rotary position embedding's turn of one pair of a head's values, written once for
// rope.wgsl's pass and for the products that rotate Q and K as they store them
// (quant.wgsl's `store_sum`): pair `pair` of a head's leading `n_rot` values, at
// position `position`, with the frequency base `freq_base`.
fn rotate_pair(ab: vec2<f32>, position: u32, pair: u32, n_rot: u32, freq_base: f32) -> vec2<f32> {
    let theta = f32(position) * pow(freq_base, -2.0 * f32(pair) / f32(n_rot));
    let c = cos(theta);
    let s = sin(theta);
    return vec2<f32>(ab.x * c - ab.y * s, ab.x * s + ab.y * c);
}
