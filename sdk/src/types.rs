//! Plain data that crosses the plugin boundary: requests, answers, profiles.
//!
//! Every type is `#[repr(C)]` and derives `StableAbi`, so abi_stable checks at load
//! time that host and plugin agree on its layout; a plugin built against a different
//! layout is refused with a named reason instead of corrupting memory.

use abi_stable::{
    std_types::{ROption, RString, RVec},
    StableAbi,
};

/// Semantic version of the hearth plugin API, separate from the crate version.
///
/// The host accepts a plugin whose `major` equals its own and whose `minor` is not
/// newer than its own.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

/// The API version this SDK implements.
pub const API_VERSION: ApiVersion = ApiVersion { major: 1, minor: 0 };

/// Who a backend is and what it can read.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct BackendInfo {
    /// Stable routing id, e.g. `llamacpp`, `mlx`, `webgpu`.
    pub id: RString,
    /// Human-readable name, e.g. `llama.cpp`.
    pub name: RString,
    /// The plugin's own version.
    pub version: RString,
    /// The plugin API version it was built against.
    pub api_version: ApiVersion,
    /// Model formats it loads, e.g. `gguf`, `safetensors`.
    pub formats: RVec<RString>,
    /// Optional features, e.g. `lora`, `gpu-offload`, `chat-template`.
    pub features: RVec<RString>,
}

/// The machine as the host sees it, handed to every plugin's probe.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Default)]
pub struct HostProfile {
    pub os: RString,
    pub arch: RString,
    pub cpu_brand: RString,
    pub cpu_cores: u32,
    pub cpu_features: RVec<RString>,
    pub ram_total_bytes: u64,
    pub ram_available_bytes: u64,
    pub apple_silicon: bool,
}

/// The kind of compute device a backend can run on.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    DiscreteGpu,
    IntegratedGpu,
    VirtualGpu,
    /// A GPU API implemented in software on the CPU (e.g. lavapipe): correct, not fast.
    SoftwareGpu,
    Other,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::DiscreteGpu => "discrete-gpu",
            DeviceKind::IntegratedGpu => "integrated-gpu",
            DeviceKind::VirtualGpu => "virtual-gpu",
            DeviceKind::SoftwareGpu => "software-gpu",
            DeviceKind::Other => "other",
        }
    }

    /// True for real accelerators, the ones routing prefers over the CPU.
    pub fn is_accelerator(self) -> bool {
        matches!(self, DeviceKind::DiscreteGpu | DeviceKind::IntegratedGpu | DeviceKind::VirtualGpu)
    }
}

/// One device a backend can use. Memory figures are 0 where the platform hides them.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    pub kind: DeviceKind,
    pub name: RString,
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
}

/// What a backend found on this machine.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct Probe {
    pub available: bool,
    pub devices: RVec<DeviceInfo>,
    /// Why the backend is unavailable, or notes about what it found.
    pub reason: RString,
}

/// Everything a backend needs to load one model.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct LoadRequest {
    /// The catalog id of the model, for logs and errors.
    pub model_id: RString,
    /// Absolute paths of the model's files; the first is the main file.
    pub paths: RVec<RString>,
    /// The artifact format, e.g. `gguf`.
    pub format: RString,
    /// Context window in tokens; 0 lets the backend choose.
    pub context_size: u32,
    /// CPU threads; 0 lets the backend choose.
    pub threads: u32,
    /// A device name from the probe to pin the model to; none lets the backend choose.
    pub device: ROption<RString>,
}

/// One message of a chat.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: RString,
    pub content: RString,
}

/// Sampling parameters. `temperature <= 0` means greedy decoding.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub temperature: f32,
    /// 0 disables top-k.
    pub top_k: u32,
    /// 1.0 disables top-p.
    pub top_p: f32,
    /// 0.0 disables min-p.
    pub min_p: f32,
    /// 1.0 disables the repeat penalty.
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty looks at.
    pub repeat_last_n: u32,
    pub seed: u64,
}

impl Default for Sampling {
    /// llama-server's defaults, so the same request behaves the same across runtimes.
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

/// A LoRA adapter applied to one request.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct AdapterUse {
    /// The catalog name, used as the plugin's cache key.
    pub name: RString,
    /// Absolute path of the adapter file.
    pub path: RString,
    /// 0.0 turns the adapter off; 1.0 is full strength.
    pub scale: f32,
}

/// One generation: a chat (`messages`) or a raw completion (`prompt`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// The chat, rendered with the model's chat template. Ignored when `prompt` is set.
    pub messages: RVec<ChatMessage>,
    /// A raw prompt, passed to the model without any template.
    pub prompt: ROption<RString>,
    pub sampling: Sampling,
    /// Generation stops before any of these strings; they are not emitted.
    pub stop: RVec<RString>,
    /// Upper bound on generated tokens.
    pub max_tokens: u32,
    pub adapters: RVec<AdapterUse>,
}

/// Why a generation ended.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// End of sequence or a stop string.
    Stop,
    /// `max_tokens` or the context window was reached.
    Length,
    /// The token sink asked to stop (the client went away).
    Cancelled,
}

impl FinishReason {
    /// The OpenAI name of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

/// What a generation cost.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq)]
pub struct GenerateStats {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Time spent evaluating the prompt.
    pub prompt_ms: f64,
    /// Time spent generating tokens after the prompt.
    pub decode_ms: f64,
    pub finish_reason: FinishReason,
}

/// Memory a loaded model holds right now.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryUsage {
    pub host_bytes: u64,
    pub device_bytes: u64,
}

/// What the token sink tells the plugin after each piece.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkControl {
    Continue,
    /// The consumer is gone; stop generating and return `FinishReason::Cancelled`.
    Stop,
}
