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

/// The last commit of SDK 2.3, the minor version before this one, and of SDK 2.0, the
/// first of this major. The example built from each stands for a third party's plugin
/// built then and never rebuilt.
const PREVIOUS_SDK_MINOR: (&str, &str) = ("2.3", "ae23f40801c40cfd16a3e0c1c7c1c61f7d178a4e");
const FIRST_SDK_MINOR: (&str, &str) = ("2.0", "a43dee3defd2be29f61a0f31e3cba20def21ac6c");

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

/// The example as it was at `commit`, with the SDK of that commit, built in a target
/// folder of its own. The sources come from the repository's history (`git archive`),
/// so the test needs a clone with that commit, not a shallow one.
fn example_built_at(commit: &str) -> PathBuf {
    let tree = side_target_dir().join(format!("tree-{commit}"));
    if !tree.join(".complete").is_file() {
        let _ = std::fs::remove_dir_all(&tree);
        std::fs::create_dir_all(&tree).unwrap();
        let archive = Command::new("git")
            .arg("-C")
            .arg(repository())
            .args(["archive", "--format=tar", commit])
            .output()
            .expect("run git archive");
        assert!(
            archive.status.success(),
            "git archive {commit} failed; this test needs the repository's history: {}",
            String::from_utf8_lossy(&archive.stderr)
        );
        let mut untar = Command::new("tar")
            .arg("-x")
            .arg("-C")
            .arg(&tree)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("run tar");
        std::io::Write::write_all(untar.stdin.as_mut().unwrap(), &archive.stdout).unwrap();
        assert!(untar.wait().unwrap().success(), "tar could not unpack {commit}");
        std::fs::write(tree.join(".complete"), "").unwrap();
    }
    let manifest = tree.join("sdk/examples/openai-forward/Cargo.toml");
    let target = side_target_dir().join(format!("target-{commit}"));
    let status = cargo_build(&["--manifest-path", manifest.to_str().unwrap()])
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("run cargo build");
    let profile = side_library("hearth_openai_forward");
    let profile = profile.parent().unwrap().file_name().unwrap();
    let library = target.join(profile).join("libhearth_openai_forward.so");
    assert!(status.success() && library.is_file(), "the example of {commit} did not build");
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

/// Serve through the example plugin at `library`, forwarding to a real `hearth serve`
/// of the fixture plugin; returns the plugin API version it was built against.
async fn forwards_requests(library: &Path) -> String {
    let upstream_home = fixture_home(&["hearth_fixture_plugin"], "2m", "5m");
    let upstream = Server::start(upstream_home.path());
    let home = forwarding_home(library, &upstream.base);
    let hearth = std::sync::Arc::new(
        hearth::service::Hearth::open(hearth::service::HearthConfig::in_home(home.path())).unwrap(),
    );
    let plugins = hearth.plugins();
    assert!(plugins.refused.is_empty(), "{:?}", plugins.refused);
    assert_eq!(plugins.plugins[0].info.id, "openai-forward");
    let api_version = plugins.plugins[0].info.api_version.clone();
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
    api_version
}

#[tokio::test]
async fn the_out_of_tree_example_builds_loads_and_forwards_requests_to_an_openai_compatible_server()
{
    let api_version = forwards_requests(&built_example()).await;
    let current = hearth_sdk::API_VERSION;
    assert_eq!(api_version, format!("{}.{}", current.major, current.minor));
}

#[tokio::test]
async fn the_example_built_against_the_previous_sdk_minor_or_the_first_of_its_major_still_loads_and_forwards_requests(
) {
    let current = hearth_sdk::API_VERSION;
    assert_eq!(
        PREVIOUS_SDK_MINOR.0,
        format!("{}.{}", current.major, current.minor - 1),
        "move PREVIOUS_SDK_MINOR on"
    );
    for (version, commit) in [PREVIOUS_SDK_MINOR, FIRST_SDK_MINOR] {
        let api_version = forwards_requests(&example_built_at(commit)).await;
        assert_eq!(api_version, version);
    }
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
