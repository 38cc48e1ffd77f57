//! The worker protocol: what the host and a worker process say to each other over the
//! worker's stdin and stdout.
//!
//! Each message is one frame: a little-endian `u32` byte length, then that many bytes
//! of JSON. JSON rather than a binary encoding because the messages are small (a token
//! is a few bytes of text) and a frame dumped from a pipe can be read by a person.
//! Every message carries the id of the call it belongs to, so several generations can
//! stream over one pipe at once and a health check is answered while they run.
//!
//! The host opens with `load`, or with `describe` for a worker started only to say what
//! its plugin is; both carry [`PROTOCOL_VERSION`], and a worker of another version
//! refuses them, so a mismatched `hearth` binary fails the call instead of misreading
//! frames. Frames over [`MAX_FRAME_BYTES`] are refused on both sides.

use std::io::{self, Read, Write};

use hearth_sdk::abi_stable::std_types::{RString, RVec};
use hearth_sdk::{
    AdapterUse, ChatMessage, DeviceInfo, DeviceKind, ErrorKind, FinishReason, GenerateRequest,
    GenerateStats, LoadRequest, MemoryUsage, PluginError, Probe, Sampling,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::device::HostView;
use crate::plugin::PluginInfo;

/// Bumped whenever a message changes shape or a call is added.
pub const PROTOCOL_VERSION: u32 = 2;

/// The largest frame either side accepts: far above any prompt a context window holds,
/// far below what would hurt if a confused peer sent garbage as a length.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Host to worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub call: Call,
}

/// What the host asks of a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    /// Load the model; answered by `loaded` or `failed`. Must come first.
    Load { protocol: u32, request: WireLoad },
    /// Say what the plugin is and what it finds on this machine, without loading a
    /// model; answered by `described` or `failed`. The host describes plugins this way
    /// so that a backend run in workers is never mapped into the host process.
    Describe { protocol: u32, host: HostView },
    /// Generate; answered by `token`s, then `done` or `failed`.
    Generate { request: WireGenerate },
    /// Stop the generation whose call had this id at its next token.
    Cancel { generation: u64 },
    /// Soft release; answered by `trimmed` or `failed`.
    Trim,
    /// What the model holds; answered by `memory`.
    Memory,
    /// Health check; answered by `alive` from the worker's main loop.
    Ping,
    /// Exit now; the operating system takes back everything the worker held.
    Unload,
}

/// Worker to host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub id: u64,
    pub event: Event,
}

/// What a worker answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Loaded { protocol: u32 },
    Described { info: PluginInfo, probe: WireProbe },
    Token { piece: String },
    Done { stats: WireStats },
    Trimmed,
    Memory { host_bytes: u64, device_bytes: u64 },
    Alive,
    Failed { kind: String, message: String },
}

impl Event {
    pub fn failed(error: &PluginError) -> Self {
        Event::Failed { kind: error.kind.as_str().to_string(), message: error.message.to_string() }
    }

    pub fn memory(usage: MemoryUsage) -> Self {
        Event::Memory { host_bytes: usage.host_bytes, device_bytes: usage.device_bytes }
    }
}

/// The error a `failed` event carries, back in the SDK's type.
pub fn plugin_error(kind: &str, message: String) -> PluginError {
    let kind = [
        ErrorKind::InvalidRequest,
        ErrorKind::Unsupported,
        ErrorKind::OutOfMemory,
        ErrorKind::ModelFile,
        ErrorKind::Internal,
        ErrorKind::Panicked,
    ]
    .into_iter()
    .find(|known| known.as_str() == kind)
    .unwrap_or(ErrorKind::Internal);
    PluginError::new(kind, message)
}

/// [`LoadRequest`] on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireLoad {
    pub model_id: String,
    pub paths: Vec<String>,
    pub format: String,
    pub context_size: u32,
    pub threads: u32,
    pub device: Option<String>,
}

impl From<&LoadRequest> for WireLoad {
    fn from(request: &LoadRequest) -> Self {
        Self {
            model_id: request.model_id.to_string(),
            paths: request.paths.iter().map(abi_stable::std_types::RString::to_string).collect(),
            format: request.format.to_string(),
            context_size: request.context_size,
            threads: request.threads,
            device: request
                .device
                .as_ref()
                .into_option()
                .map(abi_stable::std_types::RString::to_string),
        }
    }
}

impl From<WireLoad> for LoadRequest {
    fn from(wire: WireLoad) -> Self {
        Self {
            model_id: wire.model_id.into(),
            paths: wire.paths.into_iter().map(RString::from).collect(),
            format: wire.format.into(),
            context_size: wire.context_size,
            threads: wire.threads,
            device: wire.device.map(RString::from).into(),
        }
    }
}

/// [`Probe`] on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireProbe {
    pub available: bool,
    pub devices: Vec<WireDevice>,
    pub reason: String,
}

/// [`DeviceInfo`] on the wire; the kind as [`DeviceKind::as_str`] names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireDevice {
    pub kind: String,
    pub name: String,
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
}

