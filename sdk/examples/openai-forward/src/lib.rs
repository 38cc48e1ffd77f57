//! A hearth backend that forwards each request to an OpenAI-compatible HTTP server and
//! streams the answer back: a way to put a remote service (or another local server)
//! behind hearth's routing, idle management and API.
//!
//! A "model" is a TOML file naming the server and the model there (see [`Remote`]).
//! Loading checks the server answers and knows the model; generating sends a streamed
//! chat completion (or a plain completion for a raw prompt) and relays every piece of
//! text to the host's sink. When the host's client goes away the sink says stop, and
//! dropping the response closes the connection, which cancels the remote generation.
//!
//! The HTTP client is blocking (`ureq`): the ABI is synchronous and a plugin must not
//! assume the host runs a tokio runtime. hearth calls `generate` on its own blocking
//! threads, so a blocking read is exactly right.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use hearth_sdk::abi_stable::std_types::RVec;
use hearth_sdk::{
    Backend, BackendInfo, ErrorKind, FinishReason, GenerateRequest, GenerateStats, HostProfile, LoadRequest,
    MemoryUsage, Model, PluginError, Probe, SinkControl, TokenSink, API_VERSION,
};
use serde::Deserialize;
use serde_json::{json, Value};

/// The model file: where the server is, which of its models to use, and where the API
/// key is (never in the file itself: the file sits in the models folder).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Remote {
    /// The API root, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8434/v1`.
    base_url: String,
    /// The model name the server knows.
    model: String,
    /// The environment variable holding a bearer token, if the server wants one.
    api_key_env: Option<String>,
}

struct ForwardBackend {
    agent: ureq::Agent,
}

impl ForwardBackend {
    fn new() -> Result<Self, PluginError> {
        let config = ureq::Agent::config_builder()
            // Error statuses are read like any response, so their message reaches the user.
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build();
        Ok(Self { agent: config.into() })
    }
}

impl Backend for ForwardBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            id: "openai-forward".into(),
            name: "OpenAI-compatible HTTP forwarder".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: API_VERSION,
            formats: RVec::from(vec!["openai-forward".into()]),
            features: RVec::from(vec!["remote".into()]),
        }
    }

    fn probe(&self, _host: &HostProfile) -> Probe {
        // Nothing on this machine matters: the work happens on the server, which is
        // checked per model when it loads.
        Probe { available: true, devices: RVec::new(), reason: "forwards to remote servers".into() }
    }

    fn load(&self, request: &LoadRequest) -> Result<Box<dyn Model>, PluginError> {
        let path = request.paths.first().ok_or_else(|| PluginError::invalid_request("no model file given"))?;
        let text = std::fs::read_to_string(path.as_str())
            .map_err(|error| PluginError::model_file(format!("{path}: {error}")))?;
        let remote: Remote =
            toml::from_str(&text).map_err(|error| PluginError::model_file(format!("{path}: {}", error.message())))?;
        let api_key = match &remote.api_key_env {
            Some(variable) => Some(std::env::var(variable).map_err(|_| {
                PluginError::model_file(format!("{path}: the environment variable {variable} is not set"))
            })?),
            None => None,
        };
        let model = RemoteModel { agent: self.agent.clone(), base_url: remote.base_url.trim_end_matches('/').to_string(), remote, api_key };
        model.check()?;
        Ok(Box::new(model))
    }
}

struct RemoteModel {
    agent: ureq::Agent,
    remote: Remote,
    base_url: String,
    api_key: Option<String>,
}

