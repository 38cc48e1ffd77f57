//! Which kernels run, chosen once per device from what the adapter is.
//!
//! A software adapter (lavapipe, llvmpipe) runs a workgroup's invocations one after
//! another on a CPU core and pays for every workgroup it starts; a GPU runs thousands
//! of invocations at once and needs neighbouring invocations to read neighbouring
//! bytes. So the software plan gives each invocation a whole output row, and the GPU
//! plan spreads a row over a workgroup with a reduction and tiles prompt products in
//! workgroup memory. `HEARTH_WEBGPU_KERNELS=gpu|software` overrides the choice, so
//! both plans can be tested and timed on any adapter.

use std::fmt;

/// The environment variable that overrides the plan chosen from the adapter.
pub const PLAN_VARIABLE: &str = "HEARTH_WEBGPU_KERNELS";

/// The kernels a device runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelPlan {
    /// One invocation per output row (and tile of tokens), reading its row alone.
    Software,
    /// A workgroup per output row for a few tokens, tiles in workgroup memory for many;
    /// reductions through subgroup operations when the device has them.
    Gpu { subgroups: bool },
}

impl KernelPlan {
    /// The plan for an adapter of `device_type` whose device has subgroup operations
    /// or not: the software plan on a CPU adapter, the GPU plan on anything else,
    /// unless [`PLAN_VARIABLE`] names one. `Err` says what the variable holds instead.
    pub fn choose(device_type: wgpu::DeviceType, subgroups: bool) -> Result<Self, String> {
        match std::env::var(PLAN_VARIABLE) {
            Ok(value) => Self::parse(&value, subgroups),
            Err(_) if device_type == wgpu::DeviceType::Cpu => Ok(Self::Software),
            Err(_) => Ok(Self::Gpu { subgroups }),
        }
    }

    fn parse(value: &str, subgroups: bool) -> Result<Self, String> {
        match value {
            "gpu" => Ok(Self::Gpu { subgroups }),
            "software" => Ok(Self::Software),
            other => Err(format!("{PLAN_VARIABLE} is `{other}`; it takes `gpu` or `software`")),
        }
    }

    /// Every plan a device with or without subgroup operations can run (what the
    /// kernel tests cover).
    pub fn every(subgroups: bool) -> Vec<Self> {
        let mut plans = vec![Self::Software, Self::Gpu { subgroups: false }];
        if subgroups {
            plans.push(Self::Gpu { subgroups: true });
        }
        plans
    }
}

impl fmt::Display for KernelPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Software => f.write_str("software kernels"),
            Self::Gpu { subgroups: true } => f.write_str("GPU kernels with subgroups"),
            Self::Gpu { subgroups: false } => f.write_str("GPU kernels"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_names_a_plan_and_anything_else_is_refused() {
        assert_eq!(KernelPlan::parse("gpu", true), Ok(KernelPlan::Gpu { subgroups: true }));
        assert_eq!(KernelPlan::parse("gpu", false), Ok(KernelPlan::Gpu { subgroups: false }));
        assert_eq!(KernelPlan::parse("software", true), Ok(KernelPlan::Software));
        let error = KernelPlan::parse("fast", true).unwrap_err();
        assert!(error.contains("`fast`"), "{error}");
    }

    #[test]
    fn every_plan_includes_the_subgroup_variant_only_where_the_device_has_subgroups() {
        assert_eq!(KernelPlan::every(false).len(), 2);
        assert_eq!(KernelPlan::every(true)[2], KernelPlan::Gpu { subgroups: true });
    }
}
