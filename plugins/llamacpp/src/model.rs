//! A loaded GGUF model: its weights, the LoRA adapters loaded for it so far, and the
//! thread that computes on it (see `engine`), with the context that generations share.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use hearth_sdk::helpers::{
    chat_template_source, ChatError, ChatTemplate, Constraint, GrammarCompiler, Grammars,
};
use hearth_sdk::{
    AdapterUse, Embedding, GenerateRequest, GenerateStats, MemoryUsage, Model, PluginError,
    SinkControl, TokenSink,
};

use crate::embed::Embedder;
use crate::engine::{engine_gone, Engine, Job, Output, Work};
use crate::ffi::{Offload, RawAdapter, RawContext, RawModel, Token};
use crate::rpc::RpcHold;
use crate::sampler::{Sampler, SamplerSpec};
use crate::session::Session;

/// Every adapter loaded for a model, by path, with the version of the file it was read
/// from; llama.cpp frees them with the model.
pub type Adapters = HashMap<String, (FileStamp, RawAdapter)>;

/// A model loaded by llama.cpp: what it holds, and the one thread every generation
/// runs on.
pub struct LlamaModel {
    // Declared first, so the thread is joined (and the embedding context freed) before
    // the weights go.
    engine: Engine,
    embedder: Embedder,
    loaded: Arc<Loaded>,
}

/// The model's weights and settings, shared with its thread.
pub struct Loaded {
    pub weights: RawModel,
    pub id: String,
    pub context_size: u32,
    /// False for a model whose attention looks both ways (BERT's): it embeds and does
    /// not generate.
    generates: bool,
    /// How many generations run at once on the context.
    pub parallel: usize,
    pub threads: i32,
    /// How many layers llama.cpp put on GPUs, for the memory split.
    offload: Offload,
    /// The context's KV cache size, kept apart so `memory` never waits for the thread.
    context_bytes: AtomicU64,
    /// The chat template, or why it does not compile (raw prompts still work then).
    template: Result<ChatTemplate, ChatError>,
    grammars: Grammars,
    /// Held while the weights are on RPC servers; declared after them, so it goes
    /// after they do and their connections have closed.
    _on_rpc: Option<RpcHold>,
}

/// A request made ready on the caller's thread: the prompt tokenized and the sampler
/// built, so the model's thread only computes.
pub struct Prepared {
    pub prompt: Vec<Token>,
    pub sampler: Sampler,
    pub stop: Vec<String>,
    pub max_tokens: u32,
    pub adapters: Vec<AdapterUse>,
    /// How many alternatives to report with each chosen token's log-probability.
    pub logprobs: Option<u32>,
}

impl LlamaModel {
    pub fn new(
        weights: RawModel,
        id: String,
        context_size: u32,
        parallel: usize,
        threads: i32,
        offload: Offload,
        on_rpc: Option<RpcHold>,
    ) -> Result<Self, PluginError> {
        let architecture = weights.metadata("general.architecture").unwrap_or_default();
        let stored = weights.chat_template();
        let (bos, eos) = weights.bos_eos_texts();
        let causal = weights.metadata(&format!("{architecture}.attention.causal"));
        let generates = causal.as_deref() != Some("false");
        let template =
            ChatTemplate::new(chat_template_source(stored.as_deref(), &architecture), &bos, &eos);
        let loaded = Arc::new(Loaded {
            weights,
            id,
            context_size,
            generates,
            parallel,
            threads,
            offload,
            context_bytes: AtomicU64::new(0),
            template,
            grammars: Grammars::default(),
            _on_rpc: on_rpc,
        });
        Ok(Self { engine: Engine::new(loaded.clone())?, embedder: Embedder::default(), loaded })
    }
}

impl Loaded {
    /// Create the context (after a load or a trim), recording its size for `memory`.
    pub fn new_session(&self) -> Result<Session, PluginError> {
        let sequences = u32::try_from(self.parallel).unwrap_or(1);
        let context = RawContext::new(&self.weights, self.context_size, self.threads, sequences)
            .ok_or_else(|| {
                PluginError::out_of_memory(format!(
                    "llama.cpp could not create a {}-token context for model {}",
                    self.context_size, self.id
                ))
            })?;
        self.set_context_bytes(u64::from(context.size()) * self.weights.kv_bytes_per_token());
        Ok(Session::new(context, self.parallel))
    }