/// Anything the server says that is not a success, with its message when it sent one.
fn server_error(status: u16, body: &str) -> PluginError {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|value| value["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(300).collect());
    let kind = match status {
        400 | 422 => ErrorKind::InvalidRequest,
        _ => ErrorKind::Internal,
    };
    PluginError::new(kind, format!("the server answered {status}: {message}"))
}

/// A server that cannot be reached is "unsupported" here, so the host falls back to
/// another backend instead of failing the request.
fn unreachable(error: ureq::Error) -> PluginError {
    PluginError::unsupported(format!("cannot reach the server: {error}"))
}

impl RemoteModel {
    fn authorise<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.api_key {
            Some(key) => request.header("Authorization", format!("Bearer {key}")),
            None => request,
        }
    }

    /// The server answers and lists the model.
    fn check(&self) -> Result<(), PluginError> {
        let response = self.authorise(self.agent.get(format!("{}/models", self.base_url))).call().map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = response.into_body().read_to_string().map_err(unreachable)?;
        if status != 200 {
            return Err(server_error(status, &body));
        }
        let listed: Value = serde_json::from_str(&body)
            .map_err(|error| PluginError::unsupported(format!("{}/models is not an OpenAI model list: {error}", self.base_url)))?;
        let known = listed["data"].as_array().into_iter().flatten().any(|model| model["id"] == self.remote.model.as_str());
        if !known {
            return Err(PluginError::model_file(format!("the server at {} has no model `{}`", self.base_url, self.remote.model)));
        }
        Ok(())
    }

    /// The request body: chat messages, or a raw prompt for the completions endpoint.
    fn body(&self, request: &GenerateRequest) -> (String, Value) {
        let sampling = &request.sampling;
        let mut body = json!({
            "model": self.remote.model,
            "stream": true,
            "stream_options": { "include_usage": true },
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": sampling.seed,
        });
        if request.max_tokens > 0 {
            body["max_tokens"] = json!(request.max_tokens);
        }
        if !request.stop.is_empty() {
            body["stop"] = json!(request.stop.iter().map(|stop| stop.as_str()).collect::<Vec<_>>());
        }
        match request.prompt.as_ref().into_option() {
            Some(prompt) => {
                body["prompt"] = json!(prompt.as_str());
                (format!("{}/completions", self.base_url), body)
            }
            None => {
                let messages: Vec<Value> = request
                    .messages
                    .iter()
                    .map(|message| json!({ "role": message.role.as_str(), "content": message.content.as_str() }))
                    .collect();
                body["messages"] = json!(messages);
                (format!("{}/chat/completions", self.base_url), body)
            }
        }
    }
}

impl Model for RemoteModel {
    fn generate(&self, request: &GenerateRequest, sink: &mut dyn TokenSink) -> Result<GenerateStats, PluginError> {
        let started = Instant::now();
        let (url, body) = self.body(request);
        let response = self.authorise(self.agent.post(url)).send_json(&body).map_err(unreachable)?;
        let status = response.status().as_u16();
        if status != 200 {
            let body = response.into_body().read_to_string().unwrap_or_default();
            return Err(server_error(status, &body));
        }
        let mut stats = GenerateStats {
            prompt_tokens: 0,
            completion_tokens: 0,
            prompt_ms: 0.0,
            decode_ms: 0.0,
            finish_reason: FinishReason::Stop,
        };
        let mut pieces = 0;
        let mut first_piece: Option<Instant> = None;
        // Server-sent events: one `data: {json}` line per chunk, `data: [DONE]` at the end.
        for line in BufReader::new(response.into_body().into_reader()).lines() {
            let line = line.map_err(|error| PluginError::internal(format!("the stream broke: {error}")))?;
            let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                continue;
            };
            if data == "[DONE]" {
                break;
            }
            let chunk: Value = serde_json::from_str(data)
                .map_err(|error| PluginError::internal(format!("the server sent a chunk that is not JSON: {error}")))?;
            if let Some(message) = chunk["error"]["message"].as_str() {
                return Err(PluginError::internal(format!("the server failed mid-stream: {message}")));
            }
            if let Some(usage) = chunk.get("usage").filter(|usage| usage.is_object()) {
                stats.prompt_tokens = usage["prompt_tokens"].as_u64().unwrap_or(0) as u32;
                stats.completion_tokens = usage["completion_tokens"].as_u64().unwrap_or(0) as u32;
            }
            let choice = &chunk["choices"][0];
            if choice["finish_reason"] == "length" {
                stats.finish_reason = FinishReason::Length;
            }
            let piece = choice["delta"]["content"].as_str().or_else(|| choice["text"].as_str()).unwrap_or_default();
            if piece.is_empty() {
                continue;
            }
            first_piece.get_or_insert_with(Instant::now);
            pieces += 1;
            if sink.on_token(piece) == SinkControl::Stop {
                // Returning drops the response, which closes the connection: the server
                // sees the client leave and stops generating.
                stats.finish_reason = FinishReason::Cancelled;
                break;
            }
        }
        if stats.completion_tokens == 0 {
            stats.completion_tokens = pieces;
        }
        let first = first_piece.unwrap_or_else(Instant::now);
        stats.prompt_ms = first.duration_since(started).as_secs_f64() * 1e3;
        stats.decode_ms = first.elapsed().as_secs_f64() * 1e3;
        Ok(stats)
    }

    /// Nothing to release: the model's memory is on the server. A backend with a KV
    /// cache would free it here and keep its weights.
    fn trim(&self) {}

    /// Only the connection pool lives here, which is too small to count.
    fn memory(&self) -> MemoryUsage {
        MemoryUsage::default()
    }
}

hearth_sdk::export_backend!(ForwardBackend::new);
