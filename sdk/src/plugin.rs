//! The side plugin authors write: two plain Rust traits, the panic guards that wrap
//! them, and the export macro.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RSlice, RStr, RString, RVec},
};

use crate::abi::{
    AbiBackend, AbiBackend_TO, AbiModel, AbiModel_TO, AbiTokenSink, BackendBox,
    GenerateRequestView, LoadRequestView, ModelBox, TokenSinkMut,
};
use crate::error::{ErrorKind, PluginError};
use crate::types::{
    BackendInfo, Embedding, GenerateRequest, GenerateStats, HostProfile, LoadRequest, MemoryUsage,
    Probe, SinkControl, TokenLogprobs,
};

/// An inference engine. Implement this, then export it with [`crate::export_backend!`].
///
/// Every method may be called from any host thread, and `load` may run concurrently
/// with generation on models loaded earlier. Calls block; the host never calls them
/// from its async runtime.
pub trait Backend: Send + Sync + 'static {
    /// Who the backend is. Called once, right after construction.
    fn info(&self) -> BackendInfo;
    /// What this machine offers the backend. Cheap enough to call at every start.
    fn probe(&self, host: &HostProfile) -> Probe;
    /// Load a model. The returned object owns everything the model holds.
    fn load(&self, request: &LoadRequest) -> Result<Box<dyn Model>, PluginError>;
}

/// A loaded model. Dropping it must free all of its host and device memory.
pub trait Model: Send + Sync + 'static {
    /// Generate, streaming each piece of text through `sink`; stop early when the sink
    /// says [`SinkControl::Stop`]. Pieces must be whole UTF-8 (never half a character).
    fn generate(
        &self,
        request: &GenerateRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<GenerateStats, PluginError>;
    /// Soft release: free KV cache, scratch and caches, keep the weights. The next
    /// `generate` must work, rebuilding what it needs.
    fn trim(&self);
    /// What the model holds now.
    fn memory(&self) -> MemoryUsage;
    /// The model's token ids for `text`, with the tokens the model adds itself (a
    /// beginning-of-sequence token) when `add_special`. A backend that implements it
    /// lists [`crate::feature::TOKENIZE`].
    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>, PluginError> {
        let _ = (text, add_special);
        Err(PluginError::unsupported("this backend does not tokenize on request"))
    }
    /// The text of `tokens` (control tokens render as nothing).
    fn detokenize(&self, tokens: &[u32]) -> Result<String, PluginError> {
        let _ = tokens;
        Err(PluginError::unsupported("this backend does not detokenize on request"))
    }
    /// The embedding of `text`, pooled as the model says; a text longer than the model
    /// reads at once is cut to fit when `truncate`, refused otherwise. A backend that
    /// implements it lists [`crate::feature::EMBEDDINGS`].
    fn embed(&self, text: &str, truncate: bool) -> Result<Embedding, PluginError> {
        let _ = (text, truncate);
        Err(PluginError::unsupported("this backend does not embed"))
    }
    /// How many tokens `request`'s prompt is, as [`Model::generate`] would read it
    /// (the chat through the template, or the raw prompt). A backend that implements it
    /// lists [`crate::feature::TOKENIZE`].
    fn count_prompt_tokens(&self, request: &GenerateRequest) -> Result<u32, PluginError> {
        let _ = request;
        Err(PluginError::unsupported("this backend does not count prompt tokens"))
    }
}

/// Where a plugin sends generated text.
pub trait TokenSink {
    fn on_token(&mut self, piece: &str) -> SinkControl;
    /// The log-probabilities of the token chosen next, when the request asked for them
    /// ([`GenerateRequest::logprobs`]): called once per generated token, before the
    /// text it completes is passed to [`TokenSink::on_token`]. Sinks that do not
    /// report them ignore it.
    fn on_logprobs(&mut self, logprobs: &TokenLogprobs) {
        let _ = logprobs;
    }
}

impl TokenSink for TokenSinkMut<'_> {
    fn on_token(&mut self, piece: &str) -> SinkControl {
        AbiTokenSink::on_token(self, RStr::from(piece))
    }

    fn on_logprobs(&mut self, logprobs: &TokenLogprobs) {
        AbiTokenSink::on_logprobs(self, logprobs);
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// Run `f`, turning a panic into a [`ErrorKind::Panicked`] error naming `what`.
pub fn guard<T>(what: &str, f: impl FnOnce() -> Result<T, PluginError>) -> RResult<T, PluginError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => RResult::ROk(value),
        Ok(Err(error)) => RResult::RErr(error),
        Err(payload) => RResult::RErr(PluginError::new(
            ErrorKind::Panicked,
            format!("plugin panicked in {what}: {}", panic_message(payload.as_ref())),
        )),
    }
}

