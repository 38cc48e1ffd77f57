//! `hearth pull` of a model that is a folder (the MLX layout: config, tokenizer, weights)
//! from a real HTTP server on loopback: every companion file lands beside the weights,
//! and a folder missing one is never taken for installed.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use crate::helpers::built_binary;

/// The files the server holds, by name.
type Files = Arc<HashMap<String, Vec<u8>>>;

const COMPANIONS: [&str; 3] = ["config.json", "tokenizer.json", "tokenizer_config.json"];

/// A server on loopback with `files` under `/repo/resolve/main/`, on its own runtime
/// thread for the rest of the test process; returns its base URL.
fn serve(files: HashMap<String, Vec<u8>>) -> String {
    async fn file(
        State(files): State<Files>,
        UrlPath(name): UrlPath<String>,
    ) -> (StatusCode, Vec<u8>) {
        match files.get(&name) {
            Some(bytes) => (StatusCode::OK, bytes.clone()),
            None => (StatusCode::NOT_FOUND, b"not found".to_vec()),
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let app =
        Router::new().route("/repo/resolve/main/{name}", get(file)).with_state(Arc::new(files));
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{address}/repo/resolve/main")
}

/// A home whose catalog lists one MLX-format model, `folder-model`, fetched from `base`.
fn home_with_folder_model(base: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("plugins")).unwrap();
    let companions =
        COMPANIONS.iter().map(|name| format!("\"{name}\"")).collect::<Vec<_>>().join(", ");
    let catalog = format!(
        "[[models]]\nid = \"folder-model\"\nname = \"A folder model\"\ncontext_size = 512\n\
         [[models.artifacts]]\nbackends = [\"mlx\"]\nformat = \"safetensors\"\n\
         file = \"Model-4bit/model.safetensors\"\nurl = \"{base}/model.safetensors\"\n\
         companions = [{companions}]\n"
    );
    std::fs::write(home.path().join("catalog.toml"), catalog).unwrap();
    home
}

fn pull(home: &Path) -> std::process::Output {
    Command::new(built_binary())
        .arg("--home")
        .arg(home)
        .args(["pull", "folder-model"])
        .env_remove("HEARTH_CATALOG")
        .env_remove("HEARTH_PLUGINS")
        .env_remove("HEARTH_MODELS")
        .output()
        .unwrap()
}

fn server_files() -> HashMap<String, Vec<u8>> {
    let mut files: HashMap<String, Vec<u8>> = COMPANIONS
        .iter()
        .map(|name| (name.to_string(), format!("{{\"file\": \"{name}\"}}").into_bytes()))
        .collect();
    files.insert("model.safetensors".into(), vec![7; 4096]);
    files
}

#[test]
fn a_folder_model_is_pulled_whole_with_every_companion_beside_its_weights() {
    let files = server_files();
    let home = home_with_folder_model(&serve(files.clone()));
    let output = pull(home.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let folder = home.path().join("models/folder-model/Model-4bit");
    for (name, bytes) in &files {
        assert_eq!(&std::fs::read(folder.join(name)).unwrap(), bytes, "{name}");
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().count(), files.len(), "one line a file: {stdout}");
    // Pulled again, everything is in place and nothing is fetched twice.
    assert!(pull(home.path()).status.success());
}

#[test]
fn a_companion_the_server_lacks_fails_the_pull_by_name_and_leaves_the_model_not_installed() {
    let mut files = server_files();
    files.remove("tokenizer.json");
    let home = home_with_folder_model(&serve(files));
    let output = pull(home.path());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("tokenizer.json"), "{stderr}");
    assert!(stderr.contains("404"), "{stderr}");
    // The weights come last, so the folder is not taken for a whole model.
    let folder = home.path().join("models/folder-model/Model-4bit");
    assert!(!folder.join("model.safetensors").exists());
    assert!(folder.join("config.json").exists(), "what came before stays for the next pull");
}
