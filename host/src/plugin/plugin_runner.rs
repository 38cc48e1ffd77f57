//! A model loaded by a plugin, seen through the ABI as plain Rust calls.

use hearth_sdk::abi::ModelBox;
use hearth_sdk::abi_stable::std_types::{RString, RVec};
use hearth_sdk::{Embedding, GenerateRequest, GenerateStats, MemoryUsage, PluginError, TokenSink};

use crate::lifecycle::Runner;

/// One loaded model. Dropping it asks the plugin to unload the model.
pub struct PluginRunner {
    model: ModelBox,
}

impl PluginRunner {
    pub fn new(model: ModelBox) -> Self {
        Self { model }
    }

    pub fn generate(
        &self,
        request: &GenerateRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<GenerateStats, PluginError> {
        hearth_sdk::abi::generate(&self.model, request, sink)
    }

    pub fn trim(&self) -> Result<(), PluginError> {
        self.model.trim().into_result()
    }

    pub fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>, PluginError> {
        self.model.tokenize(text.into(), add_special).into_result().map(RVec::into_vec)
    }

    pub fn detokenize(&self, tokens: &[u32]) -> Result<String, PluginError> {
        self.model.detokenize(tokens.into()).into_result().map(RString::into_string)
    }

    pub fn count_prompt_tokens(&self, request: &GenerateRequest) -> Result<u32, PluginError> {
        self.model.count_prompt_tokens(request.view()).into_result()
    }

    pub fn embed(&self, text: &str, truncate: bool) -> Result<Embedding, PluginError> {
        self.model.embed(text.into(), truncate).into_result()
    }

    /// What the model holds; a plugin that fails to say reads as holding nothing.
    pub fn memory(&self) -> MemoryUsage {
        self.model.memory().into_result().unwrap_or_default()
    }
}

/// How the scheduler drives a model loaded in this process.
impl Runner for PluginRunner {
    fn generate(
        &self,
        request: &GenerateRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<GenerateStats, PluginError> {
        PluginRunner::generate(self, request, sink)
    }

    fn trim(&self) -> Result<(), PluginError> {
        PluginRunner::trim(self)
    }

    fn memory(&self) -> MemoryUsage {
        PluginRunner::memory(self)
    }

    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>, PluginError> {
        PluginRunner::tokenize(self, text, add_special)
    }

    fn detokenize(&self, tokens: &[u32]) -> Result<String, PluginError> {
        PluginRunner::detokenize(self, tokens)
    }

    fn embed(&self, text: &str, truncate: bool) -> Result<Embedding, PluginError> {
        PluginRunner::embed(self, text, truncate)
    }

    fn count_prompt_tokens(&self, request: &GenerateRequest) -> Result<u32, PluginError> {
        PluginRunner::count_prompt_tokens(self, request)
    }
}
