//! The data of the plugin API: requests, answers, profiles.
//!
//! Two kinds of type live here:
//! - **Answers a plugin returns** (`BackendInfo`, `Probe`, `GenerateStats`, …) are
//!   `#[repr(C)]` and derive `StableAbi`: abi_stable checks at load time that host
//!   and plugin agree on their layout, so they never change within a major version.
//!   Their enums are open ([`crate::open_enum!`]), so new values need no new major.
//! - **Requests the host makes** ([`LoadRequest`], [`GenerateRequest`]) are plain Rust
//!   structs that never cross the boundary as such: the host lends them through the
//!   request views of [`crate::abi`], whose methods a later minor version extends at
//!   the end, and the SDK rebuilds them on the plugin's side from the methods the
//!   plugin's version knows. So they gain fields in minor versions, and a plugin built
//!   before a field existed still loads (and never sees it).
//!
//! Every type is also the worker protocol's wire type (serde), so the host's worker
//! processes speak exactly this API, with no copy of it to keep in step.

use abi_stable::{
    std_types::{ROption, RString, RVec},
    StableAbi,
};
use serde::{Deserialize, Serialize};

/// Version of the hearth plugin API: the SDK crate's own version, which is bumped in
/// its major only when the ABI breaks and in its minor when it grows.
///
/// The host accepts a plugin whose `major` equals its own and whose `minor` is not
/// newer than its own.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

/// The API version this SDK implements: its crate version's major and minor.
pub const API_VERSION: ApiVersion = ApiVersion {
    major: parse_version_part(env!("CARGO_PKG_VERSION_MAJOR")),
    minor: parse_version_part(env!("CARGO_PKG_VERSION_MINOR")),
};

const fn parse_version_part(digits: &str) -> u32 {
    let bytes = digits.as_bytes();
    let mut value = 0;
    let mut index = 0;
    while index < bytes.len() {
        value = value * 10 + (bytes[index] - b'0') as u32;
        index += 1;
    }
    value
}

/// Names of what a backend can do beyond plain generation, listed in
/// [`BackendInfo::features`] (beside the `arch:` and `gguf-type:` entries of the
/// `helpers` feature's capabilities).
pub mod feature {
    /// Applies LoRA adapters ([`crate::GenerateRequest::adapters`]).
    pub const LORA: &str = "lora";
    /// Renders chats with the model's own chat template.
    pub const CHAT_TEMPLATE: &str = "chat-template";
    /// Reuses the evaluated prefix of the previous prompt.
    pub const PREFIX_CACHE: &str = "prefix-cache";
    /// Reports log-probabilities ([`crate::GenerateRequest::logprobs`]). Since 2.1.
    pub const LOGPROBS: &str = "logprobs";
    /// Applies OpenAI's presence and frequency penalties
    /// ([`crate::GenerateRequest::presence_penalty`]). Since 2.1.
    pub const PRESENCE_FREQUENCY_PENALTIES: &str = "presence-frequency-penalties";
    /// Adds [`crate::GenerateRequest::logit_bias`] to the logits. Since 2.1.
    pub const LOGIT_BIAS: &str = "logit-bias";
    /// Tokenizes and detokenizes on request ([`crate::Model::tokenize`]) and counts a
    /// request's prompt tokens ([`crate::Model::count_prompt_tokens`]). Since 2.1.
    pub const TOKENIZE: &str = "tokenize";
    /// Embeds texts with the model's own pooling ([`crate::Model::embed`]). Since 2.1.
    pub const EMBEDDINGS: &str = "embeddings";
    /// Constrains generation to [`crate::GenerateRequest::grammar`]. Since 2.2.
    pub const GRAMMAR: &str = "grammar";
    /// Hands [`crate::GenerateRequest::tools`] and
    /// [`crate::GenerateRequest::message_extras`] to the chat template. Since 2.4.
    pub const TOOLS: &str = "tools";
}

/// Who a backend is and what it can read.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// What it can do beyond plain generation: the names in [`feature`].
    pub features: RVec<RString>,
}

/// The machine as the host sees it, handed to every plugin's probe.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
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

