//! A loaded GGUF model: its weights, one lazily created context that generations take
//! turns on, the LoRA adapters loaded for it so far, and the thread that computes on it.

use std::collections::HashMap;
use std::ffi::CString;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use hearth_sdk::{
    AdapterUse, GenerateRequest, GenerateStats, MemoryUsage, Model, PluginError, SinkControl,
    TokenSink,
};

use crate::engine::{engine_gone, Engine};
use crate::ffi::{self, RawAdapter, RawContext, RawModel, Sampler, SamplerSpec};
use crate::session::{Answer, Session};

/// What generations change; guarded by the model's lock.
#[derive(Default)]
struct State {
    /// Created on first use and freed by `trim`.
    session: Option<Session>,
    /// Every adapter loaded for this model, by path, with the version of the file it
    /// was read from; llama.cpp frees them with the model.
    adapters: HashMap<String, (FileStamp, RawAdapter)>,
}

/// A model loaded by llama.cpp: what it holds, and the one thread every generation
/// runs on (see `engine`).
pub struct LlamaModel {
    // Declared first, so the thread is joined before the weights go.
    engine: Engine,
    loaded: Arc<Loaded>,
}

/// The model's weights and what generations change.
struct Loaded {
    // Declared before `weights` so the context and adapters go first on drop.
    state: Mutex<State>,
    weights: RawModel,
    id: String,
    context_size: u32,
    threads: i32,
    /// Whether llama.cpp put the layers on an accelerator, for the memory split.
    on_device: bool,
    /// The context's KV cache size, kept outside the lock so `memory` never waits for
    /// a generation to finish.
    context_bytes: AtomicU64,
}

impl LlamaModel {
    pub fn new(
        weights: RawModel,
        id: String,
        context_size: u32,
        threads: i32,
        on_device: bool,
    ) -> Result<Self, PluginError> {
        Ok(Self {
            engine: Engine::new(&id)?,
            loaded: Arc::new(Loaded {
                state: Mutex::new(State::default()),
                weights,
                id,
                context_size,
                threads,
                on_device,
                context_bytes: AtomicU64::new(0),
            }),
        })
    }
}

/// The sink a generation writes to on the engine thread: each piece goes to the caller,
/// who hands it to the real sink. Once the caller stops listening (its sink said stop,
/// or it went away) the generation is told to stop at the next token.
struct Relay(Sender<String>);

impl TokenSink for Relay {
    fn on_token(&mut self, piece: &str) -> SinkControl {
        match self.0.send(piece.to_string()) {
            Ok(()) => SinkControl::Continue,
            Err(_) => SinkControl::Stop,
        }
    }
}

impl Loaded {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic mid-generation leaves at worst a stale cache, which is cleared below
        // whenever the prefix does not match; the lock itself stays usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Create the context (after a load or a trim), recording its size for `memory`.
    fn new_session(&self) -> Result<Session, PluginError> {
        let context =
            RawContext::new(&self.weights, self.context_size, self.threads).ok_or_else(|| {
                PluginError::out_of_memory(format!(
                    "llama.cpp could not create a {}-token context for model {}",
                    self.context_size, self.id
                ))
            })?;
        let bytes = u64::from(context.size()) * self.weights.kv_bytes_per_token();
        self.context_bytes.store(bytes, Ordering::Relaxed);
        Ok(Session::new(context))
    }

