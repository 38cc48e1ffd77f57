//! The architectures hearth's own engines run, each described once as data: the facts
//! in which one decoder-only transformer differs from another. Engines never match on
//! an architecture's name; they follow these flags (through [`crate::Config`] and
//! [`crate::LayerPlan`]), so adding an architecture that needs no new kind of step is
//! one entry in [`ARCHITECTURES`].

use hearth_sdk::helpers::{capabilities, GgmlType};
use hearth_sdk::PluginError;

/// Which dimensions of a head RoPE rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopePairs {
    /// `(2i, 2i+1)`: llama.cpp's layout for Llama GGUFs, whose Q and K rows the
    /// converter permuted.
    Adjacent,
    /// `(i, i + n_rot/2)`: the two halves of each head (Hugging Face's layout; "NeoX").
    Halves,
}

/// The gated feed-forward's activation: `down(act(gate x) · up x)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU.
    Silu,
    /// GeGLU with GELU's tanh approximation (Gemma).
    GeluTanh,
}

impl Activation {
    /// The activation of one value, in f64 (the CPU reference's precision).
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Self::Silu => x / (1.0 + (-x).exp()),
            Self::GeluTanh => {
                const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
                0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
            }
        }
    }
}

/// The kind of feed-forward block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ffn {
    /// One gated feed-forward (`ffn_gate`, `ffn_up`, `ffn_down`).
    Dense,
    /// A mixture of experts: a router (`ffn_gate_inp`) scores every expert per token,
    /// the softmax's top k run (3-D `ffn_{gate,up,down}_exps`), and their outputs are
    /// summed weighted by their probabilities (renormalised over the k where the model
    /// says so; see [`crate::config::Experts`]).
    Experts,
}

/// Local (sliding-window) attention interleaved with global attention.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlidingWindow {
    /// Every `period`-th layer (the last of each period) attends globally.
    pub period: u32,
    /// RoPE base of the local layers; the global ones use the file's.
    pub local_rope_base: f32,
}

/// One architecture's facts.
#[derive(Debug, PartialEq)]
pub struct Architecture {
    /// `general.architecture` in GGUF files.
    pub gguf_name: &'static str,
    /// `model_type` in Hugging Face and MLX `config.json` files.
    pub hf_model_type: &'static str,
    /// RoPE pairing in GGUF files; Hugging Face checkpoints always rotate halves.
    pub gguf_rope: RopePairs,
    /// Biases on the Q, K and V projections (Qwen2).
    pub qkv_bias: bool,
    /// Per-head RMSNorm of Q and K before RoPE (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// RMSNorm of the attention and feed-forward outputs before each residual add
    /// (Gemma's "sandwich" norms).
    pub sandwich_norms: bool,
    pub activation: Activation,
    /// Embeddings multiplied by √n_embd (Gemma).
    pub scale_embeddings: bool,
    pub sliding_window: Option<SlidingWindow>,
    /// Hugging Face stores this architecture's norm weights as `w − 1` (Gemma);
    /// llama.cpp's converter adds the 1 back into GGUF files.
    pub hf_norm_offset: f32,
    pub ffn: Ffn,
    /// Gemma 3n's block (MatFormer "E" models): AltUp's parallel streams with their
    /// predict and correct steps, per-layer inputs, LAuReL's low-rank residual branch,
    /// a weightless RMSNorm of V, q·k unscaled, KV shared by the last layers, activation
    /// sparsity on the first and soft-capped logits. Their sizes are in
    /// [`crate::config::AltUp`]; the steps in [`crate::altup`].
    pub altup: bool,
}

const LLAMA: Architecture = Architecture {
    gguf_name: "llama",
    hf_model_type: "llama",
    gguf_rope: RopePairs::Adjacent,
    qkv_bias: false,
    qk_norm: false,
    sandwich_norms: false,
    activation: Activation::Silu,
    scale_embeddings: false,
    sliding_window: None,
    hf_norm_offset: 0.0,
    ffn: Ffn::Dense,
    altup: false,
};

