//! A hearth home whose plugins folder holds the real backend plugins and whose store
//! is the installed test models (plus, where asked, the repository's test adapter).
#![allow(
    dead_code,
    reason = "shared by the models and memory test binaries, which use different parts"
)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use hearth::catalog::Isolation;
use hearth::service::{CatalogSource, Hearth, HearthConfig};
use serde_json::Value;

use crate::support::{
    built_binary, copy_built_plugin, copy_companion, installed_plugins, test_models_dir,
};

pub struct RealHost {
    pub plugins: tempfile::TempDir,
    pub models: PathBuf,
    /// Where the backends run; `None` follows the catalog (in process).
    isolation: Option<Isolation>,
    /// The store folder that [`RealHost::with_test_adapter`] or
    /// [`RealHost::with_extra_model`] made, kept until the host goes.
    layered_models: Option<tempfile::TempDir>,
    /// The catalog file [`RealHost::with_extra_model`] wrote; `None` is the shipped one.
    catalog: Option<PathBuf>,
}

/// The repository's trained test adapter (scripts/train_adapter.sh) and its catalog name.
pub const TEST_ADAPTER: &str = "smollm2-signoff";
const TEST_ADAPTER_FILE: &str = "smollm2-signoff-lora-f16.gguf";

impl RealHost {
    /// A plugins folder holding copies of the given plugin libraries as this build made
    /// them, each with the companion folder setup installed for it where it has one
    /// (the llama.cpp plugin's run path names it for libllama and ggml's modules).
    pub fn with_plugins(crates: &[&str]) -> Self {
        let plugins = tempfile::tempdir().unwrap();
        for name in crates {
            copy_built_plugin(name, plugins.path());
        }
        Self::over(plugins)
    }

    fn over(plugins: tempfile::TempDir) -> Self {
        let models = test_models_dir();
        Self { plugins, models, isolation: None, layered_models: None, catalog: None }
    }

    /// A plugins folder holding copies of the given plugins as setup installed them
    /// (`HEARTH_TEST_PLUGINS`), each with its companion folder where it has one.
    pub fn with_installed_plugins(crates: &[&str]) -> Self {
        let plugins = tempfile::tempdir().unwrap();
        for name in crates {
            let file = format!("lib{name}.so");
            std::fs::copy(installed_plugins().join(&file), plugins.path().join(&file)).unwrap();
            copy_companion(name, plugins.path());
        }
        Self::over(plugins)
    }

    /// The same host over a layered store that also holds the repository's test adapter
    /// where the catalog says adapters live (`adapters/<name>/<file>`), copied.
    pub fn with_test_adapter(mut self) -> Self {
        let store = self.layered_store();
        // Installed by setup from tests/data; not read from the source tree through a
        // path compiled in, which a test binary built in another checkout would carry.
        let source = test_models_dir().join("adapters").join(TEST_ADAPTER).join(TEST_ADAPTER_FILE);
        assert!(
            source.is_file(),
            "the test adapter is missing (run scripts/setup.sh): {}",
            source.display()
        );
        let folder = store.join("adapters").join(TEST_ADAPTER);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(&source, folder.join(TEST_ADAPTER_FILE)).unwrap();
        self
    }

    /// The same host with one more catalog model, `id` (family llama), whose one GGUF
    /// artifact is the file at `source`, loadable by `backends`: the file is linked into
    /// the layered store and the entry appended to the shipped catalog.
    pub fn with_extra_model(mut self, id: &str, source: &Path, backends: &[&str]) -> Self {
        let store = self.layered_store();
        let file = source.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::create_dir_all(store.join(id)).unwrap();
        if std::fs::hard_link(source, store.join(id).join(&file)).is_err() {
            std::fs::copy(source, store.join(id).join(&file)).unwrap();
        }
        let backends: Vec<String> = backends.iter().map(|b| format!("{b:?}")).collect();
        let entry = format!(
            "\n[[models]]\nid = {id:?}\nname = {id:?}\nfamily = \"llama\"\ncontext_size = 8192\n\
             [[models.artifacts]]\nbackends = [{}]\nformat = \"gguf\"\nfile = {file:?}\n",
            backends.join(", ")
        );
        let path = self.plugins.path().join("catalog.toml");
        std::fs::write(&path, format!("{}{entry}", include_str!("../../../catalog.toml"))).unwrap();
        self.catalog = Some(path);
        self
    }

    /// A store of this host's own over the test models, made on first use: they are
    /// hard-linked (copied where the folders sit on different file systems), since the
    /// store refuses symlinks that lead out of it; the installed models are never
    /// written to.
    fn layered_store(&mut self) -> PathBuf {
        if let Some(store) = &self.layered_models {
            return store.path().to_path_buf();
        }
        let store = tempfile::tempdir().unwrap();
        for model in std::fs::read_dir(&self.models).unwrap() {
            let model = model.unwrap();
            if model.file_name() == "adapters" || !model.file_type().unwrap().is_dir() {
                continue;
            }
            let folder = store.path().join(model.file_name());
            std::fs::create_dir(&folder).unwrap();
            for file in std::fs::read_dir(model.path()).unwrap() {
                let file = file.unwrap();
                // Catalog models are `<model-id>/<file>`; deeper folders (the conformance
                // suite's `tiny/<arch>/`) are no catalog model's.
                if !file.file_type().unwrap().is_file() {
                    continue;
                }
                let linked = folder.join(file.file_name());
                if std::fs::hard_link(file.path(), &linked).is_err() {
                    std::fs::copy(file.path(), &linked).unwrap();
                }
            }
        }
        self.models = store.path().to_path_buf();
        self.layered_models = Some(store);
        self.models.clone()
    }

