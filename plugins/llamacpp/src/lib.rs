//! # hearth-llamacpp — the llama.cpp backend
//!
//! A hearth plugin (id `llamacpp`) that runs GGUF models with llama.cpp, built from
//! source by `llama-cpp-2` with ggml's dynamic backends: every backend is a module loaded
//! at start from the plugin's companion folder, the CPU backend in the best variant this
//! CPU runs (see [`backends`]), and every GPU module found there (`libggml-vulkan.so`,
//! `libggml-cuda.so`, which setup builds where their toolkits are) is used as a
//! built-in one would be. The devices a model runs on are the request's (`--device`, by
//! the names `hearth plugins` lists: `Vulkan0`, `CUDA0,CUDA1`; `none` for the CPU
//! alone), else every GPU, a card two modules see counted once: as many layers as fit in
//! their free memory go there (llama.cpp's fit), the rest stay on the CPU. Vulkan's
//! software renderers (lavapipe) are listed but used only when named (see `vulkan.rs`).
//! Other machines' devices join on ggml's RPC protocol (`--rpc`, see [`rpc`]), and
//! `hearth rpc-server` runs this build's RPC server there.
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
//!   Plain greedy decoding without log-probabilities takes the largest logit on the host
//!   in one pass, or on a GPU that computes the logits picks it there (`device_greedy`),
//!   so the vocabulary's logits never cross to the host.
//! - **LoRA**: GGUF adapters are loaded once per model and path, and each request
//!   applies exactly the adapters it names, at its scales.
//! - **Logs**: llama.cpp is silent unless `HEARTH_LLAMACPP_LOG` is set, when it writes
//!   its own log to stderr.

pub mod backends;
mod device_greedy;
mod embed;
mod engine;
mod ffi;
mod model;
pub mod rpc;
mod sampler;
mod session;
mod stream;
mod vulkan;

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

use hearth_sdk::abi_stable::std_types::{RString, RVec};
use hearth_sdk::{
    feature, Backend, BackendInfo, DeviceInfo, DeviceKind, HostProfile, LoadRequest, PluginError,
    Probe, SplitMode, API_VERSION,
};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::{
    list_llama_ggml_backend_devices, LlamaBackendDevice, LlamaBackendDeviceType, LogOptions,
};

pub use model::LlamaModel;

/// Context length used when the request leaves it to the backend and the model was
/// trained on more: a long context costs KV memory on every load.
const DEFAULT_CONTEXT: u32 = 4096;

/// Memory left free on every GPU when sizing the offload, in MiB (llama.cpp's
/// `--fit-target`, whose default this is): room for other programs and the driver.
const FIT_TARGET_VARIABLE: &str = "HEARTH_LLAMACPP_FIT_TARGET_MIB";
const DEFAULT_FIT_TARGET_MIB: usize = 1024;

fn fit_target_from_env() -> Result<usize, PluginError> {
    let mib = match std::env::var(FIT_TARGET_VARIABLE) {
        Err(_) => DEFAULT_FIT_TARGET_MIB,
        Ok(text) => text.trim().parse::<usize>().map_err(|_| {
            PluginError::invalid_request(format!(
                "{FIT_TARGET_VARIABLE}={text:?}: expected the MiB to keep free on each GPU"
            ))
        })?,
    };
    Ok(mib.saturating_mul(1024 * 1024))
}

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

/// A device's kind; `software` names Vulkan's software renderers, which ggml calls GPUs.
fn device_kind(device: &LlamaBackendDevice, software: &[String]) -> DeviceKind {
    match device.device_type {
        LlamaBackendDeviceType::Cpu => DeviceKind::Cpu,
        _ if rpc::is_remote(&device.backend) => DeviceKind::Remote,
        _ if device.backend == "Vulkan" && software.contains(&device.description) => {
            DeviceKind::SoftwareGpu
        }
        LlamaBackendDeviceType::Gpu => DeviceKind::DiscreteGpu,
        LlamaBackendDeviceType::IntegratedGpu => DeviceKind::IntegratedGpu,
        LlamaBackendDeviceType::Accelerator | LlamaBackendDeviceType::Unknown => DeviceKind::Other,
    }
}

