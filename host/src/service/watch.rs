//! Watching the plugins folder and the catalog file while serving, so that a dropped-in
//! plugin, a rebuilt one, a removed one or an edited catalog take effect without a
//! restart.
//!
//! File events come from `notify` and arrive in bursts (a copy, an editor's save), so
//! the watcher waits for a short pause before acting. A plugin file must also stay
//! unchanged for a settle period before it is loaded ([`FolderTracker`]), which keeps a
//! half-copied library from being loaded; while a file is still settling the watcher
//! looks again on its own, without waiting for another event.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::{timeout, timeout_at, Instant};

use super::{CatalogSource, Hearth};
use crate::catalog::CatalogError;
use crate::plugin::FolderTracker;

/// How long events must pause before the watcher acts on a burst of them.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How long a plugin file must stay unchanged before it is loaded.
const SETTLE: Duration = Duration::from_millis(300);

/// Watching in progress; dropping it stops the watcher.
pub struct Watching {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which watched thing an event touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Touched {
    Plugins,
    Catalog,
}

/// The watched paths in the form `notify` reports them: canonical folders.
struct Targets {
    plugins: PathBuf,
    catalog: Option<(PathBuf, std::ffi::OsString)>,
}

impl Targets {
    fn touched(&self, path: &Path) -> impl Iterator<Item = Touched> {
        let parent = path.parent();
        let plugins = parent == Some(self.plugins.as_path());
        let catalog = self.catalog.as_ref().is_some_and(|(dir, name)| {
            parent == Some(dir.as_path()) && path.file_name() == Some(name.as_os_str())
        });
        [plugins.then_some(Touched::Plugins), catalog.then_some(Touched::Catalog)]
            .into_iter()
            .flatten()
    }
}

/// Reading a file is an event too; only changes matter (and the host's own reads of
/// the catalog would otherwise wake it forever).
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

impl Hearth {
    /// Start watching the plugins folder (created if missing) and the catalog file (if
    /// the catalog is a file). Needs a tokio runtime.
    pub fn watch(self: &Arc<Self>) -> notify::Result<Watching> {
        std::fs::create_dir_all(&self.config.plugins)?;
        let plugins = self.config.plugins.canonicalize()?;
        let catalog = match &self.config.catalog {
            CatalogSource::File(path) => {
                let dir = path
                    .parent()
                    .filter(|dir| !dir.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let name = path.file_name().map(ToOwned::to_owned).unwrap_or_default();
                Some((dir.canonicalize()?, name))
            }
            CatalogSource::BuiltIn => None,
        };
        let targets = Targets { plugins, catalog };
        let (events, receiver) = mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher({
            let targets =
                Targets { plugins: targets.plugins.clone(), catalog: targets.catalog.clone() };
            move |event: notify::Result<notify::Event>| match event {
                Ok(event) if is_change(&event.kind) => {
                    for touched in event.paths.iter().flat_map(|path| targets.touched(path)) {
                        // The receiver is gone only when watching stopped.
                        let _ = events.send(touched);
                    }
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "file watching reported an error"),
            }
        })?;
        watcher.watch(&targets.plugins, RecursiveMode::NonRecursive)?;
        if let Some((dir, _)) = &targets.catalog {
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
        }
        let catalog_text = match &self.config.catalog {
            CatalogSource::File(path) => std::fs::read_to_string(path).ok(),
            CatalogSource::BuiltIn => None,
        };
        let folder = FolderTracker::new(&self.config.plugins, SETTLE);
        tracing::info!(plugins = %targets.plugins.display(), catalog = %self.config.catalog.describe(), "watching for changes");
        let task = tokio::spawn(watch_loop(self.clone(), receiver, folder, catalog_text));
        Ok(Watching { _watcher: watcher, task })
    }
}

async fn watch_loop(
    hearth: Arc<Hearth>,
    mut events: mpsc::UnboundedReceiver<Touched>,
    mut folder: FolderTracker,
    mut catalog_text: Option<String>,
) {
    let mut recheck: Option<Instant> = None;
    loop {
        let first = match recheck {
            // A plugin file is still settling: look again at the deadline.
            Some(at) => timeout_at(at, events.recv()).await.unwrap_or(Some(Touched::Plugins)),
            None => events.recv().await,
        };
        let Some(first) = first else {
            return;
        };
        let mut touched = vec![first];
        while let Ok(Some(more)) = timeout(DEBOUNCE, events.recv()).await {
            touched.push(more);
        }
        if touched.contains(&Touched::Catalog) {
            if let CatalogSource::File(path) = &hearth.config.catalog {
                let text = std::fs::read_to_string(path);
                // Saves that leave the text as it was (a touch, a second event of the
                // same save) are not reloads.
                if text.as_ref().ok() != catalog_text.as_ref() {
                    catalog_text = text.as_ref().ok().cloned();
                    let text =
                        text.map_err(|source| CatalogError::Read { path: path.clone(), source });
                    // The outcome is logged and recorded by the service.
                    let _ = hearth.apply_catalog_text(path, text).await;
                }
            }
        }
        if touched.contains(&Touched::Plugins) {
            let changes = folder.check(std::time::Instant::now());
            recheck = changes.waiting.then(|| Instant::now() + folder.settle() / 3);
            if !changes.load.is_empty() || !changes.remove.is_empty() {
                hearth.reload_plugins(changes.load, changes.remove).await;
            }
        }
    }
}
