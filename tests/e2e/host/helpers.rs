//! Shared helpers: where the built fixtures are, and scratch folders holding them.

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

/// Build `-p package` (once per test process: cargo is quick when it is up to date,
/// and a stale fixture from an earlier build must never be tested) and return `path`.
fn built(package: &str, path: PathBuf, extra: &[&str]) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !built.iter().any(|name| name == package) {
        let mut args = vec!["-p", package];
        args.extend_from_slice(extra);
        let status = cargo_build(&args).status().expect("run cargo build");
        assert!(status.success() && path.is_file(), "could not build {}", path.display());
        built.push(package.to_string());
    }
    path
}

/// A built library of this workspace, e.g. `hearth_fixture_plugin`.
///
/// `cargo test` compiles a cdylib crate only as a test harness, never as the library
/// itself, so the first test that needs one builds it with the same profile.
pub fn built_library(crate_name: &str) -> PathBuf {
    built(&crate_name.replace('_', "-"), profile_dir().join(format!("lib{crate_name}.so")), &[])
}

/// The `hearth` binary, built with this test's profile.
pub fn built_binary() -> PathBuf {
    built("hearth", profile_dir().join("hearth"), &["--bin", "hearth"])
}

/// A target folder for builds that must not touch this workspace's own artifacts (a
/// second build of a fixture, a crate outside the workspace); kept between runs so
/// only the first one pays for the dependencies.
pub fn side_target_dir() -> PathBuf {
    profile_dir().parent().expect("target/<profile>").join("out-of-tree")
}

/// The library a side build of `crate_name` produces.
pub fn side_library(crate_name: &str) -> PathBuf {
    side_target_dir().join(if is_release() { "release" } else { "debug" }).join(format!("lib{crate_name}.so"))
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

/// A hearth home in a temp folder: the fixture plugin, fixture "models" and a catalog
/// naming them, opened as a service.
pub struct TestHost {
    /// Owns the temp folder the host reads from; dropping it deletes the folder.
    _home: tempfile::TempDir,
    pub hearth: std::sync::Arc<hearth::service::Hearth>,
}

/// Fixture models: id → model file contents (see the fixture plugin's docs).
pub const FIXTURE_MODELS: &[(&str, &str)] = &[
    ("echo", "tokens = 6\n"),
    ("slow", "tokens = 200\ndelay_ms = 20\n"),
    ("broken", "load = fail\n"),
];

impl TestHost {
    pub fn new() -> Self {
        Self::with_idle("2m", "5m")
    }

    pub fn with_idle(soft: &str, hard: &str) -> Self {
        let home = fixture_home(&["hearth_fixture_plugin"], soft, hard);
        let config = hearth::service::HearthConfig::in_home(home.path());
        let hearth = std::sync::Arc::new(hearth::service::Hearth::open(config).expect("open the test host"));
        Self { _home: home, hearth }
    }
}

/// A catalog entry for a fixture model.
pub fn fixture_model_entry(id: &str, context_size: u32) -> String {
    format!(
        "[[models]]\nid = \"{id}\"\nname = \"fixture {id}\"\ncontext_size = {context_size}\n[[models.artifacts]]\nbackends = [\"fixture\"]\nformat = \"fixture\"\nfile = \"{id}.fixture\"\n\n"
    )
}

/// A hearth home in a temp folder: `plugins/` holding the given libraries, the
/// [`FIXTURE_MODELS`] in `models/`, and a `catalog.toml` naming them.
pub fn fixture_home(libraries: &[&str], soft: &str, hard: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().expect("temp dir");
    let plugins = home.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for name in libraries {
        let source = built_library(name);
        std::fs::copy(&source, plugins.join(source.file_name().unwrap())).expect("copy plugin");
    }
    let mut catalog = format!("[idle]\nsoft_timeout = \"{soft}\"\nhard_timeout = \"{hard}\"\nmax_resident_models = 3\n\n");
    for (id, contents) in FIXTURE_MODELS {
        let dir = home.path().join("models").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{id}.fixture")), contents).unwrap();
        catalog.push_str(&fixture_model_entry(id, 512));
    }
    std::fs::write(home.path().join("catalog.toml"), catalog).unwrap();
    home
}
