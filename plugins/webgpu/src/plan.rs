//! Which kernels run, chosen once per device from what the adapter is.
//!
//! A software adapter (lavapipe, llvmpipe) runs a workgroup's invocations one after
//! another on a CPU core and pays for every workgroup it starts; a GPU runs thousands
//! of invocations at once and needs neighbouring invocations to read neighbouring
//! bytes. So the software plan gives each invocation a whole output row, and the GPU
//! plan spreads a row over a workgroup with a reduction and tiles prompt products in
//! workgroup memory — on tensor cores, through cooperative matrices, where the adapter
//! has them. `HEARTH_WEBGPU_KERNELS=gpu|gpu-without-matrices|software`
//! overrides the choice, so every plan can be tested and timed on any adapter that can
//! run it.

use std::fmt;

/// The environment variable that overrides the plan chosen from the adapter.
pub const PLAN_VARIABLE: &str = "HEARTH_WEBGPU_KERNELS";

/// The kernels a device runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelPlan {
    /// One invocation per output row (and tile of tokens), reading its row alone.
    Software,
    /// A workgroup per few output rows for a few tokens, tiles in workgroup memory for
    /// many; reductions through subgroup operations when the device has them, and the
    /// tiles' products on cooperative matrices (f16 in, f32 sums) when it has those.
    Gpu { subgroups: bool, matrices: bool },
}

/// What a device offers the kernels beyond WebGPU's baseline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offers {
    /// Subgroup operations in compute shaders.
    pub subgroups: bool,
    /// 16×16×16 cooperative matrices of f16 with f32 sums, on subgroups of exactly 32
    /// invocations (the prompt kernel's layout assumes four of them per workgroup).
    pub matrices: bool,
}

impl KernelPlan {
    /// The plan for an adapter of `device_type` offering `offers`: the software plan on
    /// a CPU adapter, the GPU plan with subgroups where offered on anything else, unless
    /// [`PLAN_VARIABLE`] names one. `Err` says what the variable holds instead, or that
    /// the plan it names needs what the adapter lacks.
    ///
    /// Cooperative matrices run wherever offered: on an H100 (two leases, 2026-12-05)
    /// their prompt kernel passed the kernel tests against the CPU, gave the same greedy
    /// answer as the f32 tiles, and read prompts 1.4–3× faster, with decoding unchanged.
    pub fn choose(device_type: wgpu::DeviceType, offers: Offers) -> Result<Self, String> {
        match std::env::var(PLAN_VARIABLE) {
            Ok(value) => Self::parse(&value, offers),
            Err(_) if device_type == wgpu::DeviceType::Cpu => Ok(Self::Software),
            Err(_) => Self::parse("gpu", offers),
        }
    }

    fn parse(value: &str, offers: Offers) -> Result<Self, String> {
        match value {
            "gpu" => Ok(Self::Gpu { subgroups: offers.subgroups, matrices: offers.matrices }),
            "gpu-without-matrices" => {
                Ok(Self::Gpu { subgroups: offers.subgroups, matrices: false })
            }
            "software" => Ok(Self::Software),
            other => Err(format!(
                "{PLAN_VARIABLE} is `{other}`; it takes `gpu`, `gpu-without-matrices` or `software`"
            )),
        }
    }

    /// Every plan a device offering `offers` can run (what the kernel tests cover).
    pub fn every(offers: Offers) -> Vec<Self> {
        let mut plans = vec![Self::Software, Self::Gpu { subgroups: false, matrices: false }];
        if offers.subgroups {
            plans.push(Self::Gpu { subgroups: true, matrices: false });
        }
        if offers.matrices {
            plans.push(Self::Gpu { subgroups: true, matrices: true });
        }
        plans
    }

    /// The relative error the plan's products may have against an f32 reference: f16
    /// inputs to the cooperative matrices round each to 11 significant bits.
    pub fn tolerance(self) -> f32 {
        match self {
            Self::Gpu { matrices: true, .. } => 4e-3,
            _ => 1e-5,
        }
    }
}

impl fmt::Display for KernelPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Software => f.write_str("software kernels"),
            Self::Gpu { subgroups: true, matrices: true } => {
                f.write_str("GPU kernels with subgroups and cooperative matrices")
            }
            Self::Gpu { subgroups: true, matrices: false } => {
                f.write_str("GPU kernels with subgroups")
            }
            Self::Gpu { subgroups: false, .. } => f.write_str("GPU kernels"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Offers = Offers { subgroups: true, matrices: true };
    const SUBGROUPS: Offers = Offers { subgroups: true, matrices: false };

    #[test]
    fn the_variable_names_a_plan_and_anything_else_is_refused() {
        let gpu = |subgroups, matrices| Ok(KernelPlan::Gpu { subgroups, matrices });
        assert_eq!(KernelPlan::parse("gpu", ALL), gpu(true, true));
        assert_eq!(KernelPlan::parse("gpu", SUBGROUPS), gpu(true, false));
        assert_eq!(KernelPlan::parse("gpu", Offers::default()), gpu(false, false));
        assert_eq!(KernelPlan::parse("gpu-without-matrices", ALL), gpu(true, false));
        assert_eq!(KernelPlan::parse("software", ALL), Ok(KernelPlan::Software));
        let error = KernelPlan::parse("fast", ALL).unwrap_err();
        assert!(error.contains("`fast`"), "{error}");
    }

    #[test]
    fn every_plan_includes_a_variant_only_where_the_device_offers_what_it_needs() {
        assert_eq!(KernelPlan::every(Offers::default()).len(), 2);
        assert_eq!(KernelPlan::every(SUBGROUPS).len(), 3);
        let all = KernelPlan::every(ALL);
        assert_eq!(all[2], KernelPlan::Gpu { subgroups: true, matrices: false });
        assert_eq!(all[3], KernelPlan::Gpu { subgroups: true, matrices: true });
    }
}
