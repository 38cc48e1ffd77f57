//! A test fixture, never installed: a real hearth plugin, loaded through the real ABI,
//! whose output is deterministic and whose faults are chosen by the test.
//!
//! Its "model file" is a text file of `key = value` lines:
//!
//! - `delay_ms = N`: sleep N ms before each token (default 0)
//! - `tokens = N`: tokens per answer unless `max_tokens` is lower (default 8)
//! - `weights_mb = N`: bytes held while loaded, so memory figures are real (default 1)
//! - `serial = true`: run one generation at a time, the others waiting their turn
//!   inside `generate`, as llama.cpp does with one sequence
//! - `load = fail | panic`: make `load` fail or panic
//! - `memory = panic | garbage`: make `memory` panic, or report `u64::MAX` bytes
//! - `drop = panic`: make dropping (unloading) the model panic
//! - `stats = garbage`: make `generate` report impossible figures (NaN and negative
//!   times, `u32::MAX` tokens)
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
//! `HEARTH_FIXTURE_FAULT` in the environment breaks the backend itself, for plugin
//! loading tests: `init-fail` and `init-panic` make the constructor fail or panic,
//! `info-panic` and `probe-panic` make those entry points panic, `probe-abort` aborts
//! the process while probing (only for tests that describe plugins in worker
//! processes), `info-garbage` makes `info` name an unusable backend id.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hearth_sdk::abi_stable::std_types::{RString, RVec};
use hearth_sdk::{
    feature, Backend, BackendInfo, DeviceInfo, DeviceKind, FinishReason, GenerateRequest,
    GenerateStats, HostProfile, LoadRequest, MemoryUsage, Model, PluginError, Probe, SinkControl,
    TokenSink, API_VERSION,
};

/// This build's version; see the crate docs.
const VERSION: &str = match option_env!("HEARTH_FIXTURE_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};

struct FixtureBackend {
    loads: AtomicU64,
    /// `HEARTH_FIXTURE_FAULT`, read once at construction.
    fault: String,
}

impl FixtureBackend {
    fn new() -> Result<Self, PluginError> {
        let fault = std::env::var("HEARTH_FIXTURE_FAULT").unwrap_or_default();
        match fault.as_str() {
            "init-fail" => Err(PluginError::internal("fixture init failure requested")),
            "init-panic" => panic!("fixture init panic requested"),
            _ => Ok(Self { loads: AtomicU64::new(0), fault }),
        }
    }
}

#[derive(Default)]
struct FixtureConfig {
    delay_ms: u64,
    tokens: u32,
    weights_mb: u64,
    load: Option<String>,
    memory: Option<String>,
    drop: Option<String>,
    stats: Option<String>,
    serial: bool,
}

fn parse_config(text: &str) -> Result<FixtureConfig, PluginError> {
    let mut config = FixtureConfig { tokens: 8, weights_mb: 1, ..FixtureConfig::default() };
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| {
            PluginError::model_file(format!("line {}: expected key = value", number + 1))
        })?;
        let value = value.trim();
        let number_value = || {
            value.parse::<u64>().map_err(|_| {
                PluginError::model_file(format!("line {}: `{value}` is not a number", number + 1))
            })
        };
        match key.trim() {
            "delay_ms" => config.delay_ms = number_value()?,
            "tokens" => config.tokens = number_value()? as u32,
            "weights_mb" => config.weights_mb = number_value()?,
            "load" => config.load = Some(value.to_string()),
            "memory" => config.memory = Some(value.to_string()),
            "drop" => config.drop = Some(value.to_string()),
            "stats" => config.stats = Some(value.to_string()),
            "serial" => config.serial = value == "true",
            other => {
                return Err(PluginError::model_file(format!(
                    "line {}: unknown key `{other}`",
                    number + 1
                )))
            }
        }
    }
    Ok(config)
}

impl Backend for FixtureBackend {
    fn info(&self) -> BackendInfo {
        let id = match self.fault.as_str() {
            "info-panic" => panic!("fixture info panic requested"),
            "info-garbage" => "../fixture\n",
            _ => "fixture",
        };
        BackendInfo {
            id: id.into(),
            name: "fixture (tests only)".into(),
            version: VERSION.into(),
            api_version: API_VERSION,
            formats: RVec::from(vec![RString::from("fixture")]),
            features: RVec::from(vec![RString::from(feature::LORA)]),
        }
    }

    fn probe(&self, host: &HostProfile) -> Probe {
        match self.fault.as_str() {
            "probe-panic" => panic!("fixture probe panic requested"),
            "probe-abort" => std::process::abort(),
            _ => {}
        }
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
        let config = parse_config(&text)
            .map_err(|error| PluginError::model_file(format!("{path}: {}", error.message)))?;
        match config.load.as_deref() {
            Some("fail") => {
                return Err(PluginError::out_of_memory("fixture load failure requested"))
            }
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
            turn: Mutex::new(()),
        }))
    }
}

struct FixtureModel {
    config: FixtureConfig,
    weights: Vec<u8>,
    /// Stands in for a KV cache: grows with use, freed by `trim`.
    cache: Mutex<Vec<u8>>,
    trim_panic: AtomicBool,
    /// Held by the generation running, when `serial` is set.
    turn: Mutex<()>,
}

fn prompt_text(request: &GenerateRequest) -> String {
    match request.prompt.as_ref().into_option() {
        Some(prompt) => prompt.to_string(),
        None => request
            .messages
            .iter()
            .last()
            .map(|message| message.content.to_string())
            .unwrap_or_default(),
    }
}

impl Model for FixtureModel {
    fn generate(
        &self,
        request: &GenerateRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<GenerateStats, PluginError> {
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
        let _turn = self
            .config
            .serial
            .then(|| self.turn.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
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
        let mut finish_reason =
            if limit < self.config.tokens { FinishReason::Length } else { FinishReason::Stop };
        for index in 0..limit as usize {
            if self.config.delay_ms > 0 {
                std::thread::sleep(Duration::from_millis(self.config.delay_ms));
            }
            let word = if prompt.contains("#version") {
                VERSION
            } else {
                words[(offset + index) % words.len()]
            };
            let piece = format!("{word} ");
            emitted += 1;
            if sink.on_token(&piece) == SinkControl::Stop {
                finish_reason = FinishReason::Cancelled;
                break;
            }
        }
        if self.config.stats.as_deref() == Some("garbage") {
            return Ok(GenerateStats {
                prompt_tokens: u32::MAX,
                completion_tokens: u32::MAX,
                prompt_ms: f64::NAN,
                decode_ms: -1.0,
                finish_reason,
            });
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
        match self.config.memory.as_deref() {
            Some("panic") => panic!("fixture memory panic requested"),
            Some("garbage") => return MemoryUsage { host_bytes: u64::MAX, device_bytes: u64::MAX },
            _ => {}
        }
        let cache = self.cache.lock().unwrap().capacity() as u64;
        MemoryUsage { host_bytes: self.weights.len() as u64 + cache, device_bytes: 0 }
    }
}

impl Drop for FixtureModel {
    fn drop(&mut self) {
        if self.config.drop.as_deref() == Some("panic") {
            panic!("fixture drop panic requested");
        }
    }
}

hearth_sdk::export_backend!(FixtureBackend::new);
