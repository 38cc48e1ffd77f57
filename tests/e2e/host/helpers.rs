//! Helpers of the host tests: scratch homes holding the fixture plugin.

pub use crate::support::{built_binary, built_library, cargo_build, side_library, side_target_dir};

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

    /// The usual fixture models plus `extra` ones, with `idle` lines added to the
    /// catalog's `[idle]` section.
    pub fn with_models(extra: &[(&str, &str)], idle: &str) -> Self {
        let home = fixture_home(&["hearth_fixture_plugin"], "2m", "5m");
        let path = home.path().join("catalog.toml");
        let mut catalog =
            std::fs::read_to_string(&path).unwrap().replacen("\n\n", &format!("\n{idle}\n\n"), 1);
        for (id, contents) in extra {
            let dir = home.path().join("models").join(id);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{id}.fixture")), contents).unwrap();
            catalog.push_str(&fixture_model_entry(id, 512));
        }
        std::fs::write(&path, catalog).unwrap();
        let config = hearth::service::HearthConfig::in_home(home.path());
        let hearth =
            std::sync::Arc::new(hearth::service::Hearth::open(config).expect("open the test host"));
        Self { _home: home, hearth }
    }

    pub fn with_idle(soft: &str, hard: &str) -> Self {
        Self::with_config(soft, hard, |_| {})
    }

    /// A test host whose models run in worker processes of the built `hearth` binary.
    pub fn in_worker_processes() -> Self {
        Self::with_config("2m", "5m", |config| {
            config.isolation = Some(hearth::catalog::Isolation::Process);
            config.worker_program = Some(built_binary());
        })
    }

    fn with_config(
        soft: &str,
        hard: &str,
        adjust: impl FnOnce(&mut hearth::service::HearthConfig),
    ) -> Self {
        let home = fixture_home(&["hearth_fixture_plugin"], soft, hard);
        let mut config = hearth::service::HearthConfig::in_home(home.path());
        adjust(&mut config);
        let hearth =
            std::sync::Arc::new(hearth::service::Hearth::open(config).expect("open the test host"));
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
    let mut catalog = format!(
        "[idle]\nsoft_timeout = \"{soft}\"\nhard_timeout = \"{hard}\"\nmax_resident_models = 3\n\n"
    );
    for (id, contents) in FIXTURE_MODELS {
        let dir = home.path().join("models").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{id}.fixture")), contents).unwrap();
        catalog.push_str(&fixture_model_entry(id, 512));
    }
    std::fs::write(home.path().join("catalog.toml"), catalog).unwrap();
    home
}
