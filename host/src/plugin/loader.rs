//! Loading one plugin library through the ABI and checking it is one we can use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use abi_stable::library::{lib_header_from_path, LibraryError};
use abi_stable::std_types::RResult;
use hearth_sdk::abi::{BackendBox, PluginModuleRef};
use hearth_sdk::{BackendInfo, HostProfile, PluginError, Probe, API_VERSION};
use serde::Serialize;

/// Why a file in the plugins folder is not in service.
#[derive(Debug, thiserror::Error)]
pub enum PluginLoadError {
    #[error("cannot open as a shared library: {0}")]
    Open(String),
    #[error("not a hearth plugin: it exports no abi_stable root module")]
    NotAPlugin,
    #[error("built against an incompatible hearth SDK: {0}")]
    Incompatible(String),
    #[error("plugin API {plugin} is not supported by this host (API {host})")]
    ApiVersion { plugin: String, host: String },
    #[error("plugin failed to initialise: {0}")]
    Init(PluginError),
    #[error("backend id `{id}` is already provided by {other}")]
    DuplicateId { id: String, other: PathBuf },
}

impl PluginLoadError {
    fn from_library(error: LibraryError) -> Self {
        match error {
            LibraryError::OpenError { err, .. } => Self::Open(err.to_string()),
            LibraryError::GetSymbolError { .. } => Self::NotAPlugin,
            LibraryError::RootModule { err, .. } => Self::Init(PluginError::internal(err.to_string())),
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

/// A plugin's identity as plain Rust data, for listings and JSON.
#[derive(Debug, Clone, Serialize, PartialEq)]
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
            formats: info.formats.iter().map(|format| format.to_string()).collect(),
            features: info.features.iter().map(|feature| feature.to_string()).collect(),
            path: path.to_path_buf(),
        }
    }
}

/// A plugin that loaded and initialised: its backend object and who it is.
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

/// Load one plugin library, construct its backend and check its API version.
pub fn load_plugin(path: &Path) -> Result<LoadedPlugin, PluginLoadError> {
    let header = lib_header_from_path(path).map_err(PluginLoadError::from_library)?;
    let module = header
        .init_root_module::<PluginModuleRef>()
        .map_err(PluginLoadError::from_library)?;
    let backend = module.new_backend()().into_result().map_err(PluginLoadError::Init)?;
    let info = backend.info().into_result().map_err(PluginLoadError::Init)?;
    let version = info.api_version;
    if version.major != API_VERSION.major || version.minor > API_VERSION.minor {
        return Err(PluginLoadError::ApiVersion {
            plugin: format!("{}.{}", version.major, version.minor),
            host: format!("{}.{}", API_VERSION.major, API_VERSION.minor),
        });
    }
    Ok(LoadedPlugin { info: PluginInfo::new(&info, path), backend: Arc::new(backend) })
}