/// Every architecture the engines run (a `static`: one address per entry, so an
/// `&'static Architecture` is the entry itself).
pub static ARCHITECTURES: &[Architecture] = &[
    LLAMA,
    Architecture {
        gguf_name: "qwen2",
        hf_model_type: "qwen2",
        gguf_rope: RopePairs::Halves,
        qkv_bias: true,
        ..LLAMA
    },
    Architecture {
        gguf_name: "qwen3",
        hf_model_type: "qwen3",
        gguf_rope: RopePairs::Halves,
        qk_norm: true,
        ..LLAMA
    },
    Architecture {
        gguf_name: "gemma3",
        hf_model_type: "gemma3_text",
        gguf_rope: RopePairs::Halves,
        qk_norm: true,
        sandwich_norms: true,
        activation: Activation::GeluTanh,
        scale_embeddings: true,
        sliding_window: Some(SlidingWindow { period: 6, local_rope_base: 10_000.0 }),
        hf_norm_offset: 1.0,
        ..LLAMA
    },
    Architecture {
        gguf_name: "qwen3moe",
        hf_model_type: "qwen3_moe",
        gguf_rope: RopePairs::Halves,
        qk_norm: true,
        ffn: Ffn::Experts,
        ..LLAMA
    },
    Architecture {
        gguf_name: "gemma3n",
        hf_model_type: "gemma3n_text",
        gguf_rope: RopePairs::Halves,
        qk_norm: true,
        sandwich_norms: true,
        activation: Activation::GeluTanh,
        scale_embeddings: true,
        sliding_window: Some(SlidingWindow { period: 5, local_rope_base: 10_000.0 }),
        altup: true,
        ..LLAMA
    },
];

/// The architecture a GGUF file's `general.architecture` names.
pub fn by_gguf_name(name: &str) -> Option<&'static Architecture> {
    ARCHITECTURES.iter().find(|arch| arch.gguf_name == name)
}

/// The architecture a `config.json`'s `model_type` names.
pub fn by_hf_model_type(name: &str) -> Option<&'static Architecture> {
    ARCHITECTURES.iter().find(|arch| arch.hf_model_type == name)
}

/// The GGUF tensor types the model layer's engines read: enough that Q4_K_M files
/// (Q4_K with Q5_0, Q6_K and Q8_0 tensors) load.
pub const TENSOR_TYPES: [GgmlType; 11] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Bf16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
];

/// The capability entries of a backend that runs the architectures here that `runs`
/// accepts, with tensors of `types` (see `hearth_sdk::helpers::capabilities`).
pub fn capability_features(
    types: &[GgmlType],
    runs: impl Fn(&Architecture) -> bool,
) -> Vec<String> {
    ARCHITECTURES
        .iter()
        .filter(|arch| runs(arch))
        .map(|arch| capabilities::architecture_feature(arch.gguf_name))
        .chain(types.iter().map(|&ty| capabilities::gguf_type_feature(ty)))
        .collect()
}

/// Refuses, as `Unsupported`, an architecture that `engine` does not run (`runs` as it
/// gives it to [`capability_features`]), before any memory is spent.
pub fn check_runs(
    arch: &Architecture,
    engine: &str,
    runs: impl Fn(&Architecture) -> bool,
) -> Result<(), PluginError> {
    if runs(arch) {
        return Ok(());
    }
    let names: Vec<&str> = ARCHITECTURES.iter().filter(|a| runs(a)).map(|a| a.gguf_name).collect();
    Err(PluginError::unsupported(format!(
        "architecture `{}` (the {engine} engine runs {})",
        arch.gguf_name,
        names.join(", ")
    )))
}