    pub fn set_context_bytes(&self, bytes: u64) {
        self.context_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Tokenize the prompt and build the sampler.
    fn prepare(&self, request: &GenerateRequest) -> Result<Prepared, PluginError> {
        if !self.generates {
            return Err(PluginError::invalid_request(format!(
                "model {} is an embedding model: it embeds text (/v1/embeddings) and does not generate",
                self.id
            )));
        }
        let prompt = self.render_prompt(request)?;
        let prompt = self
            .weights
            .tokenize(&prompt, true)
            .ok_or_else(|| PluginError::invalid_request("the prompt could not be tokenized"))?;
        if prompt.is_empty() {
            return Err(PluginError::invalid_request("the prompt is empty"));
        }
        let constraint = self.grammars.constraint(&request.grammar, || {
            let (vocab, end_of_generation) = self.weights.grammar_vocab();
            GrammarCompiler::new(vocab, end_of_generation)
        })?;
        let mut sampler = sampler_for(request, self.weights.vocab_size(), constraint)?;
        // The repeat penalty looks at the prompt as well, as llama-server's does.
        sampler.accept_prompt(&prompt);
        Ok(Prepared {
            prompt,
            sampler,
            stop: request.stop.iter().map(abi_stable::std_types::RString::to_string).collect(),
            max_tokens: request.max_tokens,
            adapters: request.adapters.iter().cloned().collect(),
            logprobs: request.logprobs.into_option(),
        })
    }

    /// The prompt as text: the raw prompt, or the chat rendered with the model's
    /// template as every engine renders it (the SDK's), not llama.cpp's own engine, so
    /// one request is the same prompt on every backend.
    fn render_prompt(&self, request: &GenerateRequest) -> Result<String, PluginError> {
        if let Some(prompt) = request.prompt.as_ref().into_option() {
            return Ok(prompt.to_string());
        }
        if request.messages.is_empty() {
            return Err(PluginError::invalid_request(
                "the request has neither messages nor a prompt",
            ));
        }
        let template = self.template.as_ref().map_err(|error| {
            PluginError::unsupported(format!("model {}: {error}; send a raw prompt", self.id))
        })?;
        template
            .render_request(request)
            .map_err(|error| PluginError::invalid_request(error.to_string()))
    }

    /// Load (once per version of the file) and return the request's adapters with
    /// their scales, in order. A file replaced on disk is loaded anew: serving the old
    /// one would ignore the new file, and a broken replacement must be refused, not
    /// hidden behind the copy that loaded earlier.
    pub fn resolve_adapters<'s>(
        &self,
        loaded: &'s mut Adapters,
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
pub struct FileStamp(Option<(u64, std::time::SystemTime, u64)>);

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

fn sampler_for(
    request: &GenerateRequest,
    vocab_size: i32,
    constraint: Option<Constraint>,
) -> Result<Sampler, PluginError> {
    let sampling = &request.sampling;
    let spec = SamplerSpec {
        temperature: sampling.temperature,
        top_k: i32::try_from(sampling.top_k).unwrap_or(i32::MAX),
        top_p: sampling.top_p,
        min_p: sampling.min_p,
        repeat_penalty: sampling.repeat_penalty,
        repeat_last_n: i32::try_from(sampling.repeat_last_n).unwrap_or(i32::MAX),
        frequency_penalty: request.frequency_penalty,
        presence_penalty: request.presence_penalty,
        logit_bias: request
            .logit_bias
            .iter()
            .filter_map(|bias| Some((Token::try_from(bias.token).ok()?, bias.bias)))
            .filter(|&(token, _)| token < vocab_size)
            .collect(),
        // llama.cpp reads u32::MAX as "pick a random seed"; the modulus keeps every
        // request seed deterministic.
        seed: (sampling.seed % u64::from(u32::MAX)) as u32,
        vocab_size,
        constraint,
    };
    Sampler::new(spec)
        .ok_or_else(|| PluginError::internal("llama.cpp could not create a sampler chain"))
}

impl Loaded {
    /// The weights plus an estimate of the KV cache (f16 keys and values for every
    /// token of the window); llama.cpp's compute scratch is not counted.
    fn memory(&self) -> MemoryUsage {
        // The KV cache of an offloaded layer lives on its device too.
        let bytes = self.weights.size_bytes() + self.context_bytes.load(Ordering::Relaxed);
        let device_bytes = self.offload.device_share(bytes);
        MemoryUsage { host_bytes: bytes - device_bytes, device_bytes }
    }
}

impl Model for LlamaModel {
    fn generate(
        &self,
        request: &GenerateRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<GenerateStats, PluginError> {
        let request = self.loaded.prepare(request)?;
        let (pieces, received) = mpsc::channel();
        let (outcome, result) = mpsc::channel();
        self.engine.submit(Work::Generate(Job { request, pieces, outcome }));
        for output in &received {
            match output {
                Output::Text(piece) => {
                    if sink.on_token(&piece) == SinkControl::Stop {
                        break;
                    }
                }
                Output::Logprobs(logprobs) => sink.on_logprobs(&logprobs),
            }
        }
        // Closing the channel tells the generation to stop, if it has not ended.
        drop(received);
        result.recv().unwrap_or_else(|_| Err(engine_gone()))
    }

    fn trim(&self) {
        let (done, trimmed) = mpsc::channel();
        self.engine.submit(Work::Trim(done));
        let _ = trimmed.recv();
        self.embedder.trim();
    }

    fn count_prompt_tokens(&self, request: &GenerateRequest) -> Result<u32, PluginError> {
        let prompt = self.loaded.render_prompt(request)?;
        let tokens = self
            .loaded
            .weights
            .tokenize(&prompt, true)
            .ok_or_else(|| PluginError::invalid_request("the prompt could not be tokenized"))?;
        Ok(u32::try_from(tokens.len()).unwrap_or(u32::MAX))
    }

    fn embed(&self, text: &str, truncate: bool) -> Result<Embedding, PluginError> {
        self.embedder.embed(&self.loaded, text, truncate)
    }

    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>, PluginError> {
        let tokens = self
            .loaded
            .weights
            .tokenize(text, add_special)
            .ok_or_else(|| PluginError::invalid_request("the text could not be tokenized"))?;
        Ok(tokens.into_iter().filter_map(|token| u32::try_from(token).ok()).collect())
    }

    fn detokenize(&self, tokens: &[u32]) -> Result<String, PluginError> {
        let weights = &self.loaded.weights;
        let mut bytes = Vec::new();
        for &token in tokens {
            let known = Token::try_from(token).ok().filter(|&id| id < weights.vocab_size());
            let Some(token) = known else {
                return Err(PluginError::invalid_request(format!(
                    "token {token} is not in the model's vocabulary"
                )));
            };
            weights.token_bytes(token, &mut bytes);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn memory(&self) -> MemoryUsage {
        self.loaded.memory()
    }
}
