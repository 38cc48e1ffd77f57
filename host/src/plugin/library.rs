//! Loading one plugin library through the ABI and checking it is one we can use.
//!
//! Every library is loaded from a private copy, never from the file in the plugins
//! folder: the dynamic loader hands back the already-loaded library for a path it has
//! seen, so a rebuilt plugin at the same path would never be loaded; and a library
//! overwritten in place while mapped crashes the process. The copy is deleted once
//! loaded (the mapping keeps it alive), so nothing piles up on disk.
//!
//! A plugin may have a companion folder beside it, named as its file without the
//! extension (`libhearth_llamacpp/` for `libhearth_llamacpp.so`), holding the shared
//! libraries it links and loads (its run path names `$ORIGIN/<that folder>`). It is
//! copied with the plugin, so the copy finds the libraries of its own build.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use abi_stable::library::{lib_header_from_path, LibraryError};
use abi_stable::std_types::RResult;
use hearth_sdk::abi::BackendBox;
use hearth_sdk::{BackendInfo, HostProfile, PluginError, Probe, API_VERSION};
use serde::{Deserialize, Serialize};

/// Why a file in the plugins folder is not in service.
#[derive(Debug, thiserror::Error)]
pub enum PluginLoadError {
    #[error("cannot open as a shared library: {0}")]
    Open(String),
    #[error("not a whole library: {0}")]
    Incomplete(String),
    #[error("not a hearth plugin: it exports no abi_stable root module")]
    NotAPlugin,
    #[error("built against an incompatible hearth SDK: {0}")]
    Incompatible(String),
    #[error("plugin API {plugin} is not supported by this host (API {host})")]
    ApiVersion { plugin: String, host: String },
    #[error("plugin failed to initialise: {0}")]
    Init(PluginError),
    #[error("backend id {0:?} is unusable: it must be 1 to 64 of a-z, 0-9, `-` and `_`")]
    BadId(String),
    #[error("backend id `{id}` is already provided by {other}")]
    DuplicateId { id: String, other: PathBuf },
    /// What the worker process that was asked to describe the library reported: one
    /// of the errors above, in its words, or how the worker died.
    #[error("{0}")]
    Worker(String),
    #[error("the file now holds backend `{now}`, not `{described}` as when it was scanned")]
    Changed { described: String, now: String },
}

impl PluginLoadError {
    fn from_library(error: LibraryError) -> Self {
        match error {
            LibraryError::OpenError { err, .. } => Self::Open(err.to_string()),
            LibraryError::GetSymbolError { .. } => Self::NotAPlugin,
            LibraryError::RootModule { err, .. } => {
                Self::Init(PluginError::internal(err.to_string()))
            }
            LibraryError::IncompatibleVersionNumber {
                expected_version, actual_version, ..
            } => Self::ApiVersion {
                plugin: format!("{}.{}", actual_version.major, actual_version.minor),
                host: format!("{}.{}", expected_version.major, expected_version.minor),
            },
            LibraryError::Many(errors) if errors.len() == 1 => {
                Self::from_library(errors.into_iter().next().expect("one error"))
            }
            other => Self::Incompatible(first_line(&other.to_string())),
        }
    }
}

/// abi_stable's layout reports run to hundreds of lines; the first names the problem.
fn first_line(text: &str) -> String {
    let mut lines = text.lines().filter(|line| !line.trim().is_empty());
    let first = lines.next().unwrap_or("layout mismatch").trim().to_string();
    match lines.next() {
        Some(second) => format!("{first} {}", second.trim()),
        None => first,
    }
}

/// A plugin's identity as plain Rust data, for listings, JSON and the worker protocol.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PluginInfo {
    pub id: String,
    pub name: String,
    pub version: String,
    pub api_version: String,
    pub formats: Vec<String>,
    pub features: Vec<String>,
    pub path: PathBuf,
}

impl PluginInfo {
    fn new(info: &BackendInfo, path: &Path) -> Self {
        Self {
            id: info.id.to_string(),
            name: info.name.to_string(),
            version: info.version.to_string(),
            api_version: format!("{}.{}", info.api_version.major, info.api_version.minor),
            formats: info.formats.iter().map(abi_stable::std_types::RString::to_string).collect(),
            features: info.features.iter().map(abi_stable::std_types::RString::to_string).collect(),
            path: path.to_path_buf(),
        }
    }
}

/// A plugin library mapped into this process and initialised: its backend object and
/// who it is.
#[derive(Clone)]
pub struct LoadedPlugin {
    pub info: PluginInfo,
    pub backend: Arc<BackendBox>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin").field("info", &self.info).finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// Ask the plugin what this machine offers it. A failing probe (even a panic,
    /// which the SDK turns into an error) reads as "unavailable, because …".
    pub fn probe(&self, host: &HostProfile) -> Probe {
        match self.backend.probe(host) {
            RResult::ROk(probe) => probe,
            RResult::RErr(error) => Probe {
                available: false,
                devices: Default::default(),
                reason: format!("probe failed: {error}").into(),
            },
        }
    }
}

/// Counts loads, so every private copy has a name of its own.
static COPIES: AtomicU64 = AtomicU64::new(0);

/// The folder of this process's private copies.
fn private_copies_dir() -> PathBuf {
    std::env::temp_dir().join(format!("hearth-plugins-{}", std::process::id()))
}

/// Remove this process's folder of private copies, once no more libraries will be
/// loaded (a worker process loads one). The copies themselves are already gone.
pub fn remove_private_copies() {
    let _ = std::fs::remove_dir(private_copies_dir());
}

/// A fresh private copy of `path` (and its companion folder), in a numbered folder of
/// this process's own: the copy keeps the file's name, which the companion's is made of.
fn private_copy(path: &Path) -> Result<PathBuf, PluginLoadError> {
    let dir = private_copies_dir().join((COPIES.fetch_add(1, Ordering::Relaxed) + 1).to_string());
    copy_with_companion(path, &dir)
}

