//! How the registry learns what a plugin library is — who it is and what its probe finds
//! on this machine — and, for models that run in the host, its backend object.
//!
//! Two ways to learn it: [`InProcess`] loads the library into this process, where it
//! then serves in-process models; the worker describer (`isolation::WorkerDescriber`)
//! asks a short-lived worker process, so a backend whose models run in workers is never
//! mapped into the host at all, and a plugin that crashes while starting up or probing
//! takes down only that worker. A library described by a worker is loaded into the
//! host later only if one of its models is configured to run in process.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use hearth_sdk::abi::BackendBox;
use hearth_sdk::{HostProfile, Probe};

use super::library::{load_plugin, KeptLibrary, LoadedPlugin, PluginInfo, PluginLoadError};

/// What describing a library found.
pub struct Description {
    pub info: PluginInfo,
    pub probe: Probe,
    /// The library, when describing it loaded it into this process.
    pub library: Option<LoadedPlugin>,
}

/// A way of describing plugin libraries.
pub trait Describe: Sync {
    fn describe(&self, path: &Path) -> Result<Description, PluginLoadError>;

    /// Describe several libraries; the results are in the order of `paths`.
    fn describe_all(&self, paths: &[PathBuf]) -> Vec<Result<Description, PluginLoadError>> {
        paths.iter().map(|path| self.describe(path)).collect()
    }
}

/// Describe a library by loading it into this process and probing it here.
pub struct InProcess {
    pub host: HostProfile,
}

impl Describe for InProcess {
    fn describe(&self, path: &Path) -> Result<Description, PluginLoadError> {
        let plugin = load_plugin(path)?;
        let probe = plugin.probe(&self.host);
        Ok(Description { info: plugin.info.clone(), probe, library: Some(plugin) })
    }
}

/// One build of a plugin in the registry: who it is, what its probe found, and its
/// library in this process once anything needed it here.
#[derive(Clone)]
pub struct RegisteredPlugin {
    pub info: PluginInfo,
    pub probe: Probe,
    /// Which build this is, unique in the process: a rebuilt plugin is a new generation,
    /// and models loaded through an older one are told apart by it.
    pub generation: u64,
    /// Shared by the registry's copies of this entry, so the library is loaded once.
    library: Arc<Mutex<Option<LoadedPlugin>>>,
    /// The file this build was described from, which every load of it reads.
    kept: Arc<KeptLibrary>,
}

impl std::fmt::Debug for RegisteredPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredPlugin")
            .field("info", &self.info)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl RegisteredPlugin {
    pub fn new(description: Description, generation: u64, kept: Arc<KeptLibrary>) -> Self {
        Self {
            info: description.info,
            probe: description.probe,
            generation,
            library: Arc::new(Mutex::new(description.library)),
            kept,
        }
    }

    /// The kept file itself, for a holder that must keep it on disk (a model's runner,
    /// which may start a fresh worker of this build after the registry dropped it).
    pub fn kept(&self) -> Arc<KeptLibrary> {
        self.kept.clone()
    }

    /// The backend object in this process, for models that run here. A library that a
    /// worker described is loaded now, the first time it is needed.
    pub fn in_process(&self) -> Result<Arc<BackendBox>, PluginLoadError> {
        let mut library = self.library.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(loaded) = library.as_ref() {
            return Ok(loaded.backend.clone());
        }
        let loaded = load_plugin(self.kept.path())?;
        if loaded.info.id != self.info.id {
            return Err(PluginLoadError::Changed {
                described: self.info.id.clone(),
                now: loaded.info.id.clone(),
            });
        }
        tracing::info!(id = %self.info.id, path = %self.info.path.display(), "plugin loaded into the host for an in-process model");
        let backend = loaded.backend.clone();
        *library = Some(loaded);
        Ok(backend)
    }
}
