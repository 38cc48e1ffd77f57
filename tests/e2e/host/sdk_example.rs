//! The SDK's out-of-tree example backend (`sdk/examples/openai-forward`), built as the
//! separate crate a third party would have, loaded into the host, and serving requests
//! by forwarding them to a real OpenAI-compatible server: a `hearth serve` with the
//! fixture plugin.

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::helpers::{cargo_build, fixture_home, side_library, side_target_dir};
use crate::support::server::Server;

/// The checkout under test: cargo names the package's folder at run time. Not the
/// folder compiled in, which a test binary built in another checkout of the same shared
/// target folder would carry.
fn repository() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .expect("run by cargo test, which sets CARGO_MANIFEST_DIR");
    Path::new(&manifest).parent().expect("the tests crate sits in the repository").to_path_buf()
}

/// Build the example with `--manifest-path`, as its own workspace, in a target folder
/// of its own.
fn built_example() -> PathBuf {
    let manifest = repository().join("sdk/examples/openai-forward/Cargo.toml");
    let status = cargo_build(&["--manifest-path", manifest.to_str().unwrap()])
        .env("CARGO_TARGET_DIR", side_target_dir())
        .status()
        .expect("run cargo build");
    let library = side_library("hearth_openai_forward");
    assert!(status.success() && library.is_file(), "the example backend did not build");
    library
}

/// A hearth home whose only plugin is the example, with one model: `echo` on `upstream`.
fn forwarding_home(library: &Path, upstream: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("plugins")).unwrap();
    std::fs::copy(library, home.path().join("plugins/libhearth_openai_forward.so")).unwrap();
    let model_dir = home.path().join("models/remote-echo");
    std::fs::create_dir_all(&model_dir).unwrap();
    std::fs::write(
        model_dir.join("remote-echo.toml"),
        format!("base_url = \"{upstream}/v1\"\nmodel = \"echo\"\n"),
    )
    .unwrap();
    let catalog = "[[models]]\nid = \"remote-echo\"\nname = \"echo, forwarded\"\ncontext_size = 512\n\
                   [[models.artifacts]]\nbackends = [\"openai-forward\"]\nformat = \"openai-forward\"\nfile = \"remote-echo.toml\"\n";
    std::fs::write(home.path().join("catalog.toml"), catalog).unwrap();
    home
}

async fn post(app: &axum::Router, path: &str, body: Value) -> (u16, String) {
    let request = Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn the_out_of_tree_example_builds_loads_and_forwards_requests_to_an_openai_compatible_server()
{
    let library = built_example();
    let upstream_home = fixture_home(&["hearth_fixture_plugin"], "2m", "5m");
    let upstream = Server::start(upstream_home.path());
    let home = forwarding_home(&library, &upstream.base);
    let hearth = std::sync::Arc::new(
        hearth::service::Hearth::open(hearth::service::HearthConfig::in_home(home.path())).unwrap(),
    );
    let plugins = hearth.plugins();
    assert!(plugins.refused.is_empty(), "{:?}", plugins.refused);
    assert_eq!(plugins.plugins[0].info.id, "openai-forward");
    let app = hearth::api::app(hearth.clone());

    let chat = json!({ "model": "remote-echo", "messages": [{ "role": "user", "content": "red green blue" }], "seed": 0 });
    let (status, body) = post(&app, "/v1/chat/completions", chat).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "red green blue red green blue ");
    assert_eq!(answer["usage"]["completion_tokens"], 6, "the upstream's usage is relayed");
    assert_eq!(answer["hearth"]["backend"], "openai-forward");

    // A raw prompt goes to the upstream's /v1/completions, and max_tokens travels along.
    let completion = json!({ "model": "remote-echo", "prompt": "up down", "max_tokens": 3, "seed": 0, "stream": true });
    let (status, body) = post(&app, "/v1/completions", completion).await;
    assert_eq!(status, 200, "{body}");
    let text: String = body
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter_map(|chunk| chunk["choices"][0]["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(text, "up down up ");

    // The upstream's own errors come back with its message.
    let (status, body) =
        post(&app, "/v1/completions", json!({ "model": "remote-echo", "prompt": "boom #fail" }))
            .await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("fixture generate failure requested"), "{body}");
}

#[test]
fn the_sdk_documentation_builds_without_warnings() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["doc", "--quiet", "-p", "hearth-sdk", "--no-deps"])
        .current_dir(repository())
        .env("RUSTDOCFLAGS", "-Dwarnings")
        .output()
        .expect("run cargo doc");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}