impl From<&Probe> for WireProbe {
    fn from(probe: &Probe) -> Self {
        Self {
            available: probe.available,
            devices: probe
                .devices
                .iter()
                .map(|device| WireDevice {
                    kind: device.kind.as_str().to_string(),
                    name: device.name.to_string(),
                    memory_total_bytes: device.memory_total_bytes,
                    memory_free_bytes: device.memory_free_bytes,
                })
                .collect(),
            reason: probe.reason.to_string(),
        }
    }
}

impl From<WireProbe> for Probe {
    fn from(wire: WireProbe) -> Self {
        let kind_of = |name: &str| {
            [
                DeviceKind::Cpu,
                DeviceKind::DiscreteGpu,
                DeviceKind::IntegratedGpu,
                DeviceKind::VirtualGpu,
                DeviceKind::SoftwareGpu,
            ]
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .unwrap_or(DeviceKind::Other)
        };
        Self {
            available: wire.available,
            devices: wire
                .devices
                .into_iter()
                .map(|device| DeviceInfo {
                    kind: kind_of(&device.kind),
                    name: device.name.into(),
                    memory_total_bytes: device.memory_total_bytes,
                    memory_free_bytes: device.memory_free_bytes,
                })
                .collect(),
            reason: wire.reason.into(),
        }
    }
}

/// [`GenerateRequest`] on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireGenerate {
    /// `(role, content)` pairs.
    pub messages: Vec<(String, String)>,
    pub prompt: Option<String>,
    pub sampling: WireSampling,
    pub stop: Vec<String>,
    pub max_tokens: u32,
    /// `(name, path, scale)` of each LoRA adapter.
    pub adapters: Vec<(String, String, f32)>,
}

/// [`Sampling`] on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WireSampling {
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub repeat_last_n: u32,
    pub seed: u64,
}

impl From<&GenerateRequest> for WireGenerate {
    fn from(request: &GenerateRequest) -> Self {
        let Sampling { temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed } =
            request.sampling;
        Self {
            messages: request
                .messages
                .iter()
                .map(|message| (message.role.to_string(), message.content.to_string()))
                .collect(),
            prompt: request
                .prompt
                .as_ref()
                .into_option()
                .map(abi_stable::std_types::RString::to_string),
            sampling: WireSampling {
                temperature,
                top_k,
                top_p,
                min_p,
                repeat_penalty,
                repeat_last_n,
                seed,
            },
            stop: request.stop.iter().map(abi_stable::std_types::RString::to_string).collect(),
            max_tokens: request.max_tokens,
            adapters: request
                .adapters
                .iter()
                .map(|adapter| (adapter.name.to_string(), adapter.path.to_string(), adapter.scale))
                .collect(),
        }
    }
}

impl From<WireGenerate> for GenerateRequest {
    fn from(wire: WireGenerate) -> Self {
        let WireSampling { temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed } =
            wire.sampling;
        Self {
            messages: wire
                .messages
                .into_iter()
                .map(|(role, content)| ChatMessage { role: role.into(), content: content.into() })
                .collect(),
            prompt: wire.prompt.map(RString::from).into(),
            sampling: Sampling {
                temperature,
                top_k,
                top_p,
                min_p,
                repeat_penalty,
                repeat_last_n,
                seed,
            },
            stop: wire.stop.into_iter().map(RString::from).collect(),
            max_tokens: wire.max_tokens,
            adapters: wire
                .adapters
                .into_iter()
                .map(|(name, path, scale)| AdapterUse {
                    name: name.into(),
                    path: path.into(),
                    scale,
                })
                .collect::<RVec<_>>(),
        }
    }
}

/// [`GenerateStats`] on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WireStats {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub prompt_ms: f64,
    pub decode_ms: f64,
    pub finish_reason: WireFinish,
}

/// [`FinishReason`] on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireFinish {
    Stop,
    Length,
    Cancelled,
}

impl From<GenerateStats> for WireStats {
    fn from(stats: GenerateStats) -> Self {
        Self {
            prompt_tokens: stats.prompt_tokens,
            completion_tokens: stats.completion_tokens,
            prompt_ms: stats.prompt_ms,
            decode_ms: stats.decode_ms,
            finish_reason: match stats.finish_reason {
                FinishReason::Stop => WireFinish::Stop,
                FinishReason::Length => WireFinish::Length,
                FinishReason::Cancelled => WireFinish::Cancelled,
            },
        }
    }
}

impl From<WireStats> for GenerateStats {
    fn from(wire: WireStats) -> Self {
        Self {
            prompt_tokens: wire.prompt_tokens,
            completion_tokens: wire.completion_tokens,
            prompt_ms: wire.prompt_ms,
            decode_ms: wire.decode_ms,
            finish_reason: match wire.finish_reason {
                WireFinish::Stop => FinishReason::Stop,
                WireFinish::Length => FinishReason::Length,
                WireFinish::Cancelled => FinishReason::Cancelled,
            },
        }
    }
}