/// One device llama.cpp has.
pub(crate) struct Device {
    pub(crate) device: LlamaBackendDevice,
    pub(crate) kind: DeviceKind,
    /// The device listed earlier that is the same GPU (by its PCI id), seen through
    /// another module: an NVIDIA card is CUDA0 and Vulkan0 when both modules are
    /// installed. It takes layers only when named, as llama.cpp's own default skips it.
    pub(crate) same_as: Option<String>,
}

/// The devices llama.cpp has, in its order: modules register alphabetically (see
/// `backends`), so CUDA's devices come before Vulkan's and win a GPU both see.
pub(crate) fn devices() -> Vec<Device> {
    let software = llama_backend().map_or(&[][..], |(_, modules)| &modules.software_devices[..]);
    let listed: Vec<(LlamaBackendDevice, DeviceKind)> = list_llama_ggml_backend_devices()
        .into_iter()
        .map(|device| {
            let kind = device_kind(&device, software);
            (device, kind)
        })
        .collect();
    let ids: Vec<Option<String>> = listed
        .iter()
        .map(|(device, kind)| kind.is_accelerator().then(|| pci_id(device)).flatten())
        .collect();
    let names: Vec<String> = listed.iter().map(|(device, _)| device.name.clone()).collect();
    listed
        .into_iter()
        .zip(first_with_the_same_id(&ids))
        .map(|((device, kind), same)| Device {
            device,
            kind,
            same_as: same.map(|at| names[at].clone()),
        })
        .collect()
}

/// For each id, the index of the first earlier entry with the same id.
fn first_with_the_same_id(ids: &[Option<String>]) -> Vec<Option<usize>> {
    ids.iter()
        .enumerate()
        .map(|(at, id)| {
            id.as_ref().and_then(|id| ids[..at].iter().position(|other| other.as_ref() == Some(id)))
        })
        .collect()
}

/// The device's PCI id as ggml reports it, where its module does.
fn pci_id(device: &LlamaBackendDevice) -> Option<String> {
    // SAFETY: the index comes from the current device list; ggml fills `props` with
    // strings it owns for as long as the device exists.
    unsafe {
        let handle = llama_cpp_sys_2::ggml_backend_dev_get(device.index);
        let mut props = std::mem::zeroed::<llama_cpp_sys_2::ggml_backend_dev_props>();
        llama_cpp_sys_2::ggml_backend_dev_get_props(handle, &mut props);
        (!props.device_id.is_null())
            .then(|| std::ffi::CStr::from_ptr(props.device_id).to_string_lossy().into_owned())
    }
}

/// The request's device meaning "the CPU alone", as llama-server's `--device none`.
const NO_DEVICE: &str = "none";

/// Whether `name` names the device (or its description does, as Vulkan names a card).
fn is_named(device: &Device, name: &str) -> bool {
    device.device.name.eq_ignore_ascii_case(name) || device.device.description == name
}

/// The device listed by `name`.
pub(crate) fn named_device<'a>(devices: &'a [Device], name: &str) -> Option<&'a Device> {
    devices.iter().find(|device| is_named(device, name))
}

/// The refusal of a device name no device has, naming those there are; `hint` follows.
pub(crate) fn no_such_device(devices: &[Device], name: &str, hint: &str) -> PluginError {
    let names: Vec<&str> = devices.iter().map(|device| device.device.name.as_str()).collect();
    PluginError::invalid_request(format!(
        "no llama.cpp device `{name}`; it has {}{hint}",
        names.join(", ")
    ))
}

/// The llama.cpp backend.
pub struct LlamaCppBackend;

