//! Helpers of the host tests: scratch homes holding the fixture plugin.

pub use crate::support::built_library;

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
        let home = plugins_dir(&["hearth_fixture_plugin"]);
        let plugins = home.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        for entry in std::fs::read_dir(home.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "so") {
                std::fs::rename(&path, plugins.join(path.file_name().unwrap())).unwrap();
            }
        }
        let mut catalog = format!("[idle]\nsoft_timeout = \"{soft}\"\nhard_timeout = \"{hard}\"\nmax_resident_models = 3\n\n");
        for (id, contents) in FIXTURE_MODELS {
            let dir = home.path().join("models").join(id);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{id}.fixture")), contents).unwrap();
            catalog.push_str(&format!(
                "[[models]]\nid = \"{id}\"\nname = \"fixture {id}\"\ncontext_size = 512\n[[models.artifacts]]\nbackends = [\"fixture\"]\nformat = \"fixture\"\nfile = \"{id}.fixture\"\n\n"
            ));
        }
        std::fs::write(home.path().join("catalog.toml"), catalog).unwrap();
        let config = hearth::service::HearthConfig::in_home(home.path());
        let hearth = std::sync::Arc::new(hearth::service::Hearth::open(config).expect("open the test host"));
        Self { _home: home, hearth }
    }
}
