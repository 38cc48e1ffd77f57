//! Changing a running host: the plugins folder and the catalog change under it.
//!
//! Both follow one rule: the new state is built aside and checked, then swapped in
//! whole, and what already serves keeps serving. Models that depended on what changed
//! (a replaced or removed plugin build, an edited or removed model definition) get new
//! [`ModelKey`]s for new requests, so requests in flight finish on the old model, which
//! is then unloaded as soon as it is idle.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};

use serde::Serialize;

use super::{profile_device, CatalogSource, Hearth};
use crate::catalog::{Catalog, CatalogError};
use crate::device::DeviceProfile;
use crate::lifecycle::ModelKey;

/// A refused catalog edit, for the log, the listings and `GET /api/profile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogProblem {
    pub path: PathBuf,
    /// 1-based; absent when the file could not be read at all.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub reason: String,
    /// `file:line:column: reason`, as the log shows it.
    pub message: String,
}

impl CatalogProblem {
    fn new(error: &CatalogError) -> Self {
        let (path, reason) = match error {
            CatalogError::Read { path, source } => {
                (path.clone(), format!("cannot read the catalog: {source}"))
            }
            CatalogError::Syntax { path, reason, .. }
            | CatalogError::Invalid { path, reason, .. } => (path.clone(), reason.clone()),
        };
        let location = error.location();
        Self {
            path,
            line: location.map(|at| at.0),
            column: location.map(|at| at.1),
            reason,
            message: error.to_string(),
        }
    }
}

/// What an accepted catalog edit changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CatalogReload {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Models whose definition changed: they are reloaded on their next request.
    pub changed: Vec<String>,
    pub tiers_changed: bool,
    pub adapters_changed: bool,
    pub idle_changed: bool,
    /// `max_resident_models` or `memory_budget` changed; the scheduler keeps the
    /// limits it started with until the next start.
    pub limits_need_restart: bool,
    /// `[rpc] servers` changed; the llama.cpp plugin keeps the servers it started with.
    pub rpc_needs_restart: bool,
}

impl CatalogReload {
    fn between(old: &Catalog, new: &Catalog) -> Self {
        let ids = |catalog: &Catalog| {
            catalog.models.iter().map(|model| model.id.clone()).collect::<Vec<_>>()
        };
        let (old_ids, new_ids) = (ids(old), ids(new));
        Self {
            added: new_ids.iter().filter(|id| !old_ids.contains(id)).cloned().collect(),
            removed: old_ids.iter().filter(|id| !new_ids.contains(id)).cloned().collect(),
            changed: new
                .models
                .iter()
                .filter(|model| old.model(&model.id).is_some_and(|before| before != *model))
                .map(|model| model.id.clone())
                .collect(),
            tiers_changed: old.tiers != new.tiers,
            adapters_changed: old.adapters != new.adapters,
            idle_changed: old.idle.soft_timeout != new.idle.soft_timeout
                || old.idle.hard_timeout != new.idle.hard_timeout,
            limits_need_restart: old.idle.max_resident_models != new.idle.max_resident_models
                || old.idle.memory_budget_bytes != new.idle.memory_budget_bytes,
            rpc_needs_restart: old.rpc_servers != new.rpc_servers,
        }
    }
}

impl fmt::Display for CatalogReload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "+models {:?}, -models {:?}, changed {:?}",
            self.added, self.removed, self.changed
        )?;
        for (changed, what) in [
            (self.tiers_changed, "tier tables changed"),
            (self.adapters_changed, "adapters changed"),
            (self.idle_changed, "idle timeouts changed"),
            (
                self.limits_need_restart,
                "resident-model limits changed (they apply after a restart)",
            ),
            (self.rpc_needs_restart, "RPC servers changed (they apply after a restart)"),
        ] {
            if changed {
                write!(f, "; {what}")?;
            }
        }
        Ok(())
    }
}

/// Catalog revisions, unique in the process; see [`ModelKey::definition_revision`].
static REVISIONS: AtomicU64 = AtomicU64::new(0);

