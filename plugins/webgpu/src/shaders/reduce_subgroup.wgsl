// The sum over a workgroup of WG invocations, through subgroup operations: each
// subgroup adds its values in registers, then one value per subgroup meets in
// workgroup memory.

struct Lanes {
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
}

var<workgroup> partial: array<f32, WG>;

fn reduce(lanes: Lanes, value: f32) -> f32 {
    let sum = subgroupAdd(value);
    if (lanes.lane == 0u) {
        partial[lanes.subgroup] = sum;
    }
    workgroupBarrier();
    var total = 0.0;
    for (var i = 0u; i < lanes.subgroups; i++) {
        total += partial[i];
    }
    // Another reduction may reuse `partial` once everyone has read it.
    workgroupBarrier();
    return total;
}