    /// The prompt as text: the raw prompt, or the chat rendered with the GGUF template.
    fn render_prompt(&self, request: &GenerateRequest) -> Result<String, PluginError> {
        if let Some(prompt) = request.prompt.as_ref().into_option() {
            return Ok(prompt.to_string());
        }
        if request.messages.is_empty() {
            return Err(PluginError::invalid_request(
                "the request has neither messages nor a prompt",
            ));
        }
        let template = self
            .weights
            .chat_template()
            .unwrap_or_else(|| self.fallback_template());
        let messages = request
            .messages
            .iter()
            .map(|message| {
                let role = CString::new(message.role.as_str());
                let content = CString::new(message.content.as_str());
                match (role, content) {
                    (Ok(role), Ok(content)) => Ok((role, content)),
                    _ => Err(PluginError::invalid_request(
                        "a chat message contains a NUL character",
                    )),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        ffi::apply_chat_template(&template, &messages).ok_or_else(|| {
            PluginError::unsupported(format!(
                "llama.cpp does not know the chat template of model {}; send a raw prompt",
                self.id
            ))
        })
    }

    /// The template for a GGUF that carries none (base models, some conversions): the
    /// family's own turn format where llama.cpp knows it, else ChatML, as llama-server
    /// does.
    fn fallback_template(&self) -> CString {
        let architecture = self
            .weights
            .metadata("general.architecture")
            .unwrap_or_default();
        let name = if architecture.starts_with("gemma") {
            c"gemma"
        } else {
            c"chatml"
        };
        name.to_owned()
    }

    /// Load (once per version of the file) and return the request's adapters with
    /// their scales, in order. A file replaced on disk is loaded anew: serving the old
    /// one would ignore the new file, and a broken replacement must be refused, not
    /// hidden behind the copy that loaded earlier.
    fn resolve_adapters<'s>(
        &self,
        loaded: &'s mut HashMap<String, (FileStamp, RawAdapter)>,
        wanted: &[AdapterUse],
    ) -> Result<Vec<(&'s RawAdapter, f32, String)>, PluginError> {
        for adapter in wanted {
            let path = adapter.path.as_str();
            let stamp = FileStamp::of(Path::new(path));
            if loaded.get(path).is_none_or(|(seen, _)| *seen != stamp) {
                let raw = load_adapter(&self.weights, adapter, &self.id)?;
                // The replaced adapter, if any, stays allocated until the model goes:
                // llama.cpp frees adapters with their model.
                loaded.insert(path.to_string(), (stamp, raw));
            }
        }
        Ok(wanted
            .iter()
            // Scale 0 means "off": leaving it out spares llama.cpp the work.
            .filter(|adapter| adapter.scale != 0.0)
            .filter_map(|adapter| {
                let (_, raw) = loaded.get(adapter.path.as_str())?;
                Some((raw, adapter.scale, adapter.path.to_string()))
            })
            .collect())
    }
}

/// One version of a file on disk: its size, modification time and inode.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileStamp(Option<(u64, std::time::SystemTime, u64)>);

impl FileStamp {
    fn of(path: &Path) -> Self {
        let metadata = std::fs::metadata(path).ok();
        Self(metadata.and_then(|metadata| {
            #[cfg(unix)]
            let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
            #[cfg(not(unix))]
            let inode = 0;
            Some((metadata.len(), metadata.modified().ok()?, inode))
        }))
    }
}

fn load_adapter(
    model: &RawModel,
    adapter: &AdapterUse,
    model_id: &str,
) -> Result<RawAdapter, PluginError> {
    let name = adapter.name.as_str();
    let path = Path::new(adapter.path.as_str());
    let header = crate::read_magic(path).map_err(|error| {
        PluginError::model_file(format!("adapter {name}: {}: {error}", path.display()))
    })?;
    if &header != b"GGUF" {
        return Err(PluginError::model_file(format!(
            "adapter {name}: {} is not a GGUF file",
            path.display()
        )));
    }
    model.load_adapter(path).ok_or_else(|| {
        PluginError::invalid_request(format!(
            "adapter {name}: {} is not a LoRA adapter for model {model_id} (architecture or tensor shapes differ, or the file is damaged)",
            path.display()
        ))
    })
}

fn sampler_for(request: &GenerateRequest, vocab_size: i32) -> Result<Sampler, PluginError> {
    let sampling = &request.sampling;
    let spec = SamplerSpec {
        temperature: sampling.temperature,
        top_k: i32::try_from(sampling.top_k).unwrap_or(i32::MAX),
        top_p: sampling.top_p,
        min_p: sampling.min_p,
        repeat_penalty: sampling.repeat_penalty,
        repeat_last_n: i32::try_from(sampling.repeat_last_n).unwrap_or(i32::MAX),
        // llama.cpp reads u32::MAX as "pick a random seed"; the modulus keeps every
        // request seed deterministic.
        seed: (sampling.seed % u64::from(u32::MAX)) as u32,
        vocab_size,
    };
    Sampler::new(&spec)
        .ok_or_else(|| PluginError::internal("llama.cpp could not create a sampler chain"))
}

fn elapsed_ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// The operations behind `Model`; `generate` runs on the engine thread.
impl Loaded {
    fn generate(
        &self,
        request: &GenerateRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<GenerateStats, PluginError> {
        let prompt = self.render_prompt(request)?;
        let prompt_tokens = self
            .weights
            .tokenize(&prompt)
            .ok_or_else(|| PluginError::invalid_request("the prompt could not be tokenized"))?;
        if prompt_tokens.is_empty() {
            return Err(PluginError::invalid_request("the prompt is empty"));
        }
        let mut sampler = sampler_for(request, self.weights.vocab_size())?;
        // The repeat penalty looks at the prompt as well, as llama-server's does.
        sampler.accept(&prompt_tokens);

        let mut guard = self.lock();
        let state = &mut *guard;
        let adapters = self.resolve_adapters(&mut state.adapters, &request.adapters)?;
        let session = match &mut state.session {
            Some(session) => session,
            empty => empty.insert(self.new_session()?),
        };
        // llama.cpp rounds the context up (to 256); the requested size is the limit.
        let window = self.context_size.min(session.size()) as usize;
        if prompt_tokens.len() >= window {
            return Err(PluginError::invalid_request(format!(
                "the prompt has {} tokens; the context holds {window}",
                prompt_tokens.len()
            )));
        }
        session.use_adapters(&adapters)?;

        let started = Instant::now();
        session.evaluate_prompt(&prompt_tokens)?;
        let prompt_ms = elapsed_ms(started);

        let decode_started = Instant::now();
        let answer = Answer {
            sampler: &mut sampler,
            stop: request.stop.iter().map(|stop| stop.to_string()).collect(),
            max_tokens: request.max_tokens,
            window,
            sink,
        };
        let (completion_tokens, finish_reason) = session.answer(&self.weights, answer)?;
        Ok(GenerateStats {
            prompt_tokens: u32::try_from(prompt_tokens.len()).unwrap_or(u32::MAX),
            completion_tokens,
            prompt_ms,
            decode_ms: elapsed_ms(decode_started),
            finish_reason,
        })
    }

    fn trim(&self) {
        self.lock().session = None;
        self.context_bytes.store(0, Ordering::Relaxed);
    }

    /// The weights plus an estimate of the KV cache (f16 keys and values for every
    /// token of the window); llama.cpp's compute scratch is not counted.
    fn memory(&self) -> MemoryUsage {
        let bytes = self.weights.size_bytes() + self.context_bytes.load(Ordering::Relaxed);
        if self.on_device {
            MemoryUsage {
                host_bytes: 0,
                device_bytes: bytes,
            }
        } else {
            MemoryUsage {
                host_bytes: bytes,
                device_bytes: 0,
            }
        }
    }
}

impl Model for LlamaModel {
    fn generate(
        &self,
        request: &GenerateRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<GenerateStats, PluginError> {
        let (pieces, received) = mpsc::channel();
        let (loaded, request) = (self.loaded.clone(), request.clone());
        let outcome = self
            .engine
            .submit(move || loaded.generate(&request, &mut Relay(pieces)));
        for piece in &received {
            if sink.on_token(&piece) == SinkControl::Stop {
                break;
            }
        }
        // Closing the channel tells the generation to stop, if it has not ended.
        drop(received);
        outcome.recv().unwrap_or_else(|_| Err(engine_gone()))
    }

    fn trim(&self) {
        self.loaded.trim();
    }

    fn memory(&self) -> MemoryUsage {
        self.loaded.memory()
    }
}
