//! The stable ABI itself: the root module every plugin exports and the trait objects
//! hanging off it.
//!
//! Plugin authors do not implement these traits by hand: they implement
//! [`crate::Backend`] and [`crate::Model`], and [`crate::export_backend!`] wraps them
//! in panic guards and in these objects. The host only ever sees this module.
//!
//! Growth is append-only: new trait methods and root-module fields go after the
//! current `#[sabi(last_prefix_field)]`, so an older plugin still loads in a newer host.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::RMut,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RStr},
    StableAbi,
};

use crate::error::PluginError;
use crate::types::{
    BackendInfo, GenerateRequest, GenerateStats, HostProfile, LoadRequest, MemoryUsage, Probe,
    SinkControl,
};

/// A backend: one inference engine, able to load models.
#[sabi_trait]
pub trait AbiBackend: Send + Sync {
    fn info(&self) -> RResult<BackendInfo, PluginError>;
    fn probe(&self, host: &HostProfile) -> RResult<Probe, PluginError>;
    #[sabi(last_prefix_field)]
    fn load(&self, request: &LoadRequest) -> RResult<ModelBox, PluginError>;
}

/// A loaded model. Dropping it unloads it and frees everything it holds.
#[sabi_trait]
pub trait AbiModel: Send + Sync {
    fn generate(
        &self,
        request: &GenerateRequest,
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