/// Write one message as a frame and flush it, so the peer sees it at once.
pub fn write_frame<T: Serialize>(out: &mut impl Write, message: &T) -> io::Result<()> {
    let body = serde_json::to_vec(message).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a {} byte message is over the frame limit", body.len()),
        ));
    }
    let length = u32::try_from(body.len()).map_err(io::Error::other)?;
    out.write_all(&length.to_le_bytes())?;
    out.write_all(&body)?;
    out.flush()
}

/// Read one frame; `Ok(None)` at a clean end of the stream, between frames.
pub fn read_frame<T: DeserializeOwned>(input: &mut impl Read) -> io::Result<Option<T>> {
    let mut length = [0u8; 4];
    match input.read_exact(&mut length) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let length = u32::from_le_bytes(length) as usize;
    if length > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a {length} byte frame is over the limit"),
        ));
    }
    let mut body = vec![0u8; length];
    input.read_exact(&mut body)?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_sdk::HostProfile;

    fn request() -> GenerateRequest {
        GenerateRequest {
            messages: RVec::from(vec![ChatMessage {
                role: "user".into(),
                content: "why is the sky blue?".into(),
            }]),
            prompt: None.into(),
            sampling: Sampling { seed: 7, ..Sampling::default() },
            stop: RVec::from(vec![RString::from("\n\n")]),
            max_tokens: 64,
            adapters: RVec::from(vec![AdapterUse {
                name: "style".into(),
                path: "/a/style.gguf".into(),
                scale: 0.5,
            }]),
        }
    }

    #[test]
    fn a_generate_request_survives_the_trip_through_a_frame() {
        let sent =
            Request { id: 3, call: Call::Generate { request: WireGenerate::from(&request()) } };
        let mut pipe = Vec::new();
        write_frame(&mut pipe, &sent).unwrap();
        let received: Request = read_frame(&mut pipe.as_slice()).unwrap().unwrap();
        assert_eq!(received, sent);
        let Call::Generate { request: wire } = received.call else { panic!("not a generate call") };
        assert_eq!(GenerateRequest::from(wire), request());
    }

    #[test]
    fn a_host_profile_and_a_probe_survive_the_trip_through_a_frame() {
        let host = HostProfile {
            cpu_brand: "Test CPU".into(),
            cpu_cores: 8,
            cpu_features: RVec::from(vec![RString::from("avx2")]),
            ram_total_bytes: 1 << 34,
            ..HostProfile::default()
        };
        let probe = Probe {
            available: true,
            devices: RVec::from(vec![
                DeviceInfo {
                    kind: DeviceKind::SoftwareGpu,
                    name: "llvmpipe".into(),
                    memory_total_bytes: 1,
                    memory_free_bytes: 0,
                },
                DeviceInfo {
                    kind: DeviceKind::Other,
                    name: "npu".into(),
                    memory_total_bytes: 2,
                    memory_free_bytes: 2,
                },
            ]),
            reason: "found two".into(),
        };
        let sent = Request {
            id: 1,
            call: Call::Describe { protocol: PROTOCOL_VERSION, host: HostView::from(&host) },
        };
        let mut pipe = Vec::new();
        write_frame(&mut pipe, &sent).unwrap();
        let Some(Request { call: Call::Describe { host: wire, .. }, .. }) =
            read_frame(&mut pipe.as_slice()).unwrap()
        else {
            panic!("not a describe call")
        };
        assert_eq!(HostProfile::from(wire), host);
        assert_eq!(Probe::from(WireProbe::from(&probe)), probe);
    }

    #[test]
    fn the_end_of_the_stream_between_frames_is_not_an_error_but_inside_one_is() {
        let mut pipe = Vec::new();
        write_frame(&mut pipe, &Reply { id: 1, event: Event::Alive }).unwrap();
        let mut input = pipe.as_slice();
        assert!(read_frame::<Reply>(&mut input).unwrap().is_some());
        assert!(read_frame::<Reply>(&mut input).unwrap().is_none());
        assert!(read_frame::<Reply>(&mut &pipe[..pipe.len() - 1]).is_err());
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_before_its_body_is_read() {
        let length = (MAX_FRAME_BYTES as u32 + 1).to_le_bytes();
        let error = read_frame::<Reply>(&mut length.as_slice()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        let huge = Reply { id: 1, event: Event::Token { piece: "x".repeat(MAX_FRAME_BYTES) } };
        assert!(write_frame(&mut Vec::new(), &huge).is_err());
    }

    #[test]
    fn a_failure_keeps_its_kind_and_an_unknown_kind_reads_as_internal() {
        let Event::Failed { kind, message } = Event::failed(&PluginError::out_of_memory("no room"))
        else {
            panic!("not a failure")
        };
        assert_eq!(plugin_error(&kind, message), PluginError::out_of_memory("no room"));
        assert_eq!(plugin_error("from-the-future", "?".into()).kind, ErrorKind::Internal);
    }
}
