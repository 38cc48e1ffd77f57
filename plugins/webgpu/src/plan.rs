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
//!
//! `HEARTH_WEBGPU_MATVEC=rows=R,width=W,input=I` sets the shape of the GPU plan's
//! decode product (matvec.wgsl): R output rows per workgroup (1 to 8), W invocations
//! per workgroup (a power of two from 16 to 256) and its input I: `f32`, `q8` (each 32
//! values quantized to 8 bits once per product, multiplied by the quantized weights in
//! integers) or `q16` (the same in two 8-bit parts, the second quantizing what the
//! first left over); a key left out keeps its default, `rows=4,width=64,input=q16`.
//! The host writes them into the kernel's source when it builds the pipelines, so
//! shapes can be compared on a GPU without rebuilding (`examples/kernel_speed.rs`
//! sweeps several in one run).

use std::fmt;

/// The environment variable that overrides the plan chosen from the adapter.
pub const PLAN_VARIABLE: &str = "HEARTH_WEBGPU_KERNELS";

/// The environment variable that sets the decode product's shape ([`MatvecShape`]).
pub const MATVEC_VARIABLE: &str = "HEARTH_WEBGPU_MATVEC";

/// The shape of the GPU plan's decode product: output rows per workgroup,
/// invocations per workgroup, and its input's form. Fewer rows give more workgroups,
/// so more bytes in flight on a large GPU; more rows read each input chunk for more
/// rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatvecShape {
    pub rows: u32,
    pub width: u32,
    pub input: MatvecInput,
}

/// The decode product's input: f32 against weights decoded to f32 (input_f32.wgsl),
/// or quantized to 8 bits a 32-value chunk, in one part or two, against the weights'
/// integer quants (input_q8.wgsl, dot8.wgsl; the f32, f16 and bf16 weights keep f32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatvecInput {
    F32,
    Q8,
    /// Two 8-bit parts: the value quantized, and what that left over quantized again.
    Q16,
}

impl MatvecInput {
    /// The 8-bit parts a chunk of this input is quantized to; 0 for f32.
    pub fn parts(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::Q8 => 1,
            Self::Q16 => 2,
        }
    }

    /// The relative error (against the largest output) a decode product with this
    /// input may have against an f32 reference: 8-bit quants round each input value
    /// by up to 1/254 of its chunk's largest, two parts by 1/254².
    pub fn tolerance(self) -> f32 {
        match self {
            Self::F32 => 1e-5,
            Self::Q8 => 2e-2,
            Self::Q16 => 2e-4,
        }
    }
}

impl Default for MatvecShape {
    /// matvec.wgsl's own values, and the input quantized to 8 bits in two parts once
    /// per product (`input=q16`): the products multiply in integers, and the second part
    /// makes the input exact to 1/254² of a chunk's largest value. On an H100 it decoded
    /// the 8B shape 22 % faster than f32 input (206 against 169 tok/s) and the 1B shape
    /// as fast (docs/BENCHMARKS.md, 2026-12-06, third session), and SmolLM2's greedy
    /// answers on lavapipe's GPU plan are those of f32 input and of the f32 CPU
    /// reference on all five fixed prompts. One part (`input=q8`, llama.cpp's own
    /// rounding) is 3–8 % faster still, but its answers follow the 8-bit activations:
    /// SmolLM2 then answers "What is the capital of France?" with "L'Étoile, la
    /// Marseillaise", as the llama.cpp plugin does on the CPU, where f32 and two parts
    /// answer "The capital of France is Paris.".
    fn default() -> Self {
        Self { rows: 4, width: 64, input: MatvecInput::Q16 }
    }
}

impl MatvecShape {
    /// The shape [`MATVEC_VARIABLE`] sets, or the default where it is unset.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(MATVEC_VARIABLE) {
            Ok(value) => Self::parse(&value),
            Err(_) => Ok(Self::default()),
        }
    }

    /// `rows=R,width=W,input=I`, any key left out for its default; `Err` names the variable
    /// and says what it takes.
    pub fn parse(value: &str) -> Result<Self, String> {
        let refuse = |why: &str| {
            format!(
                "{MATVEC_VARIABLE} is `{value}`: {why}; it takes `rows=R,width=W,input=I` with R from 1 to 8, W a power of two from 16 to 256 and I `f32`, `q8` or `q16`"
            )
        };
        let mut shape = Self::default();
        for setting in value.split(',').map(str::trim).filter(|setting| !setting.is_empty()) {
            let (key, number) = setting
                .split_once('=')
                .ok_or_else(|| refuse(&format!("`{setting}` is not `key=value`")))?;
            match (key.trim(), number.trim()) {
                ("input", "f32") => shape.input = MatvecInput::F32,
                ("input", "q8") => shape.input = MatvecInput::Q8,
                ("input", "q16") => shape.input = MatvecInput::Q16,
                ("input", other) => return Err(refuse(&format!("input `{other}` is not known"))),
                (key @ ("rows" | "width"), number) => {
                    let number: u32 = number
                        .parse()
                        .map_err(|_| refuse(&format!("`{number}` is not a number")))?;
                    match key {
                        "rows" if (1..=8).contains(&number) => shape.rows = number,
                        "width" if number.is_power_of_two() && (16..=256).contains(&number) => {
                            shape.width = number;
                        }
                        _ => return Err(refuse(&format!("{key} {number} is out of range"))),
                    }
                }
                (other, _) => return Err(refuse(&format!("there is no key `{other}`"))),
            }
        }
        Ok(shape)
    }
}

impl fmt::Display for MatvecShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let input = match self.input {
            MatvecInput::F32 => "f32",
            MatvecInput::Q8 => "q8",
            MatvecInput::Q16 => "q16",
        };
        write!(f, "rows={},width={},input={input}", self.rows, self.width)
    }
}

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

impl KernelPlan {
    /// [`KernelPlan::tolerance`] for the plan's products with decode products of shape
    /// `matvec` (the GPU plan's; the software plan has its own).
    pub fn tolerance_with(self, matvec: MatvecShape) -> f32 {
        match self {
            Self::Software => self.tolerance(),
            Self::Gpu { .. } => self.tolerance().max(matvec.input.tolerance()),
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
    fn a_decode_shape_takes_rows_and_width_in_any_order_and_keeps_defaults_for_keys_left_out() {
        let shape = |rows, width, input| Ok(MatvecShape { rows, width, input });
        assert_eq!(MatvecShape::parse("rows=2,width=64"), shape(2, 64, MatvecInput::Q16));
        assert_eq!(MatvecShape::parse(" width = 128 , rows = 1 "), shape(1, 128, MatvecInput::Q16));
        assert_eq!(MatvecShape::parse("rows=8,input=f32"), shape(8, 64, MatvecInput::F32));
        assert_eq!(MatvecShape::parse(""), Ok(MatvecShape::default()));
        let text = MatvecShape { rows: 3, width: 16, input: MatvecInput::Q8 }.to_string();
        assert_eq!(MatvecShape::parse(&text), shape(3, 16, MatvecInput::Q8));
    }

    #[test]
    fn a_bad_decode_shape_is_refused_naming_the_variable() {
        for bad in
            ["rows=0", "rows=9", "width=48", "width=512", "depth=2", "rows", "rows=two", "input=q4"]
        {
            let error = MatvecShape::parse(bad).unwrap_err();
            assert!(error.contains(MATVEC_VARIABLE) && error.contains(bad), "{error}");
        }
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
