//! The malformed-file corpus ([`crate::corpus`]) against hearth and its plugins.
//!
//! Through the host, every corrupt model and adapter must come back as a clean error
//! naming the file — the gate's rule for a broken structure, the plugin's refusal for a
//! sound structure with unusable content — with nothing loaded and the host still
//! serving. Then straight to each plugin, bypassing the gate, each file in a child
//! process: the plugin's own checks must refuse it without taking the process down.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hearth::service::{CatalogSource, Hearth, HearthConfig};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::corpus::{adapter_cases, model_cases, smollm2_bytes, Case};
use crate::support::{copy_built_plugin, test_models_dir};

/// The backends the corpus of model files is fed to.
const PLUGINS: &[&str] = &["hearth_llamacpp", "hearth_webgpu"];

/// The backends the corpus of adapter files is fed to: every one that applies LoRA.
const ADAPTER_PLUGINS: &[&str] = &["hearth_llamacpp", "hearth_webgpu", "hearth_mlx"];

/// A hearth home with some of the plugins, whose store holds the real SmolLM2, a
/// `corrupt` model and a `corrupt-adapter` for SmolLM2, whose files each case replaces.
struct CorpusHome {
    dir: tempfile::TempDir,
    hearth: Arc<Hearth>,
}

impl CorpusHome {
    fn with(plugin_names: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        for name in plugin_names {
            copy_built_plugin(name, &plugins);
        }
        let models = dir.path().join("models");
        let smollm2 = models.join("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
        std::fs::create_dir_all(smollm2.parent().unwrap()).unwrap();
        let original = test_models_dir().join("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
        if std::fs::hard_link(&original, &smollm2).is_err() {
            std::fs::copy(&original, &smollm2).unwrap();
        }
        std::fs::create_dir_all(models.join("corrupt")).unwrap();
        std::fs::create_dir_all(models.join("adapters/corrupt-adapter")).unwrap();
        let catalog = format!(
            "{}\n[[models]]\nid = \"corrupt\"\nname = \"a file of the corpus\"\ncontext_size = 256\n\
             [[models.artifacts]]\nbackends = [\"llamacpp\", \"webgpu\"]\nformat = \"gguf\"\nfile = \"corrupt.gguf\"\n\n\
             [[adapters]]\nname = \"corrupt-adapter\"\ntitle = \"an adapter of the corpus\"\nbase_model = \"smollm2-135m\"\n\
             purpose = \"tests\"\n[[adapters.artifacts]]\nbackends = [\"llamacpp\", \"mlx\", \"webgpu\"]\nformat = \"gguf\"\nfile = \"corrupt-adapter.gguf\"\n",
            include_str!("../../../catalog.toml")
        );
        std::fs::write(dir.path().join("catalog.toml"), catalog).unwrap();
        let config = HearthConfig {
            catalog: CatalogSource::File(dir.path().join("catalog.toml")),
            plugins,
            models,
            threads: 2,
            context_size: 256,
            ..HearthConfig::in_home(dir.path())
        };
        let hearth = Arc::new(Hearth::open(config).expect("open hearth"));
        Self { dir, hearth }
    }

    fn model_file(&self) -> PathBuf {
        self.dir.path().join("models/corrupt/corrupt.gguf")
    }

    fn adapter_file(&self) -> PathBuf {
        self.dir.path().join("models/adapters/corrupt-adapter/corrupt-adapter.gguf")
    }

    async fn chat(&self, body: Value) -> (StatusCode, String) {
        let request = Request::post("/v1/chat/completions")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = hearth::api::app(self.hearth.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let body: Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
                .unwrap();
        (status, body["error"]["message"].as_str().unwrap_or_default().to_string())
    }
}

/// Replace `path` the way a download finishes: write beside it, then rename over it.
fn replace(path: &Path, bytes: &[u8]) {
    let partial = path.with_extension("tmp");
    std::fs::write(&partial, bytes).unwrap();
    std::fs::rename(partial, path).unwrap();
}

fn ask(model: &str, adapters: Value) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": "Hi" }], "max_tokens": 4, "adapters": adapters })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corrupt_model_and_adapter_gets_a_clean_error_naming_the_file_and_the_host_keeps_serving(
) {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let home = CorpusHome::with(PLUGINS);
    let models = model_cases(&smollm2_bytes(&test_models_dir()));
    let adapters = adapter_cases();
    let mut failures = Vec::new();
    for case in &models {
        replace(&home.model_file(), &case.bytes);
        let (status, message) = home.chat(ask("corrupt", json!([]))).await;
        let refused_by = if case.structurally_valid { "" } else { "is invalid" };
        // A damaged file is the server's fault and permanent: a 500, never a 503.
        let clean = status == StatusCode::INTERNAL_SERVER_ERROR
            && message.contains("corrupt.gguf")
            && message.contains(refused_by);
        if !clean || !home.hearth.loaded_models().is_empty() {
            failures.push(format!("{}: {status} {message}", case.name));
        }
    }
    // Each backend that applies LoRA gets the adapters on its own, so the router cannot
    // hand them to another.
    for plugin in ADAPTER_PLUGINS {
        let home = CorpusHome::with(&[plugin]);
        for case in &adapters {
            replace(&home.adapter_file(), &case.bytes);
            let (status, message) =
                home.chat(ask("smollm2-135m", json!([{ "name": "corrupt-adapter" }]))).await;
            // The gate cannot know the base model's shapes: the backend refuses that
            // one when it applies the adapter, as the client's mistake. An adapter
            // whose tensor count was zeroed is a sound, empty LoRA: llama.cpp applies
            // it and nothing changes; the model layer (MLX, WebGPU) refuses it by name,
            // since an adapter that adapts nothing is most likely the wrong file.
            let clean = if case.name == "adapter-no-tensors" && *plugin == "hearth_llamacpp" {
                status == StatusCode::OK
            } else if case.name == "adapter-no-tensors" {
                status == StatusCode::BAD_REQUEST
                    && message.contains("no lora_a/lora_b tensor pairs")
            } else if case.structurally_valid {
                status == StatusCode::BAD_REQUEST && message.contains("corrupt-adapter")
            } else {
                status == StatusCode::INTERNAL_SERVER_ERROR
                    && message.contains("corrupt-adapter.gguf is invalid")
            };
            if !clean {
                failures.push(format!("{plugin} {}: {status} {message}", case.name));
            }
        }
        let (status, message) = home.chat(ask("smollm2-135m", json!([]))).await;
        assert_eq!(status, StatusCode::OK, "{plugin} stopped serving: {message}");
    }
    eprintln!(
        "corpus through the host: {} model files, {} adapter files on each of {}",
        models.len(),
        adapters.len(),
        ADAPTER_PLUGINS.join(", ")
    );
    assert!(models.len() + adapters.len() >= 40);
    assert!(failures.is_empty(), "not refused cleanly:\n{}", failures.join("\n"));
    let (status, message) = home.chat(ask("smollm2-135m", json!([]))).await;
    assert_eq!(status, StatusCode::OK, "the host stopped serving: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_weights_are_an_error_naming_the_model_and_the_repaired_file_is_loaded_again_without_a_restart(
) {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let home = CorpusHome::with(PLUGINS);
    let good = smollm2_bytes(&test_models_dir());
    let mut damaged = good.clone();
    // A megabyte of 0xFF in the tensor data: the header is sound, the gate passes it,
    // and its quantized blocks' scales read as NaN.
    damaged[60 << 20..61 << 20].fill(0xff);
    replace(&home.model_file(), &damaged);
    let (status, message) = home.chat(ask("corrupt", json!([]))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{message}");
    assert!(message.contains("corrupt on llamacpp"), "{message}");
    assert!(message.contains("not finite"), "{message}");
    // Repaired in place, as `cp good.gguf corrupt.gguf` does: the next request sees it.
    std::fs::write(home.model_file(), &good).unwrap();
    let (status, message) = home.chat(ask("corrupt", json!([]))).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(home.hearth.loaded_models().len(), 1, "the damaged copy was unloaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_bytes_from_a_model_header_are_escaped_in_the_error_text() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let home = CorpusHome::with(PLUGINS);
    let mut bytes = smollm2_bytes(&test_models_dir());
    let architecture = crate::corpus::Layout::of(&bytes).kv("general.architecture").value_at;
    // "llama" → a terminal escape of the same length: ESC [ 3 1 m.
    bytes[architecture + 8..architecture + 13].copy_from_slice(b"\x1b[31m");
    replace(&home.model_file(), &bytes);
    let (status, message) = home.chat(ask("corrupt", json!([]))).await;
    assert_ne!(status, StatusCode::OK);
    assert!(!message.chars().any(char::is_control), "raw control bytes: {message:?}");
}

/// How one plugin took one file when the host's gate was not there to stop it.
#[derive(Debug, PartialEq)]
enum Direct {
    Refused(String),
    Accepted,
    Crashed(String),
}

/// Feed `file` to the plugin `library` in a child process: as a model, or as an
/// adapter on the real SmolLM2.
fn feed_directly(library: &Path, file: &Path, as_adapter: bool) -> Direct {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "corrupt_files::direct_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CORPUS_PLUGIN", library)
        .env("CORPUS_FILE", file)
        .env("CORPUS_AS_ADAPTER", if as_adapter { "1" } else { "" })
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The harness prints the test's name on the same line, before the verdict.
    let verdict =
        stdout.lines().find_map(|line| line.split_once("CORPUS: ").map(|(_, verdict)| verdict));
    match (output.status.success(), verdict) {
        (true, Some("accepted")) => Direct::Accepted,
        (true, Some(refused)) => Direct::Refused(refused.to_string()),
        _ => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            Direct::Crashed(format!("{}: {}", output.status, tail.join(" | ")))
        }
    }
}

#[test]
#[ignore = "run by every_file_of_the_corpus_fed_straight_to_each_plugin_is_refused_without_a_crash"]
fn direct_child() {
    let library = PathBuf::from(std::env::var_os("CORPUS_PLUGIN").unwrap());
    let file = std::env::var("CORPUS_FILE").unwrap();
    let plugin = hearth::plugin::load_plugin(&library).expect("load the plugin");
    let load = |path: &str| {
        let request = hearth_sdk::LoadRequest {
            model_id: "corpus".into(),
            paths: vec![path.into()].into(),
            format: "gguf".into(),
            context_size: 256,
            threads: 2,
            device: None.into(),
            ..Default::default()
        };
        plugin.backend.load(request.view()).into_result()
    };
    let verdict = if std::env::var("CORPUS_AS_ADAPTER").is_ok_and(|flag| flag == "1") {
        let smollm2 = test_models_dir().join("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
        let runner = hearth::plugin::PluginRunner::new(
            load(smollm2.to_str().unwrap()).expect("load SmolLM2"),
        );
        let request = hearth_sdk::GenerateRequest {
            messages: Default::default(),
            prompt: Some("Hi".into()).into(),
            sampling: Default::default(),
            stop: Default::default(),
            max_tokens: 2,
            adapters: vec![hearth_sdk::AdapterUse {
                name: "corpus".into(),
                path: file.as_str().into(),
                scale: 1.0,
            }]
            .into(),
            ..hearth_sdk::GenerateRequest::default()
        };
        struct Discard;
        impl hearth_sdk::TokenSink for Discard {
            fn on_token(&mut self, _: &str) -> hearth_sdk::SinkControl {
                hearth_sdk::SinkControl::Continue
            }
        }
        runner.generate(&request, &mut Discard).err()
    } else {
        load(&file).err()
    };
    match verdict {
        Some(error) => println!("CORPUS: {error}"),
        None => println!("CORPUS: accepted"),
    }
}

#[test]
fn every_file_of_the_corpus_fed_straight_to_each_plugin_is_refused_without_a_crash() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("case.gguf");
    let folder = scratch.path().join("plugins");
    std::fs::create_dir(&folder).unwrap();
    let plugins: Vec<(&str, PathBuf)> =
        ADAPTER_PLUGINS.iter().map(|name| (*name, copy_built_plugin(name, &folder))).collect();
    let mut report = Vec::new();
    let mut run = |case: &Case, plugin: &str, library: &Path, as_adapter: bool| {
        let outcome = feed_directly(library, &file, as_adapter);
        report.push((case.name.clone(), plugin.to_string(), case.structurally_valid, outcome));
    };
    for case in model_cases(&smollm2_bytes(&test_models_dir())) {
        std::fs::write(&file, &case.bytes).unwrap();
        for (plugin, library) in plugins.iter().filter(|(plugin, _)| PLUGINS.contains(plugin)) {
            run(&case, plugin, library, false);
        }
    }
    for case in adapter_cases() {
        std::fs::write(&file, &case.bytes).unwrap();
        for (plugin, library) in &plugins {
            run(&case, plugin, library, true);
        }
    }
    for (case, plugin, _, outcome) in &report {
        eprintln!("{plugin:16} {case:36} {outcome:?}");
    }
    let crashed: Vec<_> =
        report.iter().filter(|(.., outcome)| matches!(outcome, Direct::Crashed(_))).collect();
    assert!(crashed.is_empty(), "plugins crashed on: {crashed:#?}");
    // A file whose structure is sound but whose content is unusable has no gate in
    // front of it: the plugins must refuse it themselves.
    let accepted_sound: Vec<_> = report
        .iter()
        .filter(|(case, _, sound, outcome)| {
            *sound && *outcome == Direct::Accepted && case != "adapter-no-tensors"
        })
        .collect();
    assert!(accepted_sound.is_empty(), "plugins accepted unusable files: {accepted_sound:#?}");
}
