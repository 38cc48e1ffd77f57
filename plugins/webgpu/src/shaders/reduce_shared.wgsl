// The sum over a workgroup of WG invocations' vectors, by halving in workgroup memory:
// for adapters without subgroup operations.

struct Lanes {
    @builtin(local_invocation_index) lid: u32,
}

var<workgroup> partial: array<vec4<f32>, WG>;

fn reduce(lanes: Lanes, value: vec4<f32>) -> vec4<f32> {
    partial[lanes.lid] = value;
    workgroupBarrier();
    for (var step = WG / 2u; step > 0u; step >>= 1u) {
        if (lanes.lid < step) {
            partial[lanes.lid] += partial[lanes.lid + step];
        }
        workgroupBarrier();
    }
    return partial[0];
}