struct GuardedBackend<B>(B);

impl<B: Backend> AbiBackend for GuardedBackend<B> {
    fn info(&self) -> RResult<BackendInfo, PluginError> {
        guard("info", || Ok(self.0.info()))
    }

    fn probe(&self, host: &HostProfile) -> RResult<Probe, PluginError> {
        guard("probe", || Ok(self.0.probe(host)))
    }

    fn load(&self, request: LoadRequestView<'_>) -> RResult<ModelBox, PluginError> {
        guard("load", || {
            let model = self.0.load(&LoadRequest::from_view(&request))?;
            Ok(AbiModel_TO::from_value(GuardedModel(model), TD_Opaque))
        })
    }
}

struct GuardedModel(Box<dyn Model>);

impl AbiModel for GuardedModel {
    fn generate(
        &self,
        request: GenerateRequestView<'_>,
        mut sink: TokenSinkMut<'_>,
    ) -> RResult<GenerateStats, PluginError> {
        guard("generate", || self.0.generate(&GenerateRequest::from_view(&request), &mut sink))
    }

    fn trim(&self) -> RResult<(), PluginError> {
        guard("trim", || {
            self.0.trim();
            Ok(())
        })
    }

    fn memory(&self) -> RResult<MemoryUsage, PluginError> {
        guard("memory", || Ok(self.0.memory()))
    }

    fn tokenize(&self, text: RStr<'_>, add_special: bool) -> RResult<RVec<u32>, PluginError> {
        guard("tokenize", || self.0.tokenize(text.as_str(), add_special).map(RVec::from))
    }

    fn detokenize(&self, tokens: RSlice<'_, u32>) -> RResult<RString, PluginError> {
        guard("detokenize", || self.0.detokenize(tokens.as_slice()).map(RString::from))
    }

    fn embed(&self, text: RStr<'_>, truncate: bool) -> RResult<Embedding, PluginError> {
        guard("embed", || self.0.embed(text.as_str(), truncate))
    }

    fn count_prompt_tokens(&self, request: GenerateRequestView<'_>) -> RResult<u32, PluginError> {
        guard("count_prompt_tokens", || {
            self.0.count_prompt_tokens(&GenerateRequest::from_view(&request))
        })
    }
}

impl Drop for GuardedModel {
    fn drop(&mut self) {
        // A panic while unloading must not cross the boundary; the memory is lost
        // either way, so the panic is reported on stderr and swallowed.
        let model = std::mem::replace(&mut self.0, Box::new(Unloaded));
        if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(model))) {
            eprintln!(
                "hearth plugin panicked while unloading a model: {}",
                panic_message(payload.as_ref())
            );
        }
    }
}

/// What a [`GuardedModel`] holds while its real model is being dropped.
struct Unloaded;

impl Model for Unloaded {
    fn generate(
        &self,
        _: &GenerateRequest,
        _: &mut dyn TokenSink,
    ) -> Result<GenerateStats, PluginError> {
        Err(PluginError::internal("model was unloaded"))
    }
    fn trim(&self) {}
    fn memory(&self) -> MemoryUsage {
        MemoryUsage::default()
    }
}

/// Build the ABI object for a backend constructor, catching a panic in it. Used by
/// [`crate::export_backend!`]; not meant to be called directly.
#[doc(hidden)]
pub fn construct_backend<B: Backend>(
    constructor: impl FnOnce() -> Result<B, PluginError>,
) -> RResult<BackendBox, PluginError> {
    guard("init", || {
        let backend = constructor()?;
        Ok(AbiBackend_TO::from_value(GuardedBackend(backend), TD_Opaque))
    })
}

/// Export a backend from a `cdylib` plugin crate.
///
/// The argument is an expression of type `fn() -> Result<B, PluginError>` where
/// `B: Backend`. The plugin crate must also depend on `abi_stable` (its export
/// attribute expands to paths in that crate).
///
/// ```ignore
/// hearth_sdk::export_backend!(MyBackend::new);
/// ```
#[macro_export]
macro_rules! export_backend {
    ($constructor:expr) => {
        extern "C" fn __hearth_new_backend(
        ) -> $crate::abi_stable::std_types::RResult<$crate::abi::BackendBox, $crate::PluginError> {
            $crate::plugin::construct_backend($constructor)
        }

        #[::abi_stable::export_root_module]
        pub fn __hearth_root_module() -> $crate::abi::PluginModuleRef {
            use $crate::abi_stable::prefix_type::PrefixTypeTrait;
            $crate::abi::PluginModule { new_backend: __hearth_new_backend }.leak_into_prefix()
        }
    };
}
