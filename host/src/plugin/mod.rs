//! Backend plugins: finding them in the plugins folder, loading them through the
//! stable ABI, and the registry of what loaded and what was refused.
//!
//! A library is loaded with `lib_header_from_path(..).init_root_module()`, once per
//! file, never through `RootModule::load_from_*` (which caches one module per type
//! and would hand every plugin the first one's module). Libraries are never unloaded.

mod loader;
mod registry;
mod runner;

pub use loader::{load_plugin, LoadedPlugin, PluginInfo, PluginLoadError};
pub use registry::{PluginFailure, PluginRegistry};
pub use runner::PluginRunner;
