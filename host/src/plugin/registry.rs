//! The registry: every plugin found in the plugins folder, loaded or refused.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::loader::{load_plugin, LoadedPlugin, PluginLoadError};

/// A file in the plugins folder that is not in service, and why.
#[derive(Debug, Clone, Serialize)]
pub struct PluginFailure {
    pub path: PathBuf,
    pub reason: String,
}

/// What the last scan of the plugins folder found.
#[derive(Debug, Clone, Default)]
pub struct PluginRegistry {
    pub plugins: Vec<LoadedPlugin>,
    pub failures: Vec<PluginFailure>,
}

fn is_library(path: &Path) -> bool {
    matches!(path.extension().and_then(|ext| ext.to_str()), Some("so" | "dylib" | "dll"))
}

impl PluginRegistry {
    /// Load every shared library in `dir`, in name order. Files of other types are
    /// ignored; a library that fails is recorded with its reason and the scan goes on.
    /// A missing folder is an empty registry with one failure naming it.
    pub fn scan(dir: &Path) -> Self {
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
        for path in paths {
            registry.add(&path);
        }
        registry
    }

    /// Load one library into the registry, recording a failure instead of an error.
    pub fn add(&mut self, path: &Path) {
        let result = load_plugin(path).and_then(|plugin| match self.get(&plugin.info.id) {
            Some(other) => Err(PluginLoadError::DuplicateId {
                id: plugin.info.id.clone(),
                other: other.info.path.clone(),
            }),
            None => Ok(plugin),
        });
        match result {
            Ok(plugin) => {
                tracing::info!(id = %plugin.info.id, version = %plugin.info.version, path = %path.display(), "plugin loaded");
                self.plugins.push(plugin);
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "plugin refused");
                self.failures.push(PluginFailure { path: path.to_path_buf(), reason: error.to_string() });
            }
        }
    }

    /// The plugin providing backend `id`.
    pub fn get(&self, id: &str) -> Option<&LoadedPlugin> {
        self.plugins.iter().find(|plugin| plugin.info.id == id)
    }
}
