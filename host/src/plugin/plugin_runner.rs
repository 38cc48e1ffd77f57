//! A model loaded by a plugin, seen through the ABI as plain Rust calls.

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::RStr;
use hearth_sdk::abi::{AbiTokenSink, AbiTokenSink_TO, ModelBox};
use hearth_sdk::{
    GenerateRequest, GenerateStats, MemoryUsage, PluginError, SinkControl, TokenSink,
};

use crate::lifecycle::Runner;

/// Lends the host's sink to the plugin for one generation.
struct SinkBridge<'a>(&'a mut dyn TokenSink);

impl AbiTokenSink for SinkBridge<'_> {
    fn on_token(&mut self, piece: RStr<'_>) -> SinkControl {
        self.0.on_token(piece.as_str())
    }
}

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
        let mut bridge = SinkBridge(sink);
        let sink = AbiTokenSink_TO::from_ptr(&mut bridge, TD_Opaque);
        self.model.generate(request.view(), sink).into_result()
    }

    pub fn trim(&self) -> Result<(), PluginError> {
        self.model.trim().into_result()
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
}
