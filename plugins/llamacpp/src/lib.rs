//! # hearth-llamacpp — the llama.cpp backend
//!
//! A hearth plugin (id `llamacpp`) that runs GGUF models with llama.cpp, built from
//! source by `llama-cpp-2` with ggml's dynamic backends: every backend is a module loaded
//! at start from the plugin's companion folder, the CPU backend in the best variant this
//! CPU runs (see [`backends`]), and a GPU module found there (`libggml-cuda.so`, …) is
//! used as a built-in one would be: models are then offloaded whole. The cargo features
//! `cuda`, `vulkan` and `metal` build those GPU modules.
//!
//! - **Models** are memory-mapped; the context (KV cache and scratch) is created on the
//!   first request and freed by `trim`. Requests to one model take turns on that
//!   context, or with `HEARTH_LLAMACPP_PARALLEL=N` up to N of them run at once, each in
//!   a sequence of its own, one batched decode per token for all of them (as
//!   llama-server's `--parallel`; `session::parallel_from_env` says what it costs). A
//!   request that shares a prefix with what a free sequence ran before reuses its cache.
//! - **Chats** are rendered with the chat template in the GGUF metadata (else the
//!   family's turn format, else ChatML) by the SDK's renderer, as MLX and WebGPU render
//!   them, so a request is the same prompt on every backend; raw prompts are passed as
//!   they are.
//! - **Sampling** is llama.cpp's sampler chain, in llama-server's order: repeat
//!   penalty, top-k, top-p, min-p, temperature, seeded draw (greedy at temperature 0).
//! - **LoRA**: GGUF adapters are loaded once per model and path, and each request
//!   applies exactly the adapters it names, at its scales.
//! - **Logs**: llama.cpp is silent unless `HEARTH_LLAMACPP_LOG` is set, when it writes
//!   its own log to stderr.

pub mod backends;
mod engine;
mod ffi;
mod model;
mod session;
mod stream;

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

use hearth_sdk::abi_stable::std_types::{RString, RVec};
use hearth_sdk::{
    Backend, BackendInfo, DeviceInfo, DeviceKind, HostProfile, LoadRequest, PluginError, Probe,
    API_VERSION,
};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::{
    list_llama_ggml_backend_devices, LlamaBackendDevice, LlamaBackendDeviceType, LogOptions,
};

pub use model::LlamaModel;

/// Context length used when the request leaves it to the backend and the model was
/// trained on more: a long context costs KV memory on every load.
const DEFAULT_CONTEXT: u32 = 4096;

/// llama.cpp's process-wide state, with the backend modules it was given; it may be
/// initialised only once per process.
fn llama_backend() -> Result<&'static (LlamaBackend, backends::Loaded), PluginError> {
    static BACKEND: OnceLock<Result<(LlamaBackend, backends::Loaded), String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            if std::env::var_os("HEARTH_LLAMACPP_LOG").is_none() {
                // Routed to this library's own `tracing`, which has no subscriber: the
                // host's output stays clean.
                llama_cpp_2::send_logs_to_tracing(LogOptions::default().with_logs_enabled(false));
            }
            let modules = backends::load()?;
            Ok((LlamaBackend::init().map_err(|error| error.to_string())?, modules))
        })
        .as_ref()
        .map_err(|error| PluginError::internal(format!("llama.cpp failed to initialise: {error}")))
}

/// The first four bytes of a file: GGUF files start with `GGUF`.
pub(crate) fn read_magic(path: &Path) -> std::io::Result<[u8; 4]> {
    let mut magic = [0u8; 4];
    File::open(path)?.read_exact(&mut magic)?;
    Ok(magic)
}

fn device_kind(device: &LlamaBackendDevice) -> DeviceKind {
    match device.device_type {
        LlamaBackendDeviceType::Cpu => DeviceKind::Cpu,
        LlamaBackendDeviceType::Gpu => DeviceKind::DiscreteGpu,
        LlamaBackendDeviceType::IntegratedGpu => DeviceKind::IntegratedGpu,
        LlamaBackendDeviceType::Accelerator | LlamaBackendDeviceType::Unknown => DeviceKind::Other,
    }
}

/// The llama.cpp backend.
pub struct LlamaCppBackend;

impl LlamaCppBackend {
    /// The constructor the export macro calls.
    pub fn new() -> Result<Self, PluginError> {
        llama_backend()?;
        Ok(Self)
    }

