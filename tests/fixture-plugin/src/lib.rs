//! A test fixture, never installed: a real hearth plugin, loaded through the real ABI,
//! whose output is deterministic and whose faults are chosen by the test.
//!
//! Its "model file" is a text file of `key = value` lines:
//!
//! - `delay_ms = N`: sleep N ms before each token (default 0)
//! - `tokens = N`: tokens per answer unless `max_tokens` is lower (default 8)
//! - `weights_mb = N`: bytes held while loaded, so memory figures are real (default 1)
//! - `load = fail | panic`: make `load` fail or panic
//!
//! A prompt (the last message, or the raw prompt) containing `#fail` makes `generate`
//! return an error, `#panic` makes it panic, `#trim-panic` arms a panic in the next
//! `trim`, `#segfault`, `#abort` and `#hang` crash the process with SIGSEGV, abort it
//! or block forever (as a backend's bug or `GGML_ASSERT` would; only for tests of
//! worker processes), and `#version` makes every token the plugin's version, so a test can tell
//! which build of the plugin served a request. Otherwise the answer is the prompt's
//! words, cycled from an offset chosen by the seed, one word per token: the same request
//! always gives the same text.
//!
//! The version is `HEARTH_FIXTURE_VERSION` at build time, else the crate's version: a
//! test builds the fixture twice to have a "rebuilt plugin".
//!
//! Setting `HEARTH_FIXTURE_INIT=fail` or `=panic` in the environment makes the plugin's
//! constructor fail or panic, for load-error tests.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hearth_sdk::abi_stable::std_types::{RString, RVec};
use hearth_sdk::{
    Backend, BackendInfo, DeviceInfo, DeviceKind, FinishReason, GenerateRequest, GenerateStats,
    HostProfile, LoadRequest, MemoryUsage, Model, PluginError, Probe, SinkControl, TokenSink,
    API_VERSION,
};

/// This build's version; see the crate docs.
const VERSION: &str = match option_env!("HEARTH_FIXTURE_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};

struct FixtureBackend {
    loads: AtomicU64,
}

impl FixtureBackend {
    fn new() -> Result<Self, PluginError> {
        match std::env::var("HEARTH_FIXTURE_INIT").as_deref() {
            Ok("fail") => Err(PluginError::internal("fixture init failure requested")),
            Ok("panic") => panic!("fixture init panic requested"),
            _ => Ok(Self { loads: AtomicU64::new(0) }),
        }
    }
}

#[derive(Default)]
struct FixtureConfig {
    delay_ms: u64,
    tokens: u32,
    weights_mb: u64,
    load: Option<String>,
}

fn parse_config(text: &str) -> Result<FixtureConfig, PluginError> {
    let mut config = FixtureConfig { tokens: 8, weights_mb: 1, ..FixtureConfig::default() };
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| PluginError::model_file(format!("line {}: expected key = value", number + 1)))?;
        let value = value.trim();
        let number_value = || {
            value
                .parse::<u64>()
                .map_err(|_| PluginError::model_file(format!("line {}: `{value}` is not a number", number + 1)))
        };
        match key.trim() {
            "delay_ms" => config.delay_ms = number_value()?,
            "tokens" => config.tokens = number_value()? as u32,
            "weights_mb" => config.weights_mb = number_value()?,
            "load" => config.load = Some(value.to_string()),
            other => return Err(PluginError::model_file(format!("line {}: unknown key `{other}`", number + 1))),
        }
    }
    Ok(config)
}