crate::open_enum! {
    /// The kind of compute device a backend can run on.
    pub struct DeviceKind {
        Cpu = 0 => "cpu",
        DiscreteGpu = 1 => "discrete-gpu",
        IntegratedGpu = 2 => "integrated-gpu",
        VirtualGpu = 3 => "virtual-gpu",
        /// A GPU API implemented in software on the CPU (e.g. lavapipe): correct, not fast.
        SoftwareGpu = 4 => "software-gpu",
        Other = 5 => "other",
        /// A device of another machine, reached over the network (llama.cpp's RPC).
        /// Since 2.3.
        Remote = 6 => "remote",
    }
    unknown => "other";
}

impl DeviceKind {
    /// True for real accelerators, the ones routing prefers over the CPU and a
    /// backend's layers go to: a remote device counts, as it takes layers as a GPU does.
    pub fn is_accelerator(self) -> bool {
        matches!(
            self,
            DeviceKind::DiscreteGpu
                | DeviceKind::IntegratedGpu
                | DeviceKind::VirtualGpu
                | DeviceKind::Remote
        )
    }
}

crate::open_enum! {
    /// How a model that runs on several devices is divided between them (llama.cpp's
    /// `--split-mode`). Since 2.3.
    pub struct SplitMode {
        /// Whole layers to each device, in proportion to its free memory.
        Layer = 0 => "layer",
        /// Every matrix divided by rows across the devices; the main device holds the
        /// rest and gathers the results. Only devices whose engine can divide a matrix
        /// between them can (in llama.cpp, those whose ggml module has split buffers).
        Row = 1 => "row",
        /// One device, the main one, holds everything a device takes.
        None = 2 => "none",
    }
    unknown => "layer";
}

impl Default for SplitMode {
    fn default() -> Self {
        SplitMode::Layer
    }
}

/// One device a backend can use. Memory figures are 0 where the platform hides them.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub kind: DeviceKind,
    pub name: RString,
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
}

/// What a backend found on this machine.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub available: bool,
    pub devices: RVec<DeviceInfo>,
    /// Why the backend is unavailable, or notes about what it found.
    pub reason: RString,
}

/// Everything a backend needs to load one model.
///
/// Fields added in a later minor version go at the end, with their view method (see
/// [`crate::abi::AbiLoadRequest`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
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
    /// A device name from the probe to pin the model to, or a comma-separated list to
    /// divide it between; none lets the backend choose.
    pub device: ROption<RString>,
    /// How the model is divided between several devices. Since 2.3.
    pub split_mode: SplitMode,
    /// The device that holds what is not divided (with [`SplitMode::Row`]) or all of
    /// it (with [`SplitMode::None`]); none means the first. Since 2.3.
    pub main_device: ROption<RString>,
}

/// One message of a chat.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: RString,
    pub content: RString,
}

/// Sampling parameters. `temperature <= 0` means greedy decoding.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
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
#[derive(StableAbi, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterUse {
    /// The catalog name, used as the plugin's cache key.
    pub name: RString,
    /// Absolute path of the adapter file.
    pub path: RString,
    /// 0.0 turns the adapter off; 1.0 is full strength.
    pub scale: f32,
}

/// One generation: a chat (`messages`) or a raw completion (`prompt`).
///
/// Fields added in a later minor version go at the end, with their view method (see
/// [`crate::abi::AbiGenerateRequest`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// OpenAI's presence penalty: subtracted once from the logit of every token seen in
    /// the last `sampling.repeat_last_n` tokens. 0 disables it. Since 2.1.
    pub presence_penalty: f32,
    /// OpenAI's frequency penalty: subtracted from a token's logit once for each time
    /// it was seen in the same window. 0 disables it. Since 2.1.
    pub frequency_penalty: f32,
    /// Added to these tokens' logits before sampling; -100 or less bans a token.
    /// Since 2.1.
    pub logit_bias: RVec<LogitBias>,
    /// Report each chosen token's log-probability with this many of the likeliest
    /// alternatives (0 to [`MAX_TOP_LOGPROBS`]) through [`crate::TokenSink::on_logprobs`];
    /// none reports nothing. Since 2.1.
    pub logprobs: ROption<u32>,
    /// Constrain the output to this grammar, in llguidance's Lark dialect (`%json { … }`
    /// embeds a JSON schema); empty for none. Since 2.2.
    pub grammar: RString,
    /// The functions the model may call, for the chat template's `tools`: a JSON list
    /// in OpenAI's shape (`[{"type": "function", "function": {"name", "description",
    /// "parameters"}}]`); empty for none. Since 2.4.
    pub tools: RString,
    /// For each of `messages` (or for none at all), a JSON object of the fields the
    /// chat template reads besides `role` and `content`: an assistant's `tool_calls`
    /// (`[{"id", "type": "function", "function": {"name", "arguments": {…}}}]`), a tool
    /// result's `tool_call_id` and `name`; empty for a message with none. Since 2.4.
    pub message_extras: RVec<RString>,
}

