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
//!
//! The messages carry the SDK's own types (its requests, probes, stats and errors
//! derive serde), so the wire is the plugin API itself and grows with it.

use std::io::{self, Read, Write};

use hearth_sdk::{
    Embedding, GenerateRequest, GenerateStats, HostProfile, LoadRequest, MemoryUsage, PluginError,
    Probe, TokenLogprobs,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::plugin::PluginInfo;

/// Bumped whenever a message changes shape or a call is added.
pub const PROTOCOL_VERSION: u32 = 4;

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
    Load { protocol: u32, request: LoadRequest },
    /// Say what the plugin is and what it finds on this machine, without loading a
    /// model; answered by `described` or `failed`. The host describes plugins this way
    /// so that a backend run in workers is never mapped into the host process.
    Describe { protocol: u32, host: HostProfile },
    /// Generate; answered by `token`s, then `done` or `failed`.
    Generate { request: GenerateRequest },
    /// Stop the generation whose call had this id at its next token.
    Cancel { generation: u64 },
    /// Soft release; answered by `trimmed` or `failed`.
    Trim,
    /// What the model holds; answered by `memory`.
    Memory,
    /// The model's tokens for a text; answered by `tokens` or `failed`.
    Tokenize { text: String, add_special: bool },
    /// The text of tokens; answered by `text` or `failed`.
    Detokenize { tokens: Vec<u32> },
    /// How many tokens a request's prompt is; answered by `count` or `failed`.
    CountPromptTokens { request: GenerateRequest },
    /// The embedding of a text; answered by `embedding` or `failed`.
    Embed { text: String, truncate: bool },
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
    Loaded {
        protocol: u32,
    },
    Described {
        info: PluginInfo,
        probe: Probe,
    },
    Token {
        piece: String,
    },
    /// The next token's log-probabilities, before its text.
    Logprobs {
        logprobs: TokenLogprobs,
    },
    Done {
        stats: GenerateStats,
    },
    Trimmed,
    Memory {
        host_bytes: u64,
        device_bytes: u64,
    },
    Alive,
    Tokens {
        tokens: Vec<u32>,
    },
    Text {
        text: String,
    },
    Embedding {
        embedding: Embedding,
    },
    Count {
        tokens: u32,
    },
    Failed {
        error: PluginError,
    },
}

impl Event {
    pub fn failed(error: &PluginError) -> Self {
        Event::Failed { error: error.clone() }
    }

    pub fn memory(usage: MemoryUsage) -> Self {
        Event::Memory { host_bytes: usage.host_bytes, device_bytes: usage.device_bytes }
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
    use hearth_sdk::abi_stable::std_types::{RString, RVec};
    use hearth_sdk::{AdapterUse, ChatMessage, DeviceInfo, DeviceKind, LogitBias, Sampling};

    fn info() -> PluginInfo {
        PluginInfo {
            id: "test".into(),
            name: "Test".into(),
            version: "1.2.3".into(),
            api_version: "2.0".into(),
            formats: vec!["gguf".into()],
            features: vec![],
            path: "/plugins/libtest.so".into(),
        }
    }

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
            presence_penalty: 0.5,
            frequency_penalty: -0.25,
            logit_bias: RVec::from(vec![LogitBias { token: 42, bias: -100.0 }]),
            logprobs: Some(3).into(),
            grammar: "start: %json {\"type\": \"object\"}".into(),
            tools: r#"[{"type": "function", "function": {"name": "f"}}]"#.into(),
            message_extras: RVec::from(vec![RString::from(r#"{"name": "f"}"#)]),
        }
    }

    #[test]
    fn a_generate_request_survives_the_trip_through_a_frame() {
        let sent = Request { id: 3, call: Call::Generate { request: request() } };
        let mut pipe = Vec::new();
        write_frame(&mut pipe, &sent).unwrap();
        let received: Request = read_frame(&mut pipe.as_slice()).unwrap().unwrap();
        assert_eq!(received, sent);
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
            call: Call::Describe { protocol: PROTOCOL_VERSION, host: host.clone() },
        };
        let mut pipe = Vec::new();
        write_frame(&mut pipe, &sent).unwrap();
        let Some(Request { call: Call::Describe { host: received, .. }, .. }) =
            read_frame(&mut pipe.as_slice()).unwrap()
        else {
            panic!("not a describe call")
        };
        assert_eq!(received, host);
        let reply = Reply { id: 1, event: Event::Described { info: info(), probe: probe.clone() } };
        let mut pipe = Vec::new();
        write_frame(&mut pipe, &reply).unwrap();
        assert_eq!(read_frame::<Reply>(&mut pipe.as_slice()).unwrap(), Some(reply));
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
    fn a_failure_keeps_its_kind_and_a_kind_this_version_does_not_know_is_refused_by_name() {
        let sent = Reply { id: 2, event: Event::failed(&PluginError::out_of_memory("no room")) };
        let mut pipe = Vec::new();
        write_frame(&mut pipe, &sent).unwrap();
        assert_eq!(read_frame::<Reply>(&mut pipe.as_slice()).unwrap(), Some(sent));
        let future = br#"{"id":2,"event":{"event":"failed","error":{"kind":"from_the_future","message":"?"}}}"#;
        let mut frame = (future.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(future);
        let error = read_frame::<Reply>(&mut frame.as_slice()).unwrap_err();
        assert!(error.to_string().contains("unknown ErrorKind `from_the_future`"), "{error}");
    }
}
