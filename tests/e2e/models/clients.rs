//! hearth as the client libraries people use meet it: the `ollama`, `anthropic` and
//! `openai` Python packages (pinned, installed by `scripts/setup.sh` under the cache,
//! `HEARTH_CLIENTS_PY`) run the scripts in `clients/` against a real server on loopback
//! with the real llama.cpp plugin and SmolLM2. Each script asserts what its client sees
//! and exits non-zero, with its traceback on stderr, when anything differs.

use std::path::{Path, PathBuf};

use crate::helpers::{serve, RealHost};

/// A folder of Python packages setup installed under the cache: `variable` names it,
/// else it is `folder` in the cache; `what` says what is missing when it is not there.
pub fn python_packages(variable: &str, folder: &str, what: &str) -> PathBuf {
    let packages = std::env::var_os(variable).map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("HEARTH_CACHE").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/hearth")
        });
        cache.join("python").join(folder)
    });
    assert!(
        packages.join(".complete").is_file(),
        "{what} missing (run scripts/setup.sh): {}",
        packages.display()
    );
    packages
}

/// Where setup installed the client libraries.
fn clients_python() -> PathBuf {
    python_packages(
        "HEARTH_CLIENTS_PY",
        "clients-ollama-0.6.3-anthropic-2.10.0-openai-3.51.0",
        "the Python client libraries are",
    )
}

/// Run `clients/<script>` against a fresh server over the llama.cpp plugin; it must
/// exit 0.
async fn run_client_script(script: &str) {
    run_client_script_on(&RealHost::llamacpp(), script).await;
}

/// Run `clients/<script>` against a fresh server over `host`; it must exit 0.
pub async fn run_client_script_on(host: &RealHost, script: &str) {
    let python_path = clients_python();
    let (base, _hearth) = serve(host).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/models/clients").join(script);
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    // The client runs while this runtime serves it, so it is awaited, not blocked on.
    let output = tokio::process::Command::new(python)
        .arg(&script)
        .arg(&base)
        .env("PYTHONPATH", &python_path)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("OLLAMA_HOST")
        .env_remove("ANTHROPIC_BASE_URL")
        .env_remove("OPENAI_BASE_URL")
        .output()
        .await
        .expect("run python");
    assert!(
        output.status.success(),
        "{} failed ({}):\n{}\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ollama_client_lists_chats_generates_embeds_shapes_json_calls_tools_and_sees_ps() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    run_client_script("ollama_client.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_client_answers_streams_counts_tokens_and_calls_tools() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    run_client_script("anthropic_client.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_client_chats_streams_responds_embeds_parses_schemas_and_calls_tools() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    run_client_script("openai_client.py").await;
}
