//! Helpers shared by the end-to-end test binaries: where cargo put the workspace's
//! built artifacts (building them when missing) and where the real models are.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    built(&crate_name.replace('_', "-"), &format!("lib{crate_name}.so"))
}

/// The `hearth` binary of this profile.
#[allow(dead_code, reason = "each test binary uses its own subset of the helpers")]
pub fn hearth_binary() -> PathBuf {
    built("hearth", "hearth")
}

static BUILD: Mutex<()> = Mutex::new(());

fn built(package: &str, file: &str) -> PathBuf {
    let profile_dir = profile_dir();
    let path = profile_dir.join(file);
    let _building = BUILD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !path.is_file() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = std::process::Command::new(cargo);
        command.args(["build", "--quiet", "-p", package]);
        if profile_dir.file_name().is_some_and(|name| name == "release") {
            command.arg("--release");
        }
        let status = command.status().expect("run cargo build");
        assert!(status.success() && path.is_file(), "could not build {}", path.display());
    }
    path
}

/// The real models, laid out as `<model-id>/<file>`: `$HEARTH_TEST_MODELS`, which
/// `scripts/test.sh` sets after installing them.
#[allow(dead_code, reason = "each test binary uses its own subset of the helpers")]
pub fn test_models_dir() -> PathBuf {
    let dir = std::env::var_os("HEARTH_TEST_MODELS")
        .map(PathBuf::from)
        .expect("HEARTH_TEST_MODELS is not set: run scripts/test.sh, which installs the test models and sets it");
    let smollm2 = dir.join("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(smollm2.is_file(), "{} is missing: run scripts/setup.sh to install the test models", smollm2.display());
    dir
}
