//! The registry: every plugin found in the plugins folder, loaded or refused.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

use super::describe::{Describe, Description, RegisteredPlugin};
use super::library::{KeptLibrary, PluginLoadError};

/// Counts registered builds, for [`RegisteredPlugin::generation`].
static GENERATIONS: AtomicU64 = AtomicU64::new(0);

/// A file in the plugins folder that is not in service, and why.
#[derive(Debug, Clone, Serialize)]
pub struct PluginFailure {
    pub path: PathBuf,
    pub reason: String,
}

/// What the last scan of the plugins folder found.
#[derive(Debug, Clone, Default)]
pub struct PluginRegistry {
    pub plugins: Vec<RegisteredPlugin>,
    pub failures: Vec<PluginFailure>,
}

/// Whether `path` names a plugin library: a shared library, not hidden (copy tools
/// and editors write their temporary files as hidden files).
pub(super) fn is_library(path: &Path) -> bool {
    let hidden =
        path.file_name().and_then(|name| name.to_str()).is_some_and(|name| name.starts_with('.'));
    !hidden && matches!(path.extension().and_then(|ext| ext.to_str()), Some("so" | "dylib" | "dll"))
}

impl PluginRegistry {
    /// Describe every shared library in `dir`, in name order. Files of other types are
    /// ignored; a library that fails is recorded with its reason and the scan goes on.
    /// A missing folder is an empty registry with one failure naming it.
    pub fn scan(dir: &Path, describer: &dyn Describe) -> Self {
        let mut registry = Self::default();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) => {
                registry.failures.push(PluginFailure {
                    path: dir.to_path_buf(),
                    reason: format!("cannot read the plugins folder: {error}"),
                });
                return registry;
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.is_file() && is_library(path))
            .collect();
        paths.sort();
        registry.add_all(&paths, describer);
        registry
    }

    /// Describe libraries (at once, where the describer can) and add them in order.
    /// Each file is first kept as it is now ([`KeptLibrary`]) and checked to be whole;
    /// the describer sees the kept copy, so what is described is what later loads.
    pub fn add_all(&mut self, paths: &[PathBuf], describer: &dyn Describe) {
        let kept: Vec<Result<Arc<KeptLibrary>, PluginLoadError>> =
            paths.iter().map(|path| KeptLibrary::keep(path)).collect();
        let whole: Vec<PathBuf> =
            kept.iter().flatten().map(|kept| kept.path().to_path_buf()).collect();
        let mut descriptions = describer.describe_all(&whole).into_iter();
        for (path, kept) in paths.iter().zip(kept) {
            let described = kept.and_then(|kept| {
                let mut description = descriptions.next().unwrap_or_else(|| {
                    Err(PluginLoadError::Worker("no description came back".to_string()))
                })?;
                // The folder's name for it, not the kept copy's.
                description.info.path = path.clone();
                Ok((description, kept))
            });
            self.add(path, described);
        }
    }

    /// Add one described library to the registry, recording a failure instead of an
    /// error. A library at a path already in service replaces the plugin described from
    /// it; if the new build is refused, the old one stays in service and the refusal is
    /// recorded beside it, so a broken rebuild never takes a working backend away.
    fn add(
        &mut self,
        path: &Path,
        description: Result<(Description, Arc<KeptLibrary>), PluginLoadError>,
    ) {
        self.failures.retain(|failure| failure.path != path);
        let result = description.and_then(|(plugin, kept)| {
            let other = self
                .plugins
                .iter()
                .find(|other| other.info.id == plugin.info.id && other.info.path != path);
            match other {
                Some(other) => Err(PluginLoadError::DuplicateId {
                    id: plugin.info.id.clone(),
                    other: other.info.path.clone(),
                }),
                None => Ok(RegisteredPlugin::new(
                    plugin,
                    GENERATIONS.fetch_add(1, Ordering::Relaxed) + 1,
                    kept,
                )),
            }
        });
        let previous = self.plugins.iter().position(|plugin| plugin.info.path == path);
        match (result, previous) {
            (Ok(plugin), Some(index)) => {
                let old = &self.plugins[index].info;
                tracing::info!(
                    id = %plugin.info.id, old_version = %old.version, version = %plugin.info.version,
                    path = %path.display(), "plugin replaced; requests in flight finish on the old build"
                );
                self.plugins[index] = plugin;
            }
            (Ok(plugin), None) => {
                tracing::info!(id = %plugin.info.id, version = %plugin.info.version, path = %path.display(), "plugin loaded");
                self.plugins.push(plugin);
            }
            (Err(error), previous) => {
                let reason = match previous {
                    Some(index) => format!(
                        "{error} (the previous build, version {}, stays in service)",
                        self.plugins[index].info.version
                    ),
                    None => error.to_string(),
                };
                tracing::warn!(path = %path.display(), %reason, "plugin refused");
                self.failures.push(PluginFailure { path: path.to_path_buf(), reason });
            }
        }
    }

    /// Take the plugin loaded from `path` out of service, and forget any refusal of it.
    pub fn remove(&mut self, path: &Path) {
        self.failures.retain(|failure| failure.path != path);
        if let Some(index) = self.plugins.iter().position(|plugin| plugin.info.path == path) {
            let plugin = self.plugins.remove(index);
            tracing::info!(id = %plugin.info.id, version = %plugin.info.version, path = %path.display(), "plugin removed; its models unload once idle");
        }
    }

    /// The plugin providing backend `id`.
    pub fn get(&self, id: &str) -> Option<&RegisteredPlugin> {
        self.plugins.iter().find(|plugin| plugin.info.id == id)
    }
}
