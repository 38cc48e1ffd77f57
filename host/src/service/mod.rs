//! The service: everything a request needs, in one place — the catalog in force, the
//! plugin registry, the device profile, the model store and the scheduler — and the
//! generation path that routes a request, loads with fallback and streams the answer.
//!
//! The CLI and the HTTP API are thin layers over [`Hearth`].

mod config;
mod embed;
mod gate;
mod generate;
mod install;
mod model_loader;
mod reload;
mod tokens;
mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use hearth_sdk::HostProfile;
use serde::Serialize;

use crate::catalog::{Catalog, CatalogError};
use crate::device::DeviceProfile;
use crate::lifecycle::{
    IdleTimeouts, LoadedModelSnapshot, ModelKey, Scheduler, SchedulerError, SchedulerPolicy,
};
use crate::plugin::{PluginFailure, PluginInfo, PluginRegistry};
use crate::router::{self, RoutePlan, RouteRequest};
use crate::store::Store;

pub use config::{default_home, CatalogSource, HearthConfig};
pub use embed::Embedded;
pub use gate::{FileGate, FileRefused};
pub use generate::{
    Completion, Emitted, Generation, LoadFailure, Prepared, ServiceError, TokenStream,
};
pub use install::{InstallError, InstallPlan};
use model_loader::{PluginLoader, SharedCatalog, SharedRegistry, StoreInstalled};
pub use reload::{CatalogProblem, CatalogReload};
pub use tokens::Tokenized;
pub use watch::Watching;

/// The running host.
pub struct Hearth {
    config: HearthConfig,
    /// Shared with the loader, which reads the isolation settings in force.
    catalog: SharedCatalog,
    /// Catalog revision in which each model's definition last changed (absent: never).
    definitions: RwLock<HashMap<String, u64>>,
    /// The last catalog edit that was refused, while the file still holds it.
    catalog_problem: RwLock<Option<CatalogProblem>>,
    registry: SharedRegistry,
    device: RwLock<Arc<DeviceProfile>>,
    /// Held while a reload swaps the registry or the catalog, so two never interleave.
    reloading: Mutex<()>,
    store: Store,
    scheduler: Scheduler,
    /// Validates every model and adapter file before a backend sees it.
    gate: Arc<FileGate>,
}

/// The plugins folder as `hearth plugins` and `GET /api/plugins` show it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginsView {
    pub folder: PathBuf,
    pub plugins: Vec<PluginView>,
    pub refused: Vec<PluginFailure>,
    /// The catalog edit last refused, if the file still holds it.
    pub catalog_error: Option<CatalogProblem>,
}

/// One loaded plugin with what its probe found.
#[derive(Debug, Clone, Serialize)]
pub struct PluginView {
    #[serde(flatten)]
    pub info: PluginInfo,
    pub available: bool,
    pub reason: String,
    pub devices: Vec<hearth_sdk::DeviceInfo>,
}

impl Hearth {
    /// Read the catalog, load the plugins and probe the device.
    pub fn open(config: HearthConfig) -> Result<Self, CatalogError> {
        let catalog = config.catalog.load()?;
        let host = DeviceProfile::detect().host;
        let registry = PluginRegistry::scan(
            &config.plugins,
            &*model_loader::describer(&config, &catalog, host.clone()),
        );
        let device = profile_device(host, &registry);
        let store = Store::new(config.models.clone());
        let policy = SchedulerPolicy {
            default_idle: IdleTimeouts {
                soft: catalog.idle.soft_timeout,
                hard: catalog.idle.hard_timeout,
            },
            max_resident_models: catalog.idle.max_resident_models,
            memory_budget_bytes: catalog.idle.memory_budget_bytes,
            ..SchedulerPolicy::default()
        };
        let registry: SharedRegistry = Arc::new(RwLock::new(Arc::new(registry)));
        let catalog: SharedCatalog = Arc::new(RwLock::new(Arc::new(catalog)));
        let loader = PluginLoader::new(registry.clone(), catalog.clone(), &config);
        let scheduler = Scheduler::new(Arc::new(loader), policy);
        Ok(Self {
            config,
            catalog,
            definitions: RwLock::default(),
            catalog_problem: RwLock::default(),
            registry,
            device: RwLock::new(Arc::new(device)),
            reloading: Mutex::default(),
            store,
            scheduler,
            gate: Arc::default(),
        })
    }

