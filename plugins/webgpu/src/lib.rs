//! # hearth-webgpu — a hearth backend on wgpu
//!
//! Runs GGUF models of every architecture the model layer describes ([`hearth_model`]:
//! Llama/SmolLM2, Qwen2, Qwen3, Gemma 3, Qwen3-MoE, Gemma 3n) with WGSL compute kernels
//! on whatever adapter wgpu finds: Vulkan, Metal, DX12 or GL, or Mesa's lavapipe on the
//! CPU. Weights stay in their GGUF encoding ([`kernels::SUPPORTED_TYPES`]) on the device
//! and are decoded inside the matrix kernels; the KV cache lives on the device, in f16 where
//! the device has it ([`cache`]). The generation loop is
//! the model layer's; capabilities (architectures, tensor types) are stated in
//! [`BackendInfo::features`] so the host skips files this backend cannot run.
//! Tokenizer, chat template, sampling and stop strings come from
//! [`hearth_sdk::helpers`]. GGUF LoRA adapters (llama.cpp's format) apply per request
//! with a scale.
//!
//! Modules: [`device`] (adapter, probe, counted buffers), [`plan`] (which kernels an
//! adapter gets), [`cache`] (the KV cache's element type), [`kernels`] (pipelines), [`batch`] (recording and submitting
//! dispatches), [`products`] (the matrix products a batch records), [`experts`]
//! (mixture-of-experts routing and routed products), [`altup`] (Gemma 3n's block),
//! [`weights`] (model shape and upload), [`lora`] (LoRA adapters), [`forward`] (the
//! transformer), [`model`] (generation and lifecycle), [`profile`] (GPU time per
//! kernel, on request).

pub mod altup;
pub mod batch;
pub mod cache;
pub mod device;
pub mod experts;
pub mod forward;
pub mod kernels;
pub mod lora;
pub mod memory;
pub mod model;
pub mod plan;
pub mod products;
pub mod profile;
pub mod quantized;
pub mod weights;

use hearth_sdk::abi_stable::std_types::{RString, RVec};
use hearth_sdk::{
    feature, Backend, BackendInfo, HostProfile, LoadRequest, Model, PluginError, Probe, API_VERSION,
};

/// The WebGPU backend. Holds nothing: each model opens its own device, so dropping a
/// model returns everything it used.
pub struct WebGpuBackend;

impl WebGpuBackend {
    pub fn new() -> Result<Self, PluginError> {
        Ok(Self)
    }
}

/// The model layer's architectures this engine runs: all of them.
pub fn runs(_arch: &hearth_model::Architecture) -> bool {
    true
}

impl Backend for WebGpuBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            id: "webgpu".into(),
            name: "WebGPU (wgpu)".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: API_VERSION,
            formats: RVec::from(vec![RString::from("gguf")]),
            features: std::iter::once(feature::LORA)
                .chain(hearth_model::generate::FEATURES.iter().copied())
                .map(str::to_string)
                .chain(hearth_model::arch::capability_features(&kernels::SUPPORTED_TYPES, runs))
                .map(RString::from)
                .collect(),
        }
    }

    fn probe(&self, _host: &HostProfile) -> Probe {
        device::probe()
    }

    fn load(&self, request: &LoadRequest) -> Result<Box<dyn Model>, PluginError> {
        if request.format.as_str() != "gguf" {
            return Err(PluginError::unsupported(format!(
                "format `{}` (the WebGPU backend reads gguf)",
                request.format
            )));
        }
        let path = request
            .paths
            .first()
            .ok_or_else(|| PluginError::invalid_request("no model file given"))?;
        Ok(Box::new(model::WebGpuModel::load(path.as_str(), request.context_size)?))
    }
}

hearth_sdk::export_backend!(WebGpuBackend::new);