    /// The same host with every backend in a supervised worker process (the `hearth`
    /// binary in worker mode), as `hearth serve` runs them by default.
    pub fn in_worker_processes(mut self) -> Self {
        self.isolation = Some(Isolation::Process);
        self
    }

    pub fn llamacpp() -> Self {
        Self::with_plugins(&["hearth_llamacpp"])
    }

    /// The service over this home, with the shipped catalog (and any extra model).
    pub fn open(&self) -> Arc<Hearth> {
        match &self.catalog {
            Some(path) => self.open_with(CatalogSource::File(path.clone())),
            None => self.open_with(CatalogSource::BuiltIn),
        }
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
            isolation: self.isolation,
            worker_program: Some(built_binary()),
            ..HearthConfig::in_home(self.plugins.path())
        };
        Arc::new(Hearth::open(config).expect("open hearth"))
    }

    /// Run the `hearth` binary over this home.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_without(args, &[])
    }

    /// The same, with the variables `unset` taken out of the environment.
    pub fn cli_without(&self, args: &[&str], unset: &[&str]) -> Output {
        let mut command = self.command(args);
        for name in unset {
            command.env_remove(name);
        }
        let output = command.output().expect("run hearth");
        assert!(
            output.status.success(),
            "hearth {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// `hearth ARGS` on this host's folders (and its catalog, where
    /// [`RealHost::with_extra_model`] wrote one), not yet run.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(built_binary());
        command
            .args(args)
            .env("HEARTH_HOME", self.plugins.path().join("home"))
            .env("HEARTH_PLUGINS", self.plugins.path())
            .env("HEARTH_MODELS", &self.models)
            .env("HEARTH_THREADS", "2")
            .env_remove("HEARTH_CATALOG")
            .env_remove("RUST_BACKTRACE");
        if let Some(catalog) = &self.catalog {
            command.env("HEARTH_CATALOG", catalog);
        }
        command
    }
}

/// Resident memory of this process, from /proc.
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Bytes this process holds allocated through malloc, in every arena and in mmapped
/// chunks: what a leak grows. Unlike the resident size it does not move with how the
/// allocator's arenas happen to be fragmented, which puts a few megabytes of noise on
/// resident figures between otherwise identical runs.
pub fn heap_in_use_bytes() -> u64 {
    /// glibc's `struct mallinfo2`: ten `size_t` fields.
    #[repr(C)]
    struct MallInfo2 {
        arena: usize,
        ordblks: usize,
        smblks: usize,
        hblks: usize,
        hblkhd: usize,
        usmblks: usize,
        fsmblks: usize,
        uordblks: usize,
        fordblks: usize,
        keepcost: usize,
    }
    extern "C" {
        fn mallinfo2() -> MallInfo2;
    }
    // SAFETY: mallinfo2 takes the allocator's locks and returns a plain struct by value.
    let info = unsafe { mallinfo2() };
    (info.uordblks + info.hblkhd) as u64
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// Serve the API over this host's service on a free local port; returns its base URL.
pub async fn serve(host: &RealHost) -> (String, std::sync::Arc<hearth::service::Hearth>) {
    let hearth = host.open();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = hearth::api::app(hearth.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), hearth)
}

/// The text of a streamed chat completion (SSE), chunk contents joined.
pub fn streamed_text(body: &str) -> String {
    streamed_pieces(body).concat()
}

/// The content of each chunk of a streamed chat completion (SSE), one per token piece.
pub fn streamed_pieces(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect()
}

/// Memory tests read this process's resident size, so they run one at a time (an async
/// lock: it is held across the whole test, awaits included, and a failed test does not
/// poison it for the next).
pub static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The question SmolLM2 answers "Paris" to at temperature 0 on every backend and
/// device. The bare question is a near tie on llama.cpp ("L" or "The" first), since
/// SmolLM2's template adds its own system prompt.
pub const PARIS_QUESTION: &str = "What is the capital of France? Answer in one word.";

/// A greedy chat asking SmolLM2 for the capital of France.
pub fn question() -> hearth::service::Generation {
    hearth::service::Generation {
        route: hearth::router::RouteRequest {
            model: Some("smollm2-135m".into()),
            ..hearth::router::RouteRequest::default()
        },
        request: hearth_sdk::GenerateRequest {
            messages: hearth_sdk::abi_stable::std_types::RVec::from(vec![
                hearth_sdk::ChatMessage { role: "user".into(), content: PARIS_QUESTION.into() },
            ]),
            prompt: None.into(),
            sampling: hearth_sdk::Sampling { temperature: 0.0, ..hearth_sdk::Sampling::default() },
            stop: hearth_sdk::abi_stable::std_types::RVec::new(),
            max_tokens: 24,
            adapters: hearth_sdk::abi_stable::std_types::RVec::new(),
            ..hearth_sdk::GenerateRequest::default()
        },
        adapters: Vec::new(),
        keep_alive: hearth::lifecycle::KeepAlive::Default,
    }
}
