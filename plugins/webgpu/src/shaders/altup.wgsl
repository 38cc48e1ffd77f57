// Gemma 3n's AltUp steps (hearth_model::altup) over `ntok` tokens of `streams` streams
// of `e` values, stream j's row t at j * stream_stride + t * e.
// coefficients: per token, `outputs` values W · tanh(router logits) + bias, W a row-major
// `outputs × streams` f32 matrix (the prediction's streams² or the correction's streams).
// predict: pred[j] = stream[j] + Σ_k c[j·streams + k] · stream[k].
// correct: stream[j] = pred[j] + c[j] · (out − pred[0]), c with its + 1 already added.

struct AltUpParams {
    ntok: u32,
    e: u32,
    streams: u32,
    stream_stride: u32,
    outputs: u32,
    bias: f32,
}

@group(0) @binding(0) var<uniform> p: AltUpParams;
// The router's logits, `streams` per token.
@group(0) @binding(1) var<storage, read> router: array<f32>;
@group(0) @binding(2) var<storage, read> matrix: array<f32>;
@group(0) @binding(3) var<storage, read_write> coefs_out: array<f32>;
@group(0) @binding(4) var<storage, read> coefs: array<f32>;
@group(0) @binding(5) var<storage, read> streams_in: array<f32>;
// The layer's output, `e` per token.
@group(0) @binding(6) var<storage, read> layer_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> streams_out: array<f32>;

// `tanh_exp` comes from activation.wgsl, appended by the host.

@compute @workgroup_size(64)
fn coefficients(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.y;
    let o = gid.x;
    if (o >= p.outputs || t >= p.ntok) {
        return;
    }
    var sum = p.bias;
    for (var k = 0u; k < p.streams; k++) {
        sum += matrix[o * p.streams + k] * tanh_exp(router[t * p.streams + k]);
    }
    coefs_out[t * p.outputs + o] = sum;
}

@compute @workgroup_size(64)
fn predict(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let t = gid.y;
    let j = gid.z;
    if (i >= p.e || t >= p.ntok) {
        return;
    }
    let at = t * p.e + i;
    var value = streams_in[j * p.stream_stride + at];
    for (var k = 0u; k < p.streams; k++) {
        value += coefs[(t * p.streams + j) * p.streams + k] * streams_in[k * p.stream_stride + at];
    }
    streams_out[j * p.stream_stride + at] = value;
}

@compute @workgroup_size(64)
fn correct(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let t = gid.y;
    let j = gid.z;
    if (i >= p.e || t >= p.ntok) {
        return;
    }
    let at = t * p.e + i;
    let innovation = layer_out[at] - streams_in[at];
    streams_out[j * p.stream_stride + at] =
        streams_in[j * p.stream_stride + at] + coefs[t * p.streams + j] * innovation;
}