impl GenerateRequest {
    /// The features a backend must list to honour this request, each with the request
    /// field that needs it: `(field, feature)`.
    pub fn features_needed(&self) -> Vec<(&'static str, &'static str)> {
        let mut needed = Vec::new();
        if self.logprobs.is_some() {
            needed.push(("logprobs", feature::LOGPROBS));
        }
        if self.presence_penalty != 0.0 {
            needed.push(("presence_penalty", feature::PRESENCE_FREQUENCY_PENALTIES));
        }
        if self.frequency_penalty != 0.0 {
            needed.push(("frequency_penalty", feature::PRESENCE_FREQUENCY_PENALTIES));
        }
        if !self.logit_bias.is_empty() {
            needed.push(("logit_bias", feature::LOGIT_BIAS));
        }
        if self.adapters.iter().any(|adapter| adapter.scale != 0.0) {
            needed.push(("adapters", feature::LORA));
        }
        if !self.grammar.is_empty() {
            needed.push(("grammar", feature::GRAMMAR));
        }
        if !self.tools.is_empty() {
            needed.push(("tools", feature::TOOLS));
        }
        if self.message_extras.iter().any(|extras| !extras.is_empty()) {
            needed.push(("messages", feature::TOOLS));
        }

        needed
    }
}

/// The most alternatives [`GenerateRequest::logprobs`] may ask for, as OpenAI allows.
pub const MAX_TOP_LOGPROBS: u32 = 20;

/// A bias added to one token's logit.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogitBias {
    /// The token's id in the model's vocabulary.
    pub token: u32,
    pub bias: f32,
}

/// One token and its log-probability.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token's id in the model's vocabulary.
    pub token: u32,
    /// Its bytes, which need not be whole UTF-8: a character may span tokens.
    pub bytes: RVec<u8>,
    /// The natural logarithm of its probability under the model's own distribution
    /// (the softmax of the raw logits, before any sampling setting).
    pub logprob: f32,
}

/// The token a generation chose, with the likeliest tokens at that step.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprobs {
    pub chosen: TokenLogprob,
    /// Most likely first; as many as the request asked for.
    pub top: RVec<TokenLogprob>,
}

/// A text's embedding. Since 2.1.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    /// The vector the model's pooling gives, as it gives it (not normalised).
    pub vector: RVec<f32>,
    /// How many tokens the model read for it.
    pub tokens: u32,
}

/// How many tokens a generation may produce when the request does not say.
pub const DEFAULT_MAX_TOKENS: u32 = 512;

impl Default for GenerateRequest {
    /// An empty chat with llama-server's sampling defaults and [`DEFAULT_MAX_TOKENS`].
    fn default() -> Self {
        Self {
            messages: RVec::new(),
            prompt: ROption::RNone,
            sampling: Sampling::default(),
            stop: RVec::new(),
            max_tokens: DEFAULT_MAX_TOKENS,
            adapters: RVec::new(),
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: RVec::new(),
            logprobs: ROption::RNone,
            grammar: RString::new(),
            tools: RString::new(),
            message_extras: RVec::new(),
        }
    }
}

crate::open_enum! {
    /// Why a generation ended.
    pub struct FinishReason {
        /// End of sequence or a stop string.
        Stop = 0 => "stop",
        /// `max_tokens` or the context window was reached.
        Length = 1 => "length",
        /// The token sink asked to stop (the client went away).
        Cancelled = 2 => "cancelled",
    }
    unknown => "stop";
}

/// What a generation cost.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
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
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MemoryUsage {
    pub host_bytes: u64,
    pub device_bytes: u64,
}

crate::open_enum! {
    /// What the token sink tells the plugin after each piece.
    pub struct SinkControl {
        Continue = 0 => "continue",
        /// The consumer is gone; stop generating and return `FinishReason::Cancelled`.
        Stop = 1 => "stop",
    }
    unknown => "stop";
}
