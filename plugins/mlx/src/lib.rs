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
        // The library the loader picked (see build.rs for how the plugin comes to link the
        // CUDA build where setup found a usable one), not the folder it was built against.
        let library = match ffi::library_path() {
            Ok(path) => path.display().to_string(),
            Err(error) => format!("an unknown file ({})", error.message),
        };
        let mut notes = String::new();
        let device = if ffi::gpu_available() {
            let info = ffi::gpu_device_info().unwrap_or_else(|error| {
                notes = format!("; no device details: {}", error.message);
                ffi::GpuDeviceInfo {
                    name: String::new(),
                    total_memory: 0,
                    free_memory: 0,
                    recommended_working_set: 0,
                }
            });
            gpu_device(host.apple_silicon, &info)
        } else {
            DeviceInfo {
                kind: DeviceKind::Cpu,
                name: format!("MLX CPU ({})", host.cpu_brand).into(),
                memory_total_bytes: host.ram_total_bytes,
                memory_free_bytes: host.ram_available_bytes,
            }
        };
        let reason = format!("libmlx from {library}; default device: {}{notes}", device.name);
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

/// The GPU as MLX describes it. Metal on Apple Silicon shares the system's memory: what
/// MLX may keep resident there is the recommended working set, which stands for both
/// figures (Metal gives no free one). CUDA builds drive a discrete GPU and report its
/// total and free memory (NVML's system-wide figures where the driver has NVML).
fn gpu_device(apple_silicon: bool, info: &ffi::GpuDeviceInfo) -> DeviceInfo {
    let (kind, backend, total, free) = if apple_silicon {
        let total = if info.recommended_working_set > 0 {
            info.recommended_working_set
        } else {
            info.total_memory
        };
        (DeviceKind::IntegratedGpu, "Metal", total, total)
    } else {
        (DeviceKind::DiscreteGpu, "CUDA", info.total_memory, info.free_memory)
    };
    let name = if info.name.is_empty() {
        format!("MLX {backend} GPU")
    } else {
        format!("MLX {backend} GPU ({})", info.name)
    };
    DeviceInfo {
        kind,
        name: name.into(),
        memory_total_bytes: total as u64,
        memory_free_bytes: free as u64,
    }
}

hearth_sdk::export_backend!(MlxBackend::new);

#[cfg(test)]
mod tests {
    use super::*;

    fn info(total: usize, free: usize, working_set: usize) -> ffi::GpuDeviceInfo {
        ffi::GpuDeviceInfo {
            name: "Some GPU".into(),
            total_memory: total,
            free_memory: free,
            recommended_working_set: working_set,
        }
    }

    #[test]
    fn a_cuda_gpu_reports_its_total_and_free_memory() {
        let device = gpu_device(false, &info(80 << 30, 79 << 30, 0));
        assert_eq!(device.kind, DeviceKind::DiscreteGpu);
        assert_eq!((device.memory_total_bytes, device.memory_free_bytes), (80 << 30, 79 << 30));
        assert_eq!(device.name.as_str(), "MLX CUDA GPU (Some GPU)");
    }

    #[test]
    fn a_metal_gpu_reports_the_recommended_working_set_else_the_memory_size() {
        let device = gpu_device(true, &info(64 << 30, 0, 48 << 30));
        assert_eq!(device.kind, DeviceKind::IntegratedGpu);
        assert_eq!((device.memory_total_bytes, device.memory_free_bytes), (48 << 30, 48 << 30));
        let device = gpu_device(true, &info(64 << 30, 0, 0));
        assert_eq!(device.memory_total_bytes, 64 << 30);
    }

    #[test]
    fn a_gpu_without_a_name_is_named_by_its_backend() {
        let unnamed = ffi::GpuDeviceInfo { name: String::new(), ..info(1, 1, 0) };
        assert_eq!(gpu_device(false, &unnamed).name.as_str(), "MLX CUDA GPU");
    }

    /// The file the loader mapped, checked against the process's own map rather than
    /// against the build's folder: the two differ when LD_LIBRARY_PATH or a preload
    /// supplies another libmlx.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_library_path_is_the_libmlx_this_process_mapped() {
        let path = ffi::library_path().expect("libmlx's path");
        assert!(path.is_absolute(), "{}", path.display());
        assert!(
            path.file_name().unwrap().to_string_lossy().starts_with("libmlx"),
            "{}",
            path.display()
        );
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let mapped = maps
            .lines()
            .filter_map(|line| line.split_whitespace().nth(5))
            .filter_map(|file| std::fs::canonicalize(file).ok())
            .any(|file| file == path);
        assert!(mapped, "{} is not among this process's mappings", path.display());
    }
}
