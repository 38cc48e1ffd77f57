//! Describing a plugin library in a short-lived worker process, so that the host learns
//! what a backend is and what its probe finds without mapping the library itself.
//!
//! A backend whose models all run in workers is then never loaded into the host: a
//! replaced build leaves nothing behind once its last worker exits, and a plugin that
//! crashes or hangs while starting up or probing ends only the worker describing it,
//! which the host reports as the reason it refused the library.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hearth_sdk::HostProfile;

use super::protocol::{Call, Event, PROTOCOL_VERSION};
use super::supervisor::WorkerProcess;
use crate::plugin::{Describe, Description, PluginInfo, PluginLoadError};

/// Describes libraries by asking a worker process of `program` about each.
pub struct WorkerDescriber {
    /// The `hearth` binary the workers run.
    pub program: PathBuf,
    /// The machine as the host sees it, for each plugin's probe.
    pub host: HostProfile,
    /// How long a worker may take to describe its plugin before it counts as hung.
    pub timeout: Duration,
}

impl Describe for WorkerDescriber {
    fn describe(&self, path: &Path) -> Result<Description, PluginLoadError> {
        let name =
            path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        let worker = WorkerProcess::spawn(&self.program, path, &name, self.timeout)
            .map_err(|error| PluginLoadError::Worker(error.message.to_string()))?;
        let call = Call::Describe { protocol: PROTOCOL_VERSION, host: self.host.clone() };
        // Dropping the worker at the end asks it to exit; it has no model to unload.
        match worker
            .call(call, "describe")
            .map_err(|error| PluginLoadError::Worker(error.message.to_string()))?
        {
            Event::Described { info, probe } => Ok(Description {
                // The worker was given this path; the host's name for it is the one kept.
                info: PluginInfo { path: path.to_path_buf(), ..info },
                probe,
                library: None,
            }),
            Event::Failed { error } => Err(PluginLoadError::Worker(error.message.into_string())),
            other => Err(PluginLoadError::Worker(format!(
                "its worker answered `describe` with {other:?}"
            ))),
        }
    }

    /// Each library in a worker of its own, all at once: starting a worker and probing
    /// a device take a while, and the workers share nothing.
    fn describe_all(&self, paths: &[PathBuf]) -> Vec<Result<Description, PluginLoadError>> {
        std::thread::scope(|scope| {
            let describing: Vec<_> =
                paths.iter().map(|path| scope.spawn(move || self.describe(path))).collect();
            describing
                .into_iter()
                .map(|thread| {
                    thread.join().unwrap_or_else(|_| {
                        Err(PluginLoadError::Worker("describing it panicked".to_string()))
                    })
                })
                .collect()
        })
    }
}
