//! Tool calls in a chat template family's own format, with the real llama.cpp plugin:
//! SmolLM2 served from a copy of its file whose `tokenizer.chat_template` is Qwen2.5's,
//! which knows tools (the Hermes format). The copy is written by `set_chat_template.py`
//! with gguf-py as setup installs it (`HEARTH_GGUF_PY`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::clients::{python_packages, run_client_script_on};
use crate::helpers::RealHost;

/// Where setup installed gguf-py.
fn gguf_python() -> PathBuf {
    python_packages("HEARTH_GGUF_PY", "gguf-0.19.0-numpy-2.3.5", "gguf-py is")
}

/// A store holding SmolLM2 alone, its file rewritten to carry `template`.
fn smollm2_with_template(models: &Path, template: &Path) -> tempfile::TempDir {
    let store = tempfile::tempdir().unwrap();
    let folder = store.path().join("smollm2-135m");
    std::fs::create_dir(&folder).unwrap();
    let file = std::fs::read_dir(models.join("smollm2-135m"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|extension| extension == "gguf"))
        .expect("SmolLM2 is installed");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/models/set_chat_template.py");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(python)
        .arg(script)
        .arg(&file)
        .arg(template)
        .arg(folder.join(file.file_name().unwrap()))
        .env("PYTHONPATH", gguf_python())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "set_chat_template.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_client_gets_hermes_calls_from_a_model_whose_template_knows_tools() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let mut host = RealHost::llamacpp();
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/templates/qwen2.5-tools.jinja");
    let store = smollm2_with_template(&host.models, &template);
    host.models = store.path().to_path_buf();
    run_client_script_on(&host, "openai_template_tools.py").await;
}
