//! The glue between the scheduler and the plugins, and between the router and the
//! store.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use hearth_sdk::{HostProfile, PluginError};

use crate::catalog::{Artifact, Catalog, Isolation};
use crate::isolation::{CrashLog, ProcessRunner, WorkerDescriber, WorkerSpec};
use crate::lifecycle::{LoadSpec, Loader, Runner};
use crate::plugin::{Describe, InProcess, PluginRegistry, PluginRunner};
use crate::router::Installed;
use crate::store::Store;

/// The registry in force, swapped whole when the plugins folder changes.
pub(super) type SharedRegistry = Arc<RwLock<Arc<PluginRegistry>>>;

/// The catalog in force, swapped whole when the file changes.
pub(super) type SharedCatalog = Arc<RwLock<Arc<Catalog>>>;

/// Loads models through the plugin that provides the requested backend now, in the
/// host process or in a worker process as the isolation settings say.
pub(super) struct PluginLoader {
    registry: SharedRegistry,
    catalog: SharedCatalog,
    /// For its isolation settings.
    config: super::HearthConfig,
    crashes: Arc<CrashLog>,
}

impl PluginLoader {
    pub(super) fn new(
        registry: SharedRegistry,
        catalog: SharedCatalog,
        config: &super::HearthConfig,
    ) -> Self {
        Self { registry, catalog, config: config.clone(), crashes: Arc::default() }
    }
}

impl Loader for PluginLoader {
    /// Loads through the current build of the backend. A key naming an older build
    /// (the plugin was replaced between routing and loading) still loads on the current
    /// one: the old build takes no new work, and that entry idles out like any other.
    fn load(&self, spec: &LoadSpec) -> Result<Arc<dyn Runner>, PluginError> {
        let registry =
            self.registry.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let plugin = registry.get(&spec.key.backend).ok_or_else(|| {
            PluginError::unsupported(format!("no plugin provides backend `{}`", spec.key.backend))
        })?;
        // Read at every load, so an edited [isolation] section applies to the next one.
        let catalog =
            self.catalog.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if self.config.isolation_for(&catalog, &spec.key.backend) == Isolation::InProcess {
            let backend = plugin.in_process().map_err(|error| {
                PluginError::internal(format!(
                    "cannot load the `{}` plugin into the host: {error}",
                    spec.key.backend
                ))
            })?;
            let model = backend.load(spec.request.view()).into_result()?;
            return Ok(Arc::new(PluginRunner::new(model)));
        }
        let program = self.config.worker_program().map_err(|error| {
            PluginError::internal(format!("cannot find the hearth binary to run workers: {error}"))
        })?;
        let spec = WorkerSpec {
            program,
            plugin: plugin.kept(),
            backend: spec.key.backend.clone(),
            load: spec.request.clone(),
            stall_timeout: catalog.isolation.stall_timeout,
        };
        Ok(Arc::new(ProcessRunner::start(spec, self.crashes.clone())?))
    }
}

/// How plugins are described under `catalog`: by worker processes when any backend's
/// models may run in one, else by loading them here.
pub(super) fn describer(
    config: &super::HearthConfig,
    catalog: &Catalog,
    host: HostProfile,
) -> Box<dyn Describe> {
    if !config.uses_workers(catalog) {
        return Box::new(InProcess { host });
    }
    match config.worker_program() {
        Ok(program) => {
            Box::new(WorkerDescriber { program, host, timeout: catalog.isolation.stall_timeout })
        }
        Err(error) => {
            tracing::warn!(%error, "cannot find the hearth binary to describe plugins in workers; loading them here");
            Box::new(InProcess { host })
        }
    }
}

/// The router's view of what is installed: a file in the store.
pub(super) struct StoreInstalled<'a>(pub(super) &'a Store);

impl Installed for StoreInstalled<'_> {
    fn path_of(&self, model_id: &str, artifact: &Artifact) -> Option<PathBuf> {
        self.0.model_path(model_id, &artifact.file).ok().filter(|path| path.is_file())
    }
}
