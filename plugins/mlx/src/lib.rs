//! # hearth-mlx — a hearth backend on MLX
//!
//! Runs models of every architecture the model layer describes ([`hearth_model`]:
//! Llama/SmolLM2, Qwen2, Qwen3, Gemma 3), from GGUF files or MLX-format safetensors
//! folders ([`mlx_format`]), on Apple's MLX: on the CPU with
//! the `mlx-cpu` build of libmlx, on NVIDIA GPUs with `mlx-cuda-13`, on Apple Silicon
//! with `mlx-metal`. libmlx is reached through a thin [cxx] bridge ([`ffi`]); the model
//! itself is Rust ([`forward`]). `mx::load_gguf` reads the weights of files it
//! decodes (F32, F16, Q4_0, Q4_1, Q8_0), [`gguf_tensors`] those of files with other
//! common types (BF16, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K), the block formats as MLX 4-, 5-
//! and 8-bit quantized weights where they map exactly; anything else is refused at
//! load as `Unsupported`, so the router falls back to another backend. Capabilities
//! (architectures, tensor types) are stated in [`BackendInfo::features`] so the host
//! skips such files before a load. The generation loop, tokenizer and chat template
//! are the model layer's; GGUF LoRA adapters apply per request ([`lora`]).
//!
//! Modules: [`ffi`] (the bridge and the [`ffi::Array`] type), [`weights`] (model shape
//! and loading), [`mlx_format`] (MLX-format folders), [`forward`] (the transformer and KV cache), [`lora`] (adapters),
//! [`model`] (generation and lifecycle).

mod altup;
pub mod ffi;
pub mod forward;
pub mod gguf_tensors;
pub mod lora;
pub mod mlx_format;
pub mod model;
pub mod weights;

use hearth_sdk::abi_stable::std_types::{RString, RVec};
use hearth_sdk::{
    feature, Backend, BackendInfo, DeviceInfo, DeviceKind, HostProfile, LoadRequest, Model,
    PluginError, Probe, API_VERSION,
};

/// The MLX backend. Holds nothing: each model owns its arrays, so dropping a model
/// returns them to MLX.
pub struct MlxBackend;

impl MlxBackend {
    pub fn new() -> Result<Self, PluginError> {
        Ok(Self)
    }
}

/// The model layer's architectures this engine runs: all of them.
pub fn runs(_arch: &hearth_model::Architecture) -> bool {
    true
}

impl Backend for MlxBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            id: "mlx".into(),
            name: "MLX".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: API_VERSION,
            formats: RVec::from(vec![RString::from("gguf"), RString::from("safetensors")]),
            features: std::iter::once(feature::LORA)
                .chain(hearth_model::generate::FEATURES.iter().copied())
                .map(str::to_string)
                .chain(hearth_model::arch::capability_features(&weights::SUPPORTED_TYPES, runs))
                .map(RString::from)
                .collect(),
        }
    }

    fn probe(&self, host: &HostProfile) -> Probe {
        let library = env!("HEARTH_MLX_LIB_DIR");
        let device = if ffi::gpu_available() {
            // Metal on Apple Silicon shares the system memory; CUDA builds drive a discrete GPU.
            let (kind, name) = if host.apple_silicon {
                (DeviceKind::IntegratedGpu, "MLX Metal GPU")
            } else {
                (DeviceKind::DiscreteGpu, "MLX CUDA GPU")
            };
            DeviceInfo { kind, name: name.into(), memory_total_bytes: 0, memory_free_bytes: 0 }
        } else {
            DeviceInfo {
                kind: DeviceKind::Cpu,
                name: format!("MLX CPU ({})", host.cpu_brand).into(),
                memory_total_bytes: host.ram_total_bytes,
                memory_free_bytes: host.ram_available_bytes,
            }
        };
        let reason = format!("libmlx from {library}; default device: {}", device.name);
        Probe { available: true, devices: RVec::from(vec![device]), reason: reason.into() }
    }

    fn load(&self, request: &LoadRequest) -> Result<Box<dyn Model>, PluginError> {
        let path = request
            .paths
            .first()
            .ok_or_else(|| PluginError::invalid_request("no model file given"))?;
        let model = match request.format.as_str() {
            "gguf" => model::MlxModel::load(path.as_str(), request.context_size)?,
            // An MLX-format folder, or one of its weight files (what a catalog artifact names).
            "safetensors" => model::MlxModel::load_mlx(path.as_str(), request.context_size)?,
            other => {
                return Err(PluginError::unsupported(format!(
                    "format `{other}` (the MLX backend reads gguf and safetensors)"
                )))
            }
        };
        Ok(Box::new(model))
    }
}

hearth_sdk::export_backend!(MlxBackend::new);
