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
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_trait::TD_Opaque,
    sabi_types::VersionStrings,
    sabi_types::{RMut, RRef},
    std_types::{RBox, ROption, RResult, RSlice, RStr, RString},
    StableAbi,
};

use crate::error::PluginError;
use crate::types::{
    AdapterUse, BackendInfo, ChatMessage, GenerateRequest, GenerateStats, HostProfile, LoadRequest,
    MemoryUsage, Probe, Sampling, SinkControl,
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
}

/// Where generated text goes, implemented by the host.
#[sabi_trait]
pub trait AbiTokenSink {
    #[sabi(last_prefix_field)]
    fn on_token(&mut self, piece: RStr<'_>) -> SinkControl;
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

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "hearth_plugin";
    const NAME: &'static str = "hearth_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
