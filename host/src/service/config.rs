//! Where the host finds its catalog, plugins and models.

use std::path::{Path, PathBuf};

use crate::catalog::{Catalog, CatalogError, Isolation, Placement};

/// The catalog shipped with hearth, used when no catalog file is configured or present.
const BUILT_IN_CATALOG: &str = include_str!("../../../catalog.toml");

/// Where the catalog comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogSource {
    File(PathBuf),
    BuiltIn,
}

impl CatalogSource {
    /// An explicit file, else `$HEARTH_HOME/catalog.toml` when it exists, else the
    /// shipped catalog compiled into the binary.
    pub fn resolve(explicit: Option<PathBuf>, home: &Path) -> Self {
        match explicit {
            Some(path) => Self::File(path),
            None => {
                let in_home = home.join("catalog.toml");
                if in_home.is_file() {
                    Self::File(in_home)
                } else {
                    Self::BuiltIn
                }
            }
        }
    }

    pub fn load(&self) -> Result<Catalog, CatalogError> {
        match self {
            Self::File(path) => Catalog::from_path(path),
            Self::BuiltIn => Catalog::parse(BUILT_IN_CATALOG, Path::new("<built-in catalog.toml>")),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::BuiltIn => "built-in catalog".to_string(),
        }
    }
}

/// The host's configuration.
#[derive(Debug, Clone)]
pub struct HearthConfig {
    pub catalog: CatalogSource,
    pub plugins: PathBuf,
    pub models: PathBuf,
    /// CPU threads per model; 0 lets each backend choose.
    pub threads: u32,
    /// Context window per model; 0 uses the catalog's value.
    pub context_size: u32,
    /// The command line's placement (`--device`, `--split-mode`, `--main-device`),
    /// over the catalog's `[placement]` setting by setting.
    pub placement: Placement,
    /// Where every backend runs, whatever the catalog says (the command line's
    /// `--isolation`); `None` follows the catalog's `[isolation]` section.
    pub isolation: Option<Isolation>,
    /// Where a backend runs when neither the command line nor the catalog says.
    pub default_isolation: Isolation,
    /// The `hearth` binary that worker processes run; `None` is this executable, which
    /// is right for the `hearth` binary itself but not for a program embedding the
    /// library (a test, for one).
    pub worker_program: Option<PathBuf>,
}

impl HearthConfig {
    /// The default layout under a hearth home: `plugins/`, `models/`, `catalog.toml`.
    pub fn in_home(home: &Path) -> Self {
        Self {
            catalog: CatalogSource::resolve(None, home),
            plugins: home.join("plugins"),
            models: home.join("models"),
            threads: 0,
            context_size: 0,
            placement: Placement::default(),
            isolation: None,
            default_isolation: Isolation::InProcess,
            worker_program: None,
        }
    }
}

impl HearthConfig {
    /// Where models go among the devices under `catalog`: the command line's settings,
    /// else the catalog's.
    pub fn placement_for(&self, catalog: &Catalog) -> Placement {
        self.placement.over(&catalog.placement)
    }

    /// Where `backend`'s models run under `catalog`: the command line's choice, else
    /// the catalog's, else this configuration's default.
    pub fn isolation_for(&self, catalog: &Catalog, backend: &str) -> Isolation {
        self.isolation
            .unwrap_or_else(|| catalog.isolation.for_backend(backend, self.default_isolation))
    }

    /// Whether any backend's models may run in worker processes under `catalog`; if so,
    /// plugins are described by workers, and only those with in-process models are ever
    /// loaded into the host.
    pub fn uses_workers(&self, catalog: &Catalog) -> bool {
        match self.isolation {
            Some(isolation) => isolation == Isolation::Process,
            None => {
                catalog.isolation.default.unwrap_or(self.default_isolation) == Isolation::Process
                    || catalog
                        .isolation
                        .backends
                        .values()
                        .any(|isolation| *isolation == Isolation::Process)
            }
        }
    }

    /// The `hearth` binary that worker processes run.
    pub fn worker_program(&self) -> std::io::Result<PathBuf> {
        match &self.worker_program {
            Some(program) => Ok(program.clone()),
            None => running_binary(),
        }
    }
}

/// This process's executable as the kernel keeps it: on Linux `/proc/self/exe`, which
/// still runs the binary this process started from after an upgrade replaced or
/// deleted the file at its path (a worker of another build would not speak the same
/// protocol anyway). Elsewhere the path it was started from.
fn running_binary() -> std::io::Result<PathBuf> {
    let kept = Path::new("/proc/self/exe");
    if cfg!(target_os = "linux") && std::fs::metadata(kept).is_ok() {
        return Ok(kept.to_path_buf());
    }
    std::env::current_exe()
}

/// `$HEARTH_HOME`, else `~/.hearth`.
pub fn default_home() -> PathBuf {
    if let Some(home) = std::env::var_os("HEARTH_HOME") {
        return PathBuf::from(home);
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".hearth")
}
