// The sum over a workgroup of WG invocations' vectors, through subgroup operations:
// each subgroup adds its values in registers, then one vector per subgroup meets in
// workgroup memory.

struct Lanes {
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
}

var<workgroup> partial: array<vec4<f32>, WG>;

fn reduce(lanes: Lanes, value: vec4<f32>) -> vec4<f32> {
    let sum = subgroupAdd(value);
    if (lanes.lane == 0u) {
        partial[lanes.subgroup] = sum;
    }
    workgroupBarrier();
    var total = vec4<f32>(0.0);
    for (var i = 0u; i < lanes.subgroups; i++) {
        total += partial[i];
    }
    return total;
}
