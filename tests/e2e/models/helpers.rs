//! A hearth home whose plugins folder holds the real llama.cpp plugin and whose store
//! is the installed test models.

use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;

use hearth::service::{CatalogSource, Hearth, HearthConfig};

use crate::support::{built_binary, built_library, test_models_dir};

pub struct RealHost {
    pub plugins: tempfile::TempDir,
    pub models: PathBuf,
}

impl RealHost {
    /// A plugins folder holding copies of the given plugin libraries.
    pub fn with_plugins(crates: &[&str]) -> Self {
        let plugins = tempfile::tempdir().unwrap();
        for name in crates {
            let library = built_library(name);
            std::fs::copy(&library, plugins.path().join(library.file_name().unwrap())).unwrap();
        }
        Self { plugins, models: test_models_dir() }
    }

    pub fn llamacpp() -> Self {
        Self::with_plugins(&["hearth_llamacpp"])
    }

    /// The service over this home, with the shipped catalog.
    pub fn open(&self) -> Arc<Hearth> {
        self.open_with(CatalogSource::BuiltIn)
    }

    /// The service with the shipped catalog but short idle timeouts, so the real
    /// timers can be watched in seconds.
    pub fn open_with_idle(&self, soft: &str, hard: &str) -> Arc<Hearth> {
        let shipped = include_str!("../../../catalog.toml");
        let catalog = shipped
            .replace("soft_timeout = \"2m\"", &format!("soft_timeout = \"{soft}\""))
            .replace("hard_timeout = \"5m\"", &format!("hard_timeout = \"{hard}\""));
        assert_ne!(catalog, shipped, "the shipped catalog's idle policy moved");
        let path = self.plugins.path().join("catalog.toml");
        std::fs::write(&path, catalog).unwrap();
        self.open_with(CatalogSource::File(path))
    }

    fn open_with(&self, catalog: CatalogSource) -> Arc<Hearth> {
        let config = HearthConfig {
            catalog,
            plugins: self.plugins.path().to_path_buf(),
            models: self.models.clone(),
            threads: 2,
            context_size: 2048,
            ..HearthConfig::in_home(self.plugins.path())
        };
        Arc::new(Hearth::open(config).expect("open hearth"))
    }

    /// Run the `hearth` binary over this home.
    pub fn cli(&self, args: &[&str]) -> Output {
        let home = self.plugins.path().join("home");
        let output = std::process::Command::new(built_binary())
            .args(args)
            .env("HEARTH_HOME", &home)
            .env("HEARTH_PLUGINS", self.plugins.path())
            .env("HEARTH_MODELS", &self.models)
            .env("HEARTH_THREADS", "2")
            .env_remove("HEARTH_CATALOG")
            .env_remove("RUST_BACKTRACE")
            .output()
            .expect("run hearth");
        assert!(
            output.status.success(),
            "hearth {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

/// Resident memory of this process, from /proc.
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}