impl LlamaCppBackend {
    /// The constructor the export macro calls.
    pub fn new() -> Result<Self, PluginError> {
        llama_backend()?;
        Ok(Self)
    }

    /// Where the model's layers go: the requested devices, else every GPU; divided as
    /// the request's split mode says.
    fn placement(request: &LoadRequest) -> Result<ffi::Placement, PluginError> {
        let devices = devices();
        let chosen = match request.device.as_ref().into_option() {
            // Software renderers only when named: the CPU backend is faster on the
            // same cores.
            None => devices
                .iter()
                .filter(|device| device.kind.is_accelerator() && device.same_as.is_none())
                .collect(),
            Some(wanted) if wanted.eq_ignore_ascii_case(NO_DEVICE) => Vec::new(),
            // A list (`CUDA0,CUDA1`) divides the model between its devices, as
            // llama-server's `--device`.
            Some(wanted) => {
                let mut chosen: Vec<&Device> = Vec::new();
                for name in wanted.split(',').map(str::trim) {
                    let device = named_device(&devices, name).ok_or_else(|| {
                        no_such_device(
                            &devices,
                            name,
                            &format!(" (or `{NO_DEVICE}` for the CPU alone)"),
                        )
                    })?;
                    // Only GPUs take layers; other ggml devices (BLAS, …) work on host
                    // memory.
                    let takes_layers = !matches!(device.kind, DeviceKind::Cpu | DeviceKind::Other);
                    if takes_layers
                        && !chosen.iter().any(|seen| seen.device.index == device.device.index)
                    {
                        chosen.push(device);
                    }
                }
                chosen
            }
        };
        split(&chosen, request.split_mode, request.main_device.as_ref().into_option())
    }
}

/// How `chosen` (in order) share a model under `mode`, with `main` the device that
/// holds what is not divided (the first when unnamed).
fn split(
    chosen: &[&Device],
    mode: SplitMode,
    main: Option<&RString>,
) -> Result<ffi::Placement, PluginError> {
    if main.is_some() && mode == SplitMode::Layer {
        return Err(PluginError::invalid_request(
            "a main device is for split modes `row` and `none`; with `layer` every device \
             holds whole layers",
        ));
    }
    let main = match main {
        None => 0,
        Some(name) => chosen.iter().position(|device| is_named(device, name)).ok_or_else(|| {
            let names: Vec<&str> =
                chosen.iter().map(|device| device.device.name.as_str()).collect();
            PluginError::invalid_request(format!(
                "the main device `{name}` is not one the model runs on ({})",
                if names.is_empty() { "the CPU alone".to_string() } else { names.join(", ") }
            ))
        })?,
    };
    if chosen.is_empty() {
        return Ok(ffi::Placement::Cpu);
    }
    // SAFETY: the indices come from the current device list.
    let handle =
        |device: &Device| unsafe { llama_cpp_sys_2::ggml_backend_dev_get(device.device.index) };
    Ok(match mode {
        SplitMode::None => {
            ffi::Placement::Devices { devices: vec![handle(chosen[main])], row: false, main: 0 }
        }
        SplitMode::Row => {
            if let Some(device) = chosen.iter().find(|device| !ffi::splits_rows(handle(device))) {
                return Err(PluginError::invalid_request(format!(
                    "split mode `row` needs devices whose ggml module has split buffers; {} \
                     ({}) has none in this llama.cpp build, so use `layer`",
                    device.device.name, device.device.backend
                )));
            }
            ffi::Placement::Devices {
                devices: chosen.iter().map(|device| handle(device)).collect(),
                row: true,
                main,
            }
        }
        _ => ffi::Placement::Devices {
            devices: chosen.iter().map(|device| handle(device)).collect(),
            row: false,
            main: 0,
        },
    })
}