impl Backend for FixtureBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            id: "fixture".into(),
            name: "fixture (tests only)".into(),
            version: VERSION.into(),
            api_version: API_VERSION,
            formats: RVec::from(vec![RString::from("fixture")]),
            features: RVec::from(vec![RString::from("lora")]),
        }
    }

    fn probe(&self, host: &HostProfile) -> Probe {
        Probe {
            available: true,
            devices: RVec::from(vec![DeviceInfo {
                kind: DeviceKind::Cpu,
                name: host.cpu_brand.clone(),
                memory_total_bytes: host.ram_total_bytes,
                memory_free_bytes: host.ram_available_bytes,
            }]),
            reason: "always available".into(),
        }
    }

    fn load(&self, request: &LoadRequest) -> Result<Box<dyn Model>, PluginError> {
        let path = request
            .paths
            .first()
            .ok_or_else(|| PluginError::invalid_request("no model file given"))?;
        let text = std::fs::read_to_string(path.as_str())
            .map_err(|error| PluginError::model_file(format!("{path}: {error}")))?;
        let config = parse_config(&text).map_err(|error| PluginError::model_file(format!("{path}: {}", error.message)))?;
        match config.load.as_deref() {
            Some("fail") => return Err(PluginError::out_of_memory("fixture load failure requested")),
            Some("panic") => panic!("fixture load panic requested"),
            _ => {}
        }
        let generation = self.loads.fetch_add(1, Ordering::SeqCst) + 1;
        let weights = vec![generation as u8; (config.weights_mb * 1024 * 1024) as usize];
        Ok(Box::new(FixtureModel {
            config,
            weights,
            cache: Mutex::new(Vec::new()),
            trim_panic: AtomicBool::new(false),
        }))
    }
}

struct FixtureModel {
    config: FixtureConfig,
    weights: Vec<u8>,
    /// Stands in for a KV cache: grows with use, freed by `trim`.
    cache: Mutex<Vec<u8>>,
    trim_panic: AtomicBool,
}

fn prompt_text(request: &GenerateRequest) -> String {
    match request.prompt.as_ref().into_option() {
        Some(prompt) => prompt.to_string(),
        None => request.messages.iter().last().map(|message| message.content.to_string()).unwrap_or_default(),
    }
}

impl Model for FixtureModel {
    fn generate(&self, request: &GenerateRequest, sink: &mut dyn TokenSink) -> Result<GenerateStats, PluginError> {
        let started = Instant::now();
        let prompt = prompt_text(request);
        if prompt.contains("#fail") {
            return Err(PluginError::internal("fixture generate failure requested"));
        }
        if prompt.contains("#panic") {
            panic!("fixture generate panic requested");
        }
        if prompt.contains("#segfault") {
            eprintln!("fixture: writing through a null pointer, as requested");
            // SAFETY: none — the point is the crash. A volatile write is not optimised away.
            unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
        }
        if prompt.contains("#abort") {
            eprintln!("fixture: aborting, as requested");
            std::process::abort();
        }
        if prompt.contains("#hang") {
            loop {
                std::thread::park();
            }
        }
        if prompt.contains("#trim-panic") {
            self.trim_panic.store(true, Ordering::SeqCst);
        }
        let words: Vec<&str> = prompt.split_whitespace().collect();
        let words = if words.is_empty() { vec!["empty"] } else { words };
        self.cache.lock().unwrap().resize(64 * 1024, 1);
        let prompt_ms = started.elapsed().as_secs_f64() * 1e3;
        let limit = self.config.tokens.min(request.max_tokens);
        let offset = (request.sampling.seed % words.len() as u64) as usize;
        let mut emitted = 0;
        let mut finish_reason = if limit < self.config.tokens { FinishReason::Length } else { FinishReason::Stop };
        for index in 0..limit as usize {
            if self.config.delay_ms > 0 {
                std::thread::sleep(Duration::from_millis(self.config.delay_ms));
            }
            let word = if prompt.contains("#version") { VERSION } else { words[(offset + index) % words.len()] };
            let piece = format!("{word} ");
            emitted += 1;
            if sink.on_token(&piece) == SinkControl::Stop {
                finish_reason = FinishReason::Cancelled;
                break;
            }
        }
        Ok(GenerateStats {
            prompt_tokens: words.len() as u32,
            completion_tokens: emitted,
            prompt_ms,
            decode_ms: started.elapsed().as_secs_f64() * 1e3 - prompt_ms,
            finish_reason,
        })
    }

    fn trim(&self) {
        if self.trim_panic.swap(false, Ordering::SeqCst) {
            panic!("fixture trim panic requested");
        }
        *self.cache.lock().unwrap() = Vec::new();
    }

    fn memory(&self) -> MemoryUsage {
        let cache = self.cache.lock().unwrap().capacity() as u64;
        MemoryUsage { host_bytes: self.weights.len() as u64 + cache, device_bytes: 0 }
    }
}

hearth_sdk::export_backend!(FixtureBackend::new);
