//! A load-error fixture, never installed: it exports a root module under hearth's
//! module name and the SDK's own version, but with a layout a foreign SDK might have
//! had. The host must refuse it by its layout, with a named reason, instead of calling
//! into it.

use abi_stable::{
    declare_root_module_statics, export_root_module, library::RootModule,
    prefix_type::PrefixTypeTrait, sabi_types::VersionStrings, std_types::RString, StableAbi,
};

#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    #[sabi(last_prefix_field)]
    pub greeting: extern "C" fn(u64) -> RString,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "hearth_plugin";
    const NAME: &'static str = "hearth_plugin";
    const VERSION_STRINGS: VersionStrings =
        <hearth_sdk::abi::PluginModuleRef as RootModule>::VERSION_STRINGS;
}

extern "C" fn greeting(times: u64) -> RString {
    "hello ".repeat(times as usize).into()
}

#[export_root_module]
pub fn root_module() -> PluginModuleRef {
    PluginModule { greeting }.leak_into_prefix()
}
