//! The plugins folder of a running `hearth serve`: plugins dropped in, rebuilt,
//! half-copied and removed take effect without a restart.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

use crate::helpers::{built_library, cargo_build, fixture_home, side_library, side_target_dir};
use crate::support::server::Server;

pub const FIXTURE: &str = "libhearth_fixture_plugin.so";
/// The version the second build of the fixture reports, and answers `#version` with.
pub const REBUILT_VERSION: &str = "2.0.0-rebuilt";

/// The fixture plugin built a second time, reporting [`REBUILT_VERSION`].
pub fn rebuilt_fixture() -> PathBuf {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _building = BUILD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let status = cargo_build(&["-p", "hearth-fixture-plugin"])
        .env("CARGO_TARGET_DIR", side_target_dir())
        .env("HEARTH_FIXTURE_VERSION", REBUILT_VERSION)
        .status()
        .expect("run cargo build");
    let library = side_library("hearth_fixture_plugin");
    assert!(status.success() && library.is_file(), "could not rebuild the fixture");
    library
}

/// The versions of the plugins `GET /api/plugins` lists.
async fn versions(server: &Server) -> Vec<String> {
    let plugins = server.get("/api/plugins").await;
    plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|plugin| plugin["version"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_plugin_copied_into_the_folder_appears_and_serves_a_request_within_two_seconds() {
    let home = fixture_home(&[], "2m", "5m");
    let library = built_library("hearth_fixture_plugin");
    let server = Server::start(home.path());
    assert!(server.get("/api/plugins").await["plugins"].as_array().unwrap().is_empty());
    assert_eq!(server.chat("echo", "x").await.0, 503, "no backend yet");

    let copied = Instant::now();
    std::fs::copy(&library, home.path().join("plugins").join(FIXTURE)).unwrap();
    let text = server
        .eventually(Duration::from_secs(2), "the copied plugin serves", || async {
            let (status, text) = server.chat("echo", "red green blue").await;
            (status == 200).then_some(text)
        })
        .await;
    assert!(copied.elapsed() < Duration::from_secs(2));
    assert_eq!(text, "red green blue red green blue ");
    let plugins = server.get("/api/plugins").await;
    assert_eq!(plugins["plugins"][0]["id"], "fixture");
    assert_eq!(plugins["plugins"][0]["available"], true, "the new plugin was probed: {plugins}");
    assert!(server.log().contains("plugin loaded"), "{}", server.log());
}

#[tokio::test]
async fn a_rebuilt_plugin_takes_new_requests_while_a_stream_in_flight_finishes_on_the_old_build() {
    let rebuilt = rebuilt_fixture();
    let home = fixture_home(&["hearth_fixture_plugin"], "2m", "5m");
    let server = Server::start(home.path());
    let original = versions(&server).await;
    assert_eq!(original.len(), 1);
    assert_ne!(original[0], REBUILT_VERSION);

    // 150 tokens at 20 ms: three seconds of stream, each token the serving build's version.
    let body = json!({ "model": "slow", "messages": [{ "role": "user", "content": "#version" }],
                       "stream": true, "max_tokens": 150 });
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    let mut streamed = String::new();
    while !streamed.contains(&format!("\"content\":\"{}", original[0])) {
        streamed.push_str(&String::from_utf8_lossy(
            &stream.next().await.expect("stream ended early").unwrap(),
        ));
    }

    // Overwritten in place, as `cp` does: the running build must not notice.
    std::fs::copy(&rebuilt, home.path().join("plugins").join(FIXTURE)).unwrap();
    server
        .eventually(Duration::from_secs(5), "the rebuilt plugin is listed", || async {
            (versions(&server).await == [REBUILT_VERSION]).then_some(())
        })
        .await;
    let (status, text) = server.chat("echo", "#version").await;
    assert_eq!(status, 200);
    assert_eq!(
        text,
        format!("{REBUILT_VERSION} ").repeat(6),
        "a new request runs on the new build"
    );

    while let Some(chunk) = stream.next().await {
        streamed.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    let chunks: Vec<Value> = streamed
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    let pieces: Vec<&str> = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .filter(|piece| !piece.is_empty())
        .collect();
    assert_eq!(pieces.len(), 150, "the stream in flight completed");
    assert!(
        pieces.iter().all(|piece| *piece == format!("{} ", original[0])),
        "and all of it on the old build: {pieces:?}"
    );
    assert!(streamed.trim_end().ends_with("data: [DONE]"));

    // The old build's model goes once its stream has ended.
    server
        .eventually(Duration::from_secs(5), "the old build's model is unloaded", || async {
            let ps = server.get("/api/ps").await;
            let models = ps["models"].as_array().unwrap().clone();
            models.iter().all(|model| model["key"]["model_id"] != "slow").then_some(())
        })
        .await;
    assert!(server.log().contains("plugin replaced"), "{}", server.log());
}

#[tokio::test]
async fn a_half_copied_plugin_is_not_loaded_until_the_copy_is_complete() {
    let home = fixture_home(&[], "2m", "5m");
    let bytes = std::fs::read(built_library("hearth_fixture_plugin")).unwrap();
    let server = Server::start(home.path());
    let mut file = std::fs::File::create(home.path().join("plugins").join(FIXTURE)).unwrap();
    // A slow copy: a chunk every 40 ms, for well over the watcher's settle period.
    for chunk in bytes.chunks(bytes.len() / 16 + 1) {
        file.write_all(chunk).unwrap();
        file.flush().unwrap();
        let plugins = server.get("/api/plugins").await;
        assert!(
            plugins["plugins"].as_array().unwrap().is_empty(),
            "loaded while half-copied: {plugins}"
        );
        assert!(
            plugins["refused"].as_array().unwrap().is_empty(),
            "refused while half-copied: {plugins}"
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    drop(file);
    server
        .eventually(Duration::from_secs(3), "the completed plugin loads", || async {
            let (status, text) = server.chat("echo", "done").await;
            (status == 200).then_some(text)
        })
        .await;
    let plugins = server.get("/api/plugins").await;
    assert!(plugins["refused"].as_array().unwrap().is_empty(), "{plugins}");
}

#[tokio::test]
async fn a_replacing_copy_that_pauses_half_way_is_not_taken_for_the_new_build_and_a_server_with_in_process_backends_survives_it(
) {
    let home = fixture_home(&["hearth_fixture_plugin"], "2m", "5m");
    let catalog = home.path().join("catalog.toml");
    let text = std::fs::read_to_string(&catalog).unwrap();
    std::fs::write(&catalog, format!("{text}[isolation]\ndefault = \"in-process\"\n")).unwrap();
    let bytes = std::fs::read(built_library("hearth_fixture_plugin")).unwrap();
    let server = Server::start(home.path());
    assert_eq!(server.chat("echo", "before").await.0, 200);
    let mut file = std::fs::File::create(home.path().join("plugins").join(FIXTURE)).unwrap();
    file.write_all(&bytes[..bytes.len() / 2]).unwrap();
    file.flush().unwrap();
    // The copy stalls for several settle periods, as a copy over a slow disk does.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let plugins = server.get("/api/plugins").await;
    assert_eq!(plugins["plugins"].as_array().unwrap().len(), 1, "{plugins}");
    assert!(!server.log().contains("plugin replaced"), "{}", server.log());
    assert_eq!(server.chat("echo", "during").await.0, 200, "{}", server.log());
    file.write_all(&bytes[bytes.len() / 2..]).unwrap();
    drop(file);
    server
        .eventually(Duration::from_secs(5), "the finished copy replaces the plugin", || async {
            server.log().contains("plugin replaced").then_some(())
        })
        .await;
    assert_eq!(server.chat("echo", "after").await.0, 200, "{}", server.log());
    assert!(server.get("/api/plugins").await["refused"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_removed_plugin_takes_no_new_requests_and_its_idle_models_are_unloaded() {
    let home = fixture_home(&["hearth_fixture_plugin"], "2m", "5m");
    let server = Server::start(home.path());
    assert_eq!(server.chat("echo", "one").await.0, 200);
    assert_eq!(server.get("/api/ps").await["models"].as_array().unwrap().len(), 1);

    std::fs::remove_file(home.path().join("plugins").join(FIXTURE)).unwrap();
    server
        .eventually(Duration::from_secs(3), "the plugin leaves the list", || async {
            server.get("/api/plugins").await["plugins"].as_array().unwrap().is_empty().then_some(())
        })
        .await;
    server
        .eventually(Duration::from_secs(3), "its idle model is unloaded", || async {
            server.get("/api/ps").await["models"].as_array().unwrap().is_empty().then_some(())
        })
        .await;
    assert_eq!(server.chat("echo", "one").await.0, 503);
    assert!(server.log().contains("plugin removed"), "{}", server.log());
}
