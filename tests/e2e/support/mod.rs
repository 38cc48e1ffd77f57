//! Helpers shared by the end-to-end test binaries: where cargo put the workspace's
//! built artifacts (building them with this test's profile) and where the real models are.
#![allow(dead_code, reason = "each test binary uses its own subset of the helpers")]

pub mod server;

use std::path::{Path, PathBuf};

/// The folder cargo put this test's workspace artifacts in (`target/<profile>`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").to_path_buf()
}

/// `cargo build` with this test's profile, and the arguments given.
pub fn cargo_build(args: &[&str]) -> std::process::Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.args(["build", "--quiet"]).args(args);
    if is_release() {
        command.arg("--release");
    }
    command
}

fn is_release() -> bool {
    profile_dir().file_name().is_some_and(|name| name == "release")
}

/// Build the workspace (once per test process: cargo is quick when it is up to date,
/// and a stale fixture from an earlier build must never be tested) and return `path`.
///
/// The whole workspace, as setup builds it, never `-p package` alone: cargo unifies
/// features over the packages it is asked for, so a package built alone gets its
/// dependencies with other features, recompiles them (llama.cpp: minutes), and
/// overwrites the workspace build's library with that variant.
fn built(path: PathBuf) -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let status = cargo_build(&["--workspace"]).status().expect("run cargo build");
        assert!(status.success(), "cargo build --workspace failed");
    });
    assert!(path.is_file(), "the workspace build made no {}", path.display());
    path
}

/// A built library of this workspace, e.g. `hearth_fixture_plugin`.
///
/// `cargo test` compiles a cdylib crate only as a test harness, never as the library
/// itself, so the first test that needs one builds it with the same profile.
pub fn built_library(crate_name: &str) -> PathBuf {
    built(profile_dir().join(format!("lib{crate_name}.so")))
}

/// The `hearth` binary, built with this test's profile.
pub fn built_binary() -> PathBuf {
    built(profile_dir().join("hearth"))
}

/// Where setup installed the plugins (`HEARTH_TEST_PLUGINS`).
pub fn installed_plugins() -> PathBuf {
    std::env::var_os("HEARTH_TEST_PLUGINS")
        .map(PathBuf::from)
        .expect("HEARTH_TEST_PLUGINS is not set: run scripts/test.sh, which installs the plugins")
}

/// Copy this build's plugin library `name` into the plugins folder `into`, with the
/// companion folder setup installed for it where it has one (the llama.cpp plugin's run
/// path names it for libllama and ggml's modules, which the target folder lacks).
pub fn copy_built_plugin(name: &str, into: &Path) -> PathBuf {
    let library = built_library(name);
    let copied = into.join(library.file_name().unwrap());
    std::fs::copy(&library, &copied).unwrap();
    copy_companion(name, into);
    copied
}

/// Copy plugin `name`'s installed companion folder (`lib<name>/`), if it has one, into
/// the plugins folder `into`.
pub fn copy_companion(name: &str, into: &Path) {
    let Ok(companion) = std::fs::read_dir(installed_plugins().join(format!("lib{name}"))) else {
        return;
    };
    let copied = into.join(format!("lib{name}"));
    std::fs::create_dir(&copied).unwrap();
    for entry in companion {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copied.join(entry.file_name())).unwrap();
    }
}

/// A target folder for builds that must not touch this workspace's own artifacts (a
/// second build of a fixture, a crate outside the workspace); kept between runs so
/// only the first one pays for the dependencies.
pub fn side_target_dir() -> PathBuf {
    profile_dir().parent().expect("target/<profile>").join("out-of-tree")
}

/// The library a side build of `crate_name` produces.
pub fn side_library(crate_name: &str) -> PathBuf {
    side_target_dir()
        .join(if is_release() { "release" } else { "debug" })
        .join(format!("lib{crate_name}.so"))
}

/// The real models, laid out as `<model-id>/<file>`: `$HEARTH_TEST_MODELS`, which
/// `scripts/test.sh` sets after installing them.
pub fn test_models_dir() -> PathBuf {
    let dir = std::env::var_os("HEARTH_TEST_MODELS")
        .map(PathBuf::from)
        .expect("HEARTH_TEST_MODELS is not set: run scripts/test.sh, which installs the test models and sets it");
    let smollm2 = dir.join("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        smollm2.is_file(),
        "{} is missing: run scripts/setup.sh to install the test models",
        smollm2.display()
    );
    dir
}
