//! The stable ABI itself: the root module every plugin exports and the trait objects
//! hanging off it.
//!
//! Plugin authors do not implement these traits by hand: they implement
//! [`crate::Backend`] and [`crate::Model`], and [`crate::export_backend!`] wraps them
//! in panic guards and in these objects. The host only ever sees this module.
//!
//! # How the ABI grows
//!
//! Growth is append-only, and every way of growing is one abi_stable checks:
//! - A trait here gains methods after its `#[sabi(last_prefix_field)]`. A method a
//!   plugin calls on the host (the request views, the token sink) is always there,
//!   because the host is never older than the plugin. A method the host calls on a
//!   plugin gets a default body, which abi_stable runs when the plugin predates it.
//! - The requests ([`LoadRequest`], [`GenerateRequest`]) cross as views: a plugin
//!   reads them through methods, so a new field is a new method at the end, and a
//!   plugin built before it simply never asks.
//! - The enums are open ([`crate::open_enum!`]): a new value is not a new layout.
//!
//! Anything else (a field in an answer struct, a method moved or removed) is a new
//! major version of the SDK, and abi_stable refuses the older plugins by name.

use abi_stable::{
    abi_stability::abi_checking::{check_layout_compatibility_with_globals, CheckingGlobals},
    declare_root_module_statics,
    library::{IsLayoutChecked, LibHeader, LibraryError, RootModule},
    package_version_strings, sabi_trait,
    sabi_trait::TD_Opaque,
    sabi_types::VersionNumber,
    sabi_types::VersionStrings,
    sabi_types::{RMut, RRef},
    std_types::RBoxError,
    std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec},
    StableAbi,
};

use crate::error::PluginError;
use crate::plugin::TokenSink;
use crate::types::{
    AdapterUse, BackendInfo, ChatMessage, Embedding, GenerateRequest, GenerateStats, HostProfile,
    LoadRequest, LogitBias, MemoryUsage, Probe, Sampling, SinkControl, SplitMode, TokenLogprobs,
};

/// A [`LoadRequest`] as the host lends it to a plugin for one call.
#[sabi_trait]
pub trait AbiLoadRequest {
    fn model_id(&self) -> RStr<'_>;
    fn paths(&self) -> RSlice<'_, RString>;
    fn format(&self) -> RStr<'_>;
    fn context_size(&self) -> u32;
    fn threads(&self) -> u32;
    #[sabi(last_prefix_field)]
    fn device(&self) -> ROption<RStr<'_>>;
    // Since 2.3.
    fn split_mode(&self) -> SplitMode;
    fn main_device(&self) -> ROption<RStr<'_>>;
}

impl AbiLoadRequest for LoadRequest {
    fn model_id(&self) -> RStr<'_> {
        self.model_id.as_rstr()
    }
    fn paths(&self) -> RSlice<'_, RString> {
        self.paths.as_rslice()
    }
    fn format(&self) -> RStr<'_> {
        self.format.as_rstr()
    }
    fn context_size(&self) -> u32 {
        self.context_size
    }
    fn threads(&self) -> u32 {
        self.threads
    }
    fn device(&self) -> ROption<RStr<'_>> {
        self.device.as_ref().map(RString::as_rstr)
    }
    fn split_mode(&self) -> SplitMode {
        self.split_mode
    }
    fn main_device(&self) -> ROption<RStr<'_>> {
        self.main_device.as_ref().map(RString::as_rstr)
    }
}

/// A borrowed [`LoadRequest`] view.
pub type LoadRequestView<'a> = AbiLoadRequest_TO<'a, RRef<'a, ()>>;

impl LoadRequest {
    /// Lend this request to a plugin for one call.
    pub fn view(&self) -> LoadRequestView<'_> {
        AbiLoadRequest_TO::from_ptr(self, TD_Opaque)
    }

    /// The request a plugin was lent, as far as its version of the SDK reads it.
    pub fn from_view(view: &LoadRequestView<'_>) -> Self {
        Self {
            model_id: view.model_id().into(),
            paths: view.paths().to_rvec(),
            format: view.format().into(),
            context_size: view.context_size(),
            threads: view.threads(),
            device: view.device().map(RString::from),
            split_mode: view.split_mode(),
            main_device: view.main_device().map(RString::from),
        }
    }
}