/// Copy the plugin file `path` into the new folder `dir`, with its companion folder if
/// it has one; returns the copy's path.
fn copy_with_companion(path: &Path, dir: &Path) -> Result<PathBuf, PluginLoadError> {
    let copy = dir.join(path.file_name().unwrap_or_default());
    let copy_file = |from: &Path, to: &Path| {
        std::fs::copy(from, to).map_err(|error| {
            PluginLoadError::Open(format!("cannot copy {}: {error}", from.display()))
        })
    };
    let create = |dir: &Path| {
        std::fs::create_dir_all(dir).map_err(|error| {
            PluginLoadError::Open(format!("cannot create {}: {error}", dir.display()))
        })
    };
    create(dir)?;
    copy_file(path, &copy)?;
    let companion = path.with_extension("");
    if let Ok(entries) = std::fs::read_dir(&companion) {
        let copied = copy.with_extension("");
        create(&copied)?;
        for entry in entries.flatten() {
            // Files only (links followed): the libraries, not folders of other things.
            if entry.path().is_file() {
                copy_file(&entry.path(), &copied.join(entry.file_name()))?;
            }
        }
    }
    Ok(copy)
}

/// Remove a copy made by [`copy_with_companion`]: the file, its companion, its folder.
fn remove_copy(copy: &Path) {
    let _ = std::fs::remove_file(copy);
    let _ = std::fs::remove_dir_all(copy.with_extension(""));
    if let Some(dir) = copy.parent() {
        let _ = std::fs::remove_dir(dir);
    }
}

/// A plugin file as it was when the registry described it, kept in a folder of this
/// process's own: every later load of that build (a worker for a model, the host for
/// an in-process one) reads this copy, not the folder's file, which may have been
/// replaced since — or be half-way through the copy that replaces it. Removed when the
/// last registry entry of its build goes.
#[derive(Debug)]
pub struct KeptLibrary {
    path: PathBuf,
}

impl KeptLibrary {
    /// Copy `path` now, and refuse the copy if it is not a whole library.
    pub fn keep(path: &Path) -> Result<Arc<Self>, PluginLoadError> {
        // A numbered folder per copy, so the copy keeps the file's own name: refusal
        // reasons and worker names then speak of the file the user put there.
        let dir = kept_dir().join((COPIES.fetch_add(1, Ordering::Relaxed) + 1).to_string());
        let kept = Self { path: copy_with_companion(path, &dir)? };
        super::elf::check_whole(&kept.path).map_err(PluginLoadError::Incomplete)?;
        Ok(Arc::new(kept))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for KeptLibrary {
    fn drop(&mut self) {
        remove_copy(&self.path);
    }
}

/// The folder of this process's kept libraries. The first use also removes the folders
/// that processes no longer running left behind (killed, they removed nothing).
fn kept_dir() -> PathBuf {
    const PREFIX: &str = "hearth-kept-";
    static SWEPT: std::sync::Once = std::sync::Once::new();
    let temp = std::env::temp_dir();
    SWEPT.call_once(|| {
        let Ok(entries) = std::fs::read_dir(&temp) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix(PREFIX) else { continue };
            let gone = pid.parse::<u32>().is_ok_and(|pid| {
                cfg!(target_os = "linux") && !Path::new(&format!("/proc/{pid}")).exists()
            });
            if gone {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    });
    temp.join(format!("{PREFIX}{}", std::process::id()))
}

/// Load one plugin library (from a private copy), construct its backend and check its
/// API version.
pub fn load_plugin(path: &Path) -> Result<LoadedPlugin, PluginLoadError> {
    let copy = private_copy(path)?;
    // The copy is what gets mapped, so the copy is what must be whole: the file in the
    // folder may be growing still.
    if let Err(missing) = super::elf::check_whole(&copy) {
        remove_copy(&copy);
        return Err(PluginLoadError::Incomplete(missing));
    }
    let loaded = load_copy(&copy, path);
    // Once mapped the library no longer needs its file; where the OS refuses to delete
    // a loaded library (Windows) the copy stays until the temp folder is cleaned.
    remove_copy(&copy);
    loaded.map_err(|error| match error {
        // The loader's message names the copy; the user knows the original.
        PluginLoadError::Open(message) => PluginLoadError::Open(
            message.replace(&copy.display().to_string(), &path.display().to_string()),
        ),
        other => other,
    })
}

fn load_copy(copy: &Path, path: &Path) -> Result<LoadedPlugin, PluginLoadError> {
    let header = lib_header_from_path(copy).map_err(PluginLoadError::from_library)?;
    let module = hearth_sdk::abi::plugin_module(header).map_err(PluginLoadError::from_library)?;
    let backend = module.new_backend()().into_result().map_err(PluginLoadError::Init)?;
    let info = backend.info().into_result().map_err(PluginLoadError::Init)?;
    // The id names the backend in the catalog, in routes, logs and metrics labels: a
    // plugin that answers with garbage is refused rather than trusted to be harmless.
    let id = info.id.as_str();
    let id_ok = (1..=64).contains(&id.len())
        && id.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'_'
        });
    if !id_ok {
        return Err(PluginLoadError::BadId(id.to_string()));
    }
    let version = info.api_version;
    if version.major != API_VERSION.major || version.minor > API_VERSION.minor {
        return Err(PluginLoadError::ApiVersion {
            plugin: format!("{}.{}", version.major, version.minor),
            host: format!("{}.{}", API_VERSION.major, API_VERSION.minor),
        });
    }
    Ok(LoadedPlugin { info: PluginInfo::new(&info, path), backend: Arc::new(backend) })
}