impl Hearth {
    /// The catalog edit last refused, while the file still holds it.
    pub fn catalog_problem(&self) -> Option<CatalogProblem> {
        self.catalog_problem.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The revision of `model_id`'s definition, for its [`ModelKey`].
    pub(super) fn definition_revision(&self, model_id: &str) -> u64 {
        self.definitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(model_id)
            .copied()
            .unwrap_or(0)
    }

    /// Read the catalog file again and swap it in if it is valid; if not, keep the
    /// catalog in force and record why. The built-in catalog never changes.
    pub async fn reload_catalog(&self) -> Result<CatalogReload, CatalogProblem> {
        let CatalogSource::File(path) = &self.config.catalog else {
            return Ok(CatalogReload::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|source| CatalogError::Read { path: path.clone(), source });
        self.apply_catalog_text(path, text).await
    }

    /// Swap in the catalog `text` read from `path`, or refuse it.
    pub(super) async fn apply_catalog_text(
        &self,
        path: &Path,
        text: Result<String, CatalogError>,
    ) -> Result<CatalogReload, CatalogProblem> {
        let parsed = text.and_then(|text| Catalog::parse(&text, path));
        let reload = {
            let _reloading = self.reloading.lock().unwrap_or_else(PoisonError::into_inner);
            let catalog = match parsed {
                Ok(catalog) => catalog,
                Err(error) => {
                    let problem = CatalogProblem::new(&error);
                    tracing::warn!(
                        "catalog edit refused: {}; the previous catalog stays in force",
                        problem.message
                    );
                    *self.catalog_problem.write().unwrap_or_else(PoisonError::into_inner) =
                        Some(problem.clone());
                    return Err(problem);
                }
            };
            let reload = CatalogReload::between(&self.catalog(), &catalog);
            let revision = REVISIONS.fetch_add(1, Ordering::Relaxed) + 1;
            let mut definitions = self.definitions.write().unwrap_or_else(PoisonError::into_inner);
            definitions.retain(|id, _| catalog.model(id).is_some());
            // Added models too: one removed and added back must not reuse a model
            // still finishing under its old definition.
            definitions.extend(
                reload.changed.iter().chain(&reload.added).map(|id| (id.clone(), revision)),
            );
            *self.catalog.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(catalog);
            *self.catalog_problem.write().unwrap_or_else(PoisonError::into_inner) = None;
            reload
        };
        tracing::info!("catalog reloaded from {}: {reload}", path.display());
        self.unload_stale().await;
        Ok(reload)
    }

    /// Apply a change of the plugins folder: describe (or replace) and remove libraries,
    /// swap the registry and the device profile, and unload the models of builds that
    /// left service once they are idle.
    pub async fn reload_plugins(self: &Arc<Self>, load: Vec<PathBuf>, remove: Vec<PathBuf>) {
        let hearth = self.clone();
        // Describing a library blocks, and may take a while.
        let swapped =
            tokio::task::spawn_blocking(move || hearth.swap_plugins(&load, &remove)).await;
        if let Err(error) = swapped {
            tracing::error!(%error, "plugin reload failed");
        }
        self.unload_stale().await;
    }

    fn swap_plugins(&self, load: &[PathBuf], remove: &[PathBuf]) {
        let _reloading = self.reloading.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.registry();
        let mut registry = (*old).clone();
        for path in remove {
            registry.remove(path);
        }
        let host = DeviceProfile::detect().host;
        registry.add_all(
            load,
            &*super::model_loader::describer(&self.config, &self.catalog(), host.clone()),
        );
        let device = profile_device(host, &registry);
        *self.device.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(device);
        *self.registry.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(registry);
    }

    /// Unload every loaded model whose plugin build or catalog definition is no longer
    /// in force: idle ones now, busy ones when their last request ends.
    async fn unload_stale(&self) {
        let registry = self.registry();
        let catalog = self.catalog();
        let revisions: HashMap<String, u64> =
            self.definitions.read().unwrap_or_else(PoisonError::into_inner).clone();
        let stale = |key: &ModelKey| {
            registry.get(&key.backend).map(|plugin| plugin.generation)
                != Some(key.plugin_generation)
                || catalog.model(&key.model_id).is_none()
                || revisions.get(&key.model_id).copied().unwrap_or(0) != key.definition_revision
        };
        let keys: Vec<ModelKey> =
            self.scheduler.snapshot().into_iter().map(|model| model.key).filter(stale).collect();
        for key in keys {
            tracing::info!(model = %key, "unloading once idle: its plugin build or catalog definition was replaced");
            // NotLoaded only means it went on its own meanwhile.
            let _ = self.scheduler.unload(&key).await;
        }
    }
}