    pub fn config(&self) -> &HearthConfig {
        &self.config
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn device(&self) -> Arc<DeviceProfile> {
        self.device.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn registry(&self) -> Arc<PluginRegistry> {
        self.registry.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Where models go among the devices now.
    pub fn placement(&self) -> crate::catalog::Placement {
        self.config.placement_for(&self.catalog())
    }

    /// Where `backend`'s models run now.
    pub fn isolation(&self, backend: &str) -> crate::catalog::Isolation {
        self.config.isolation_for(&self.catalog(), backend)
    }

    /// The routing decision for a request, with its reasons.
    pub fn route(&self, request: &RouteRequest) -> Result<RoutePlan, router::RouteError> {
        let request = RouteRequest { device: self.placement().devices, ..request.clone() };
        let mut plan =
            router::plan(&self.catalog(), &self.device(), &StoreInstalled(&self.store), &request)?;
        self.leave_out_unrunnable(&mut plan);
        Ok(plan)
    }

    /// Why `backend` cannot run the file at `path`, by what it states it runs (its
    /// architectures and tensor types; see `hearth_sdk::helpers::capabilities`); `None`
    /// when it can, and when that cannot be told before a load: the backend is not
    /// loaded, states nothing, or the gate refuses the file (loading it reports the
    /// damage). Reads the file's header once per version (the gate caches it).
    pub fn unmet_needs(&self, backend: &str, path: &Path, format: &str) -> Option<String> {
        let registry = self.registry();
        let plugin = registry.plugins.iter().find(|p| p.info.id == backend)?;
        let Ok(Some(facts)) = self.gate.inspect(path, format) else {
            return None;
        };
        facts.needs.unmet_by(&plugin.info.features)
    }

    /// The chat template of the file `request` is routed to first, as the gate read it,
    /// when its backend hands tools to templates (`hearth_sdk::feature::TOOLS`): none
    /// when the route finds no file, the backend predates that, the file is not GGUF,
    /// or it carries none. Reads the file's header once per version (the gate caches it).
    pub fn chat_template(&self, request: &RouteRequest) -> Option<String> {
        let plan = self.route(request).ok()?;
        let first = plan.candidates.first()?;
        let registry = self.registry();
        let features = &registry.get(&first.backend)?.info.features;
        if !features.iter().any(|feature| feature == hearth_sdk::feature::TOOLS) {
            return None;
        }
        let facts = self.gate.inspect(&first.path, &first.artifact.format).ok()??;
        facts.chat_template
    }

    /// Leave out the candidates whose backend states it cannot run their file, saying
    /// why in the plan's `unrunnable`, so a request falls back without a doomed load.
    fn leave_out_unrunnable(&self, plan: &mut RoutePlan) {
        let unrunnable = &mut plan.unrunnable;
        plan.candidates.retain(|candidate| {
            let Some(why) =
                self.unmet_needs(&candidate.backend, &candidate.path, &candidate.artifact.format)
            else {
                return true;
            };
            unrunnable.push(format!(
                "{} cannot run {} ({}): {why}",
                candidate.backend, candidate.artifact.file, candidate.model_id
            ));
            false
        });
    }

    /// The plugins folder: what loaded, with each probe, and what was refused.
    pub fn plugins(&self) -> PluginsView {
        let registry = self.registry();
        let device = self.device();
        let plugins = registry
            .plugins
            .iter()
            .map(|plugin| {
                let probe = device.backend(&plugin.info.id);
                PluginView {
                    info: plugin.info.clone(),
                    available: probe.is_some_and(|probe| probe.probe.available),
                    reason: probe.map(|probe| probe.probe.reason.to_string()).unwrap_or_default(),
                    devices: probe
                        .map(super::device::BackendProbe::device_views)
                        .unwrap_or_default(),
                }
            })
            .collect();
        PluginsView {
            folder: self.config.plugins.clone(),
            plugins,
            refused: registry.failures.clone(),
            catalog_error: self.catalog_problem(),
        }
    }

    /// Loaded models, for `hearth ps` and `GET /api/ps`.
    pub fn loaded_models(&self) -> Vec<LoadedModelSnapshot> {
        self.scheduler.snapshot()
    }

    /// Unload every loaded copy of a model (any backend). Returns how many were unloaded.
    pub async fn unload(&self, model_id: &str) -> Result<usize, SchedulerError> {
        let keys: Vec<ModelKey> = self
            .scheduler
            .snapshot()
            .into_iter()
            .map(|snapshot| snapshot.key)
            .filter(|key| key.model_id == model_id)
            .collect();
        for key in &keys {
            self.scheduler.unload(key).await?;
        }
        Ok(keys.len())
    }
}

/// The host profile plus the probe of every plugin in service, as each was described.
fn profile_device(host: HostProfile, registry: &PluginRegistry) -> DeviceProfile {
    let backends = registry
        .plugins
        .iter()
        .map(|plugin| crate::device::BackendProbe {
            backend: plugin.info.id.clone(),
            formats: plugin.info.formats.clone(),
            probe: plugin.probe.clone(),
        })
        .collect();
    DeviceProfile { host, backends }
}