    /// Where the model's layers go: the requested device, or llama.cpp's choice.
    fn placement(request: &LoadRequest) -> Result<(ffi::Placement, bool), PluginError> {
        let devices = list_llama_ggml_backend_devices();
        // Only GPUs take layers; other ggml devices (BLAS, …) work on host memory.
        let accelerated = |device: &LlamaBackendDevice| device_kind(device).is_accelerator();
        let Some(wanted) = request.device.as_ref().into_option() else {
            return Ok((ffi::Placement::Auto, devices.iter().any(accelerated)));
        };
        let device = devices
            .iter()
            .find(|device| {
                device.name.eq_ignore_ascii_case(wanted) || device.description == wanted.as_str()
            })
            .ok_or_else(|| {
                let names: Vec<&str> = devices.iter().map(|device| device.name.as_str()).collect();
                PluginError::invalid_request(format!(
                    "no llama.cpp device `{wanted}`; it has {}",
                    names.join(", ")
                ))
            })?;
        if !accelerated(device) {
            return Ok((ffi::Placement::Cpu, false));
        }
        // SAFETY: the index comes from the current device list.
        let handle = unsafe { llama_cpp_sys_2::ggml_backend_dev_get(device.index) };
        Ok((ffi::Placement::Device(handle), true))
    }
}

impl Backend for LlamaCppBackend {
    fn info(&self) -> BackendInfo {
        let features = ["lora", "chat-template", "prefix-cache"].into_iter().chain(
            // Offloading is there when a GPU module was loaded.
            list_llama_ggml_backend_devices()
                .iter()
                .any(|device| device_kind(device).is_accelerator())
                .then_some("gpu-offload"),
        );
        BackendInfo {
            id: "llamacpp".into(),
            name: "llama.cpp".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: API_VERSION,
            formats: RVec::from(vec![RString::from("gguf")]),
            features: features.map(RString::from).collect(),
        }
    }

    fn probe(&self, host: &HostProfile) -> Probe {
        let devices: Vec<DeviceInfo> = list_llama_ggml_backend_devices()
            .iter()
            .map(|device| {
                let kind = device_kind(device);
                // ggml reports the CPU's memory as the host's; the host's own figures
                // are the ones routing compares against.
                let (total, free) = if kind == DeviceKind::Cpu {
                    (host.ram_total_bytes, host.ram_available_bytes)
                } else {
                    (device.memory_total as u64, device.memory_free as u64)
                };
                DeviceInfo {
                    kind,
                    name: device.name.as_str().into(),
                    memory_total_bytes: total,
                    memory_free_bytes: free,
                }
            })
            .collect();
        let reason = devices
            .iter()
            .map(|device| format!("{} ({})", device.name, device.kind.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let modules = match llama_backend() {
            Ok((_, modules)) => format!("; {}", modules.describe()),
            Err(_) => String::new(),
        };
        Probe {
            available: true,
            devices: devices.into(),
            reason: format!("llama.cpp devices: {reason}{modules}").into(),
        }
    }

    fn load(&self, request: &LoadRequest) -> Result<Box<dyn hearth_sdk::Model>, PluginError> {
        llama_backend()?;
        let id = request.model_id.to_string();
        let path =
            request.paths.first().map(|path| Path::new(path.as_str())).ok_or_else(|| {
                PluginError::invalid_request(format!("no file given for model {id}"))
            })?;
        if !request.format.is_empty() && !request.format.eq_ignore_ascii_case("gguf") {
            return Err(PluginError::unsupported(format!(
                "llama.cpp loads GGUF, not {}",
                request.format
            )));
        }
        let magic = read_magic(path)
            .map_err(|error| PluginError::model_file(format!("{}: {error}", path.display())))?;
        if &magic != b"GGUF" {
            return Err(PluginError::model_file(format!("{} is not a GGUF file", path.display())));
        }
        let (placement, on_device) = Self::placement(request)?;
        let weights = ffi::RawModel::load(path, &placement).ok_or_else(|| {
            PluginError::model_file(format!(
                "llama.cpp could not load {} (truncated, corrupt, or an architecture it does not know)",
                path.display()
            ))
        })?;
        let trained = weights.train_context();
        let context_size = match request.context_size {
            0 if trained > 0 => trained.min(DEFAULT_CONTEXT),
            0 => DEFAULT_CONTEXT,
            wanted => wanted,
        };
        let threads = match request.threads {
            0 => num_cpus::get_physical(),
            threads => threads as usize,
        };
        let threads = i32::try_from(threads).unwrap_or(i32::MAX);
        Ok(Box::new(LlamaModel::new(
            weights,
            id,
            context_size,
            session::parallel_from_env()?,
            threads,
            on_device,
        )?))
    }
}

hearth_sdk::export_backend!(LlamaCppBackend::new);