/// A [`GenerateRequest`] as the host lends it to a plugin for one generation.
#[sabi_trait]
pub trait AbiGenerateRequest {
    fn messages(&self) -> RSlice<'_, ChatMessage>;
    fn prompt(&self) -> ROption<RStr<'_>>;
    fn sampling(&self) -> Sampling;
    fn stop(&self) -> RSlice<'_, RString>;
    fn max_tokens(&self) -> u32;
    #[sabi(last_prefix_field)]
    fn adapters(&self) -> RSlice<'_, AdapterUse>;
    // Since 2.1.
    fn presence_penalty(&self) -> f32;
    fn frequency_penalty(&self) -> f32;
    fn logit_bias(&self) -> RSlice<'_, LogitBias>;
    fn logprobs(&self) -> ROption<u32>;
    // Since 2.2.
    fn grammar(&self) -> RStr<'_>;
    // Since 2.4.
    fn tools(&self) -> RStr<'_>;
    fn message_extras(&self) -> RSlice<'_, RString>;
}

impl AbiGenerateRequest for GenerateRequest {
    fn messages(&self) -> RSlice<'_, ChatMessage> {
        self.messages.as_rslice()
    }
    fn prompt(&self) -> ROption<RStr<'_>> {
        self.prompt.as_ref().map(RString::as_rstr)
    }
    fn sampling(&self) -> Sampling {
        self.sampling
    }
    fn stop(&self) -> RSlice<'_, RString> {
        self.stop.as_rslice()
    }
    fn max_tokens(&self) -> u32 {
        self.max_tokens
    }
    fn adapters(&self) -> RSlice<'_, AdapterUse> {
        self.adapters.as_rslice()
    }
    fn presence_penalty(&self) -> f32 {
        self.presence_penalty
    }
    fn frequency_penalty(&self) -> f32 {
        self.frequency_penalty
    }
    fn logit_bias(&self) -> RSlice<'_, LogitBias> {
        self.logit_bias.as_rslice()
    }
    fn logprobs(&self) -> ROption<u32> {
        self.logprobs
    }
    fn grammar(&self) -> RStr<'_> {
        self.grammar.as_rstr()
    }
    fn tools(&self) -> RStr<'_> {
        self.tools.as_rstr()
    }
    fn message_extras(&self) -> RSlice<'_, RString> {
        self.message_extras.as_rslice()
    }
}

/// A borrowed [`GenerateRequest`] view.
pub type GenerateRequestView<'a> = AbiGenerateRequest_TO<'a, RRef<'a, ()>>;

impl GenerateRequest {
    /// Lend this request to a plugin for one generation.
    pub fn view(&self) -> GenerateRequestView<'_> {
        AbiGenerateRequest_TO::from_ptr(self, TD_Opaque)
    }

    /// The request a plugin was lent, as far as its version of the SDK reads it.
    pub fn from_view(view: &GenerateRequestView<'_>) -> Self {
        Self {
            messages: view.messages().to_rvec(),
            prompt: view.prompt().map(RString::from),
            sampling: view.sampling(),
            stop: view.stop().to_rvec(),
            max_tokens: view.max_tokens(),
            adapters: view.adapters().to_rvec(),
            presence_penalty: view.presence_penalty(),
            frequency_penalty: view.frequency_penalty(),
            logit_bias: view.logit_bias().to_rvec(),
            logprobs: view.logprobs(),
            grammar: view.grammar().into(),
            tools: view.tools().into(),
            message_extras: view.message_extras().to_rvec(),
        }
    }
}