impl Backend for LlamaCppBackend {
    fn info(&self) -> BackendInfo {
        let features = [
            feature::LORA,
            feature::CHAT_TEMPLATE,
            feature::PREFIX_CACHE,
            feature::LOGPROBS,
            feature::PRESENCE_FREQUENCY_PENALTIES,
            feature::LOGIT_BIAS,
            feature::TOKENIZE,
            feature::EMBEDDINGS,
            feature::GRAMMAR,
            feature::TOOLS,
        ]
        .into_iter()
        .chain(
            // Offloading is there when a GPU module was loaded.
            devices().iter().any(|device| device.kind.is_accelerator()).then_some("gpu-offload"),
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
        // Servers that cannot join are said why; the local devices still serve.
        let rpc = match rpc::join_from_env() {
            Ok(()) => String::new(),
            Err(error) => format!("; {}", error.message),
        };
        let devices = devices();
        let infos: Vec<DeviceInfo> = devices
            .iter()
            .map(|Device { device, kind, .. }| {
                // ggml reports the CPU's memory as the host's; the host's own figures
                // are the ones routing compares against.
                let (total, free) = if *kind == DeviceKind::Cpu {
                    (host.ram_total_bytes, host.ram_available_bytes)
                } else {
                    (device.memory_total as u64, device.memory_free as u64)
                };
                DeviceInfo {
                    kind: *kind,
                    name: device.name.as_str().into(),
                    memory_total_bytes: total,
                    memory_free_bytes: free,
                }
            })
            .collect();
        let listed = devices
            .iter()
            .map(|Device { device, kind, same_as }| match (*kind, same_as) {
                (_, Some(other)) => format!(
                    "{} = {} ({}, the same GPU as {other}: used only when asked for by name)",
                    device.name,
                    device.description,
                    kind.as_str()
                ),
                (DeviceKind::Cpu, _) => format!("{} ({})", device.name, kind.as_str()),
                (DeviceKind::Remote, _) => {
                    format!("{} = {} (remote, on ggml's RPC)", device.name, device.description)
                }
                (DeviceKind::SoftwareGpu, _) => format!(
                    "{} = {} ({}, used only when asked for by name)",
                    device.name,
                    device.description,
                    kind.as_str()
                ),
                _ => format!("{} = {} ({})", device.name, device.description, kind.as_str()),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let modules = match llama_backend() {
            Ok((_, modules)) => format!("; {}", modules.describe()),
            Err(_) => String::new(),
        };
        Probe {
            available: true,
            devices: infos.into(),
            reason: format!("llama.cpp devices: {listed}{modules}{rpc}").into(),
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
        rpc::join_from_env()?;
        let placement = Self::placement(request)?;
        let on_rpc = match &placement {
            ffi::Placement::Devices { devices, .. } => {
                devices.iter().any(|&device| rpc::is_remote_device(device))
            }
            ffi::Placement::Cpu => false,
        };
        let fit = ffi::FitTarget {
            context_size: match request.context_size {
                0 => DEFAULT_CONTEXT,
                wanted => wanted,
            },
            keep_free_bytes: fit_target_from_env()?,
        };
        let (weights, offload) = ffi::RawModel::load(path, &placement, &fit).ok_or_else(|| {
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
            offload,
            on_rpc.then(rpc::RpcHold::acquire),
        )?))
    }
}

hearth_sdk::export_backend!(LlamaCppBackend::new);

#[cfg(test)]
mod tests {
    use super::first_with_the_same_id;

    #[test]
    fn a_gpu_seen_through_a_second_module_points_to_its_first_listing() {
        let id = |text: &str| Some(text.to_string());
        // CPU, CUDA0 and CUDA1, then Vulkan0 and Vulkan1 on the same two cards, and a
        // device whose module reports no id.
        let ids = [
            None,
            id("0000:01:00.0"),
            id("0000:02:00.0"),
            id("0000:01:00.0"),
            id("0000:02:00.0"),
            None,
        ];
        assert_eq!(first_with_the_same_id(&ids), [None, None, None, Some(1), Some(2), None]);
    }
}
