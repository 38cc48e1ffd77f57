//! Backend plugins: finding them in the plugins folder, describing them (in this
//! process, or in a worker process when their models run in workers), loading them
//! through the stable ABI, the registry of what is in service and what was refused, and
//! noticing when the folder changes.
//!
//! A library is loaded with `lib_header_from_path(..).init_root_module()`, once per
//! file version and from a private copy, never through `RootModule::load_from_*`
//! (which caches one module per type and would hand every plugin the first one's
//! module). Libraries are never unloaded from the host: a replaced plugin's old build
//! stays resident so requests in flight on it finish. Only backends with in-process
//! models are loaded into the host at all; those in worker processes leave with their
//! workers.

mod describe;
mod elf;
mod folder;
mod library;
mod plugin_runner;
mod registry;

pub use describe::{Describe, Description, InProcess, RegisteredPlugin};
pub use folder::{FolderChanges, FolderTracker};
pub use library::{
    load_plugin, remove_private_copies, KeptLibrary, LoadedPlugin, PluginInfo, PluginLoadError,
};
pub use plugin_runner::PluginRunner;
pub use registry::{PluginFailure, PluginRegistry};