/// A backend: one inference engine, able to load models.
#[sabi_trait]
pub trait AbiBackend: Send + Sync {
    fn info(&self) -> RResult<BackendInfo, PluginError>;
    fn probe(&self, host: &HostProfile) -> RResult<Probe, PluginError>;
    #[sabi(last_prefix_field)]
    fn load(&self, request: LoadRequestView<'_>) -> RResult<ModelBox, PluginError>;
}

/// A loaded model. Dropping it unloads it and frees everything it holds.
#[sabi_trait]
pub trait AbiModel: Send + Sync {
    fn generate(
        &self,
        request: GenerateRequestView<'_>,
        sink: TokenSinkMut<'_>,
    ) -> RResult<GenerateStats, PluginError>;
    /// Soft release: caches and scratch go, weights stay.
    fn trim(&self) -> RResult<(), PluginError>;
    #[sabi(last_prefix_field)]
    fn memory(&self) -> RResult<MemoryUsage, PluginError>;
    /// Since 2.1; a plugin built before it answers with this default body.
    fn tokenize(&self, text: RStr<'_>, add_special: bool) -> RResult<RVec<u32>, PluginError> {
        let _ = (text, add_special);
        RResult::RErr(not_in_this_plugin("tokenize"))
    }
    /// Since 2.1; a plugin built before it answers with this default body.
    fn detokenize(&self, tokens: RSlice<'_, u32>) -> RResult<RString, PluginError> {
        let _ = tokens;
        RResult::RErr(not_in_this_plugin("detokenize"))
    }
    /// Since 2.1; a plugin built before it answers with this default body.
    fn embed(&self, text: RStr<'_>, truncate: bool) -> RResult<Embedding, PluginError> {
        let _ = (text, truncate);
        RResult::RErr(not_in_this_plugin("embed"))
    }
    /// Since 2.1; a plugin built before it answers with this default body.
    fn count_prompt_tokens(&self, request: GenerateRequestView<'_>) -> RResult<u32, PluginError> {
        let _ = request;
        RResult::RErr(not_in_this_plugin("count_prompt_tokens"))
    }
}

/// The answer of a method a plugin predates.
fn not_in_this_plugin(method: &str) -> PluginError {
    PluginError::unsupported(format!(
        "the plugin was built against an SDK without `{method}`; rebuild it against this one"
    ))
}

/// Where generated text goes, implemented by the host.
#[sabi_trait]
pub trait AbiTokenSink {
    #[sabi(last_prefix_field)]
    fn on_token(&mut self, piece: RStr<'_>) -> SinkControl;
    /// Since 2.1.
    fn on_logprobs(&mut self, logprobs: &TokenLogprobs);
}

/// The host's side of a generation: lend `request` and `sink` to a plugin's model.
pub fn generate(
    model: &ModelBox,
    request: &GenerateRequest,
    sink: &mut dyn TokenSink,
) -> Result<GenerateStats, PluginError> {
    let mut bridge = SinkBridge(sink);
    model.generate(request.view(), AbiTokenSink_TO::from_ptr(&mut bridge, TD_Opaque)).into_result()
}

/// A host's [`TokenSink`] lent to a plugin.
struct SinkBridge<'a>(&'a mut dyn TokenSink);

impl AbiTokenSink for SinkBridge<'_> {
    fn on_token(&mut self, piece: RStr<'_>) -> SinkControl {
        self.0.on_token(piece.as_str())
    }

    fn on_logprobs(&mut self, logprobs: &TokenLogprobs) {
        self.0.on_logprobs(logprobs);
    }
}

/// An owned backend object, created and freed by the plugin.
pub type BackendBox = AbiBackend_TO<'static, RBox<()>>;
/// An owned model object, created and freed by the plugin.
pub type ModelBox = AbiModel_TO<'static, RBox<()>>;
/// A borrowed token sink, lent by the host for one generation.
pub type TokenSinkMut<'a> = AbiTokenSink_TO<'a, RMut<'a, ()>>;

/// The root module of a plugin library. Its only job is to construct the backend.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    #[sabi(last_prefix_field)]
    pub new_backend: extern "C" fn() -> RResult<BackendBox, PluginError>,
}

/// The root module of a plugin library, checked as a host of this SDK version must
/// check it: the plugin may be built against an older minor version than the host.
///
/// abi_stable's own check (`init_root_module`) is made for the other direction, a
/// library newer than its loader: it refuses a vtable of the loader's with more
/// methods than the library's. hearth's host is the newer side, so it checks with the
/// roles swapped: every vtable and module the plugin knows must be a prefix of the
/// host's. That is sound both ways a vtable crosses. One the host makes (a request
/// view, the token sink) has every method the plugin knows. One the plugin makes (its
/// backend, its models) may lack methods added since; its metadata says which it has,
/// so calling one of those runs the method's default body instead.
///
/// A plugin built against a newer minor version than the host is refused by its
/// version, before its layout is looked at.
pub fn plugin_module(header: &LibHeader) -> Result<PluginModuleRef, LibraryError> {
    let plugin = VersionNumber::new(header.version_strings())?;
    let host = VersionNumber::new(PluginModuleRef::VERSION_STRINGS)?;
    if plugin.major != host.major || plugin.minor > host.minor {
        return Err(LibraryError::IncompatibleVersionNumber {
            library_name: PluginModuleRef::NAME,
            expected_version: host,
            actual_version: plugin,
        });
    }
    let IsLayoutChecked::Yes(layout) = header.root_mod_consts().layout() else {
        return Err(LibraryError::AbiInstability(RBoxError::from_fmt(
            &"the library carries no type layout to check",
        )));
    };
    // Checked against the host alone, not merged into abi_stable's process-wide record
    // of every library's prefix types: that record serves libraries that pass objects
    // among themselves, and merging an older plugin's vtables into it makes it refuse
    // the next newer one. hearth's plugins only ever talk to the host.
    check_layout_compatibility_with_globals(
        layout,
        PluginModuleRef::LAYOUT,
        &CheckingGlobals::new(),
    )
    .map_err(|errors| LibraryError::AbiInstability(RBoxError::from_fmt(&errors)))?;
    // SAFETY: the layouts were checked just above, with the roles this ABI needs.
    unsafe { header.init_root_module_with_unchecked_layout::<PluginModuleRef>() }
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "hearth_plugin";
    const NAME: &'static str = "hearth_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
