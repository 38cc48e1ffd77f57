//! `GET /api/gguf/{model}` through the router, in-process: a catalog model's GGUF file
//! whole or by `Range` (206 with `Content-Range`, 416 outside the file), only for
//! models the catalog names and whose file is installed, and behind the API key.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::helpers::fixture_home;

/// A host whose catalog has `blob` (a 1000-byte "GGUF" file, installed) and `absent`
/// (a GGUF artifact not in the store), and the bytes of `blob`'s file.
fn host() -> (tempfile::TempDir, std::sync::Arc<hearth::service::Hearth>, Vec<u8>) {
    let home = fixture_home(&["hearth_fixture_plugin"], "2m", "5m");
    let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
    let dir = home.path().join("models/blob");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("blob.gguf"), &bytes).unwrap();
    let entry = |id: &str| {
        format!(
            "[[models]]\nid = \"{id}\"\nname = \"{id}\"\ncontext_size = 512\n[[models.artifacts]]\n\
             backends = [\"fixture\"]\nformat = \"gguf\"\nfile = \"{id}.gguf\"\n\n"
        )
    };
    let path = home.path().join("catalog.toml");
    let mut catalog = std::fs::read_to_string(&path).unwrap();
    catalog.push_str(&entry("blob"));
    catalog.push_str(&entry("absent"));
    std::fs::write(&path, catalog).unwrap();
    let config = hearth::service::HearthConfig::in_home(home.path());
    let hearth = std::sync::Arc::new(hearth::service::Hearth::open(config).expect("open the host"));
    (home, hearth, bytes)
}

async fn get(
    hearth: &std::sync::Arc<hearth::service::Hearth>,
    path: &str,
    headers: &[(&str, &str)],
    config: hearth::api::ApiConfig,
) -> (Response, Vec<u8>) {
    let mut request = Request::get(path).header("host", "localhost:8434");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let app = hearth::api::app_with(hearth.clone(), config);
    let response = app.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes().to_vec();
    (Response::from_parts(parts, Body::empty()), bytes)
}

fn open() -> hearth::api::ApiConfig {
    hearth::api::ApiConfig::default()
}

#[tokio::test]
async fn a_range_of_a_catalog_models_gguf_file_is_a_206_with_exactly_those_bytes() {
    let (_home, hearth, bytes) = host();
    let (response, body) =
        get(&hearth, "/api/gguf/blob", &[("range", "bytes=10-19")], open()).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.headers()[header::CONTENT_RANGE], "bytes 10-19/1000");
    assert_eq!(response.headers()[header::ACCEPT_RANGES], "bytes");
    assert_eq!(body, bytes[10..20]);

    let (response, body) = get(&hearth, "/api/gguf/blob", &[("range", "bytes=990-")], open()).await;
    assert_eq!(response.headers()[header::CONTENT_RANGE], "bytes 990-999/1000");
    assert_eq!(body, bytes[990..]);

    let (response, body) = get(&hearth, "/api/gguf/blob", &[], open()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_LENGTH], "1000");
    assert_eq!(body, bytes);
}

#[tokio::test]
async fn a_range_outside_the_file_is_a_416_that_states_the_files_size() {
    let (_home, hearth, _) = host();
    for range in ["bytes=1000-", "bytes=5000-6000", "bytes=9-3", "lines=1-2"] {
        let (response, body) = get(&hearth, "/api/gguf/blob", &[("range", range)], open()).await;
        assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(response.headers()[header::CONTENT_RANGE], "bytes */1000", "{range}");
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(error["error"]["message"].as_str().unwrap().contains("1000 bytes"), "{error}");
    }
}

#[tokio::test]
async fn only_installed_files_of_catalog_models_are_served() {
    let (_home, hearth, _) = host();
    for (path, message) in [
        ("/api/gguf/absent", "no GGUF file installed"),
        ("/api/gguf/nope", "not in the catalog"),
        ("/api/gguf/..%2F..%2Fcatalog.toml", "not in the catalog"),
        // A catalog model whose artifacts are not GGUF.
        ("/api/gguf/echo", "no GGUF file installed"),
    ] {
        let (response, body) = get(&hearth, path, &[], open()).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(error["error"]["message"].as_str().unwrap().contains(message), "{path}: {error}");
    }
}

#[tokio::test]
async fn with_an_api_key_the_file_needs_it() {
    let (_home, hearth, bytes) = host();
    let keyed = || hearth::api::ApiConfig { api_key: Some("secret".into()), ..open() };
    let (response, _) = get(&hearth, "/api/gguf/blob", &[("range", "bytes=0-3")], keyed()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let headers = [("range", "bytes=0-3"), ("authorization", "Bearer secret")];
    let (response, body) = get(&hearth, "/api/gguf/blob", &headers, keyed()).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, bytes[..4]);
}

#[tokio::test]
async fn the_architectures_are_the_model_layers_description_as_data() {
    let (_home, hearth, _) = host();
    let (response, body) = get(&hearth, "/api/architectures", &[], open()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let names: Vec<&str> = json["architectures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["gguf_name"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> =
        hearth_model::arch::ARCHITECTURES.iter().map(|a| a.gguf_name).collect();
    assert_eq!(names, expected);
}