/// Every architecture as JSON, for engines that are not written in Rust (the web app's
/// in-page engine reads it from `GET /api/architectures`): the same facts, the same
/// names, and the tensor types the engines read.
pub fn as_json() -> serde_json::Value {
    let architectures: Vec<serde_json::Value> = ARCHITECTURES
        .iter()
        .map(|arch| {
            serde_json::json!({
                "gguf_name": arch.gguf_name,
                "hf_model_type": arch.hf_model_type,
                "gguf_rope": match arch.gguf_rope {
                    RopePairs::Adjacent => "adjacent",
                    RopePairs::Halves => "halves",
                },
                "qkv_bias": arch.qkv_bias,
                "qk_norm": arch.qk_norm,
                "sandwich_norms": arch.sandwich_norms,
                "activation": match arch.activation {
                    Activation::Silu => "silu",
                    Activation::GeluTanh => "gelu_tanh",
                },
                "scale_embeddings": arch.scale_embeddings,
                "sliding_window": arch.sliding_window.map(|window| serde_json::json!({
                    "period": window.period,
                    "local_rope_base": window.local_rope_base,
                })),
                "hf_norm_offset": arch.hf_norm_offset,
                "ffn": match arch.ffn {
                    Ffn::Dense => "dense",
                    Ffn::Experts => "experts",
                },
                "altup": arch.altup,
            })
        })
        .collect();
    let types: Vec<&str> = TENSOR_TYPES.iter().map(|ty| ty.name()).collect();
    serde_json::json!({ "architectures": architectures, "tensor_types": types })
}

/// The GGUF names of every architecture, for messages ("llama, qwen2, qwen3, gemma3").
pub fn gguf_names() -> String {
    ARCHITECTURES.iter().map(|arch| arch.gguf_name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_architecture_is_found_by_both_of_its_names() {
        for arch in ARCHITECTURES {
            assert_eq!(by_gguf_name(arch.gguf_name).unwrap(), arch);
            assert_eq!(by_hf_model_type(arch.hf_model_type).unwrap(), arch);
        }
        assert!(by_gguf_name("qwen3_moe").is_none());
    }

    #[test]
    fn the_json_export_carries_every_architecture_with_its_flags() {
        let json = as_json();
        let exported = json["architectures"].as_array().unwrap();
        assert_eq!(exported.len(), ARCHITECTURES.len());
        let gemma = exported.iter().find(|arch| arch["gguf_name"] == "gemma3").unwrap();
        assert_eq!(gemma["activation"], "gelu_tanh");
        assert_eq!(gemma["gguf_rope"], "halves");
        assert_eq!(gemma["sliding_window"]["period"], 6);
        let llama = &exported[0];
        assert_eq!(llama["gguf_rope"], "adjacent");
        assert!(llama["sliding_window"].is_null());
        assert_eq!(llama["ffn"], "dense");
        let moe = exported.iter().find(|arch| arch["gguf_name"] == "qwen3moe").unwrap();
        assert_eq!(moe["ffn"], "experts");
        assert_eq!(moe["altup"], false);
        let gemma3n = exported.iter().find(|arch| arch["gguf_name"] == "gemma3n").unwrap();
        assert_eq!(gemma3n["altup"], true);
        assert_eq!(gemma3n["sliding_window"]["period"], 5);
        assert!(json["tensor_types"].as_array().unwrap().iter().any(|ty| ty == "Q4_1"));
    }

    #[test]
    fn a_backend_states_only_the_architectures_it_runs() {
        let all = capability_features(&[GgmlType::Q4_0], |_| true);
        let plain = capability_features(&[GgmlType::Q4_0], |arch| !arch.altup);
        let gemma3n = capabilities::architecture_feature("gemma3n");
        assert!(all.contains(&gemma3n) && !plain.contains(&gemma3n));
        assert_eq!(all.len(), plain.len() + 1);
        let error = check_runs(by_gguf_name("gemma3n").unwrap(), "WebGPU", |a| !a.altup)
            .unwrap_err()
            .to_string();
        assert!(error.contains("`gemma3n`") && error.contains("qwen3moe"), "{error}");
        assert!(check_runs(by_gguf_name("gemma3").unwrap(), "WebGPU", |a| !a.altup).is_ok());
    }

    #[test]
    fn gelu_tanh_matches_its_known_values_and_silu_is_x_times_sigmoid() {
        assert!((Activation::GeluTanh.apply(1.0) - 0.841_191_990).abs() < 1e-8);
        assert!(Activation::GeluTanh.apply(-10.0).abs() < 1e-12);
        assert!((Activation::Silu.apply(2.0) - 2.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-15);
    }
}
