//! Shared helpers: where the built fixtures are, and scratch folders holding them.

use std::path::{Path, PathBuf};

/// The folder cargo put this test's workspace artifacts in (`target/<profile>`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").to_path_buf()
}

/// A built library of this workspace, e.g. `hearth_fixture_plugin`.
///
/// `cargo test` compiles a cdylib crate only as a test harness, never as the library
/// itself, so the first test that needs one builds it with the same profile.
pub fn built_library(crate_name: &str) -> PathBuf {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let profile_dir = profile_dir();
    let path = profile_dir.join(format!("lib{crate_name}.so"));
    let _building = BUILD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !path.is_file() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = std::process::Command::new(cargo);
        command.args(["build", "--quiet", "-p", &crate_name.replace('_', "-")]);
        if profile_dir.file_name().is_some_and(|name| name == "release") {
            command.arg("--release");
        }
        let status = command.status().expect("run cargo build for a fixture");
        assert!(status.success() && path.is_file(), "could not build {}", path.display());
    }
    path
}

/// A scratch plugins folder holding copies of the given libraries.
pub fn plugins_dir(libraries: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in libraries {
        let source = built_library(name);
        std::fs::copy(&source, dir.path().join(source.file_name().unwrap())).expect("copy plugin");
    }
    dir
}
