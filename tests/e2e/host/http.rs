//! The HTTP API: in-process through the router, and over real loopback TCP for
//! streaming and cancellation.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::helpers::TestHost;

async fn post(host: &TestHost, path: &str, body: Value) -> (StatusCode, Value) {
    let request = Request::post(path)
        .header("host", "localhost:8434")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = hearth::api::app(host.hearth.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn get(host: &TestHost, path: &str) -> Value {
    let request = Request::get(path).header("host", "localhost:8434").body(Body::empty()).unwrap();
    let response = hearth::api::app(host.hearth.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn a_chat_completion_answers_in_openai_shape_with_usage() {
    let host = TestHost::new();
    let body = json!({ "model": "echo", "messages": [{ "role": "user", "content": "red green blue" }], "seed": 0 });
    let (status, answer) = post(&host, "/v1/chat/completions", body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["model"], "echo");
    assert_eq!(answer["choices"][0]["message"]["content"], "red green blue red green blue ");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(answer["usage"]["completion_tokens"], 6);
    assert_eq!(answer["usage"]["total_tokens"], 9);
}

#[tokio::test]
async fn malformed_requests_get_a_400_naming_the_problem() {
    let host = TestHost::new();
    let cases = [
        (json!({ "model": "echo", "messages": [] }), "messages"),
        (
            json!({ "model": "echo", "messages": [{ "role": "user", "content": "x" }], "temperature": -1 }),
            "temperature",
        ),
        (
            json!({ "model": "echo", "messages": [{ "role": "user", "content": "x" }], "max_tokens": 0 }),
            "max_tokens",
        ),
        (json!({ "model": "echo", "messages": [{ "role": "wizard", "content": "x" }] }), "role"),
        (json!({ "model": "echo" }), "messages"),
    ];
    for (body, field) in cases {
        let (status, answer) = post(&host, "/v1/chat/completions", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(field), "{body} → {answer}");
    }
    let (status, _) = post(
        &host,
        "/v1/chat/completions",
        json!({ "model": "nope", "messages": [{ "role": "user", "content": "x" }] }),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// POST `body` as it is, with `content_type` if given; the status, headers and JSON.
async fn post_raw(
    host: &TestHost,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut request = Request::post(path).header("host", "localhost:8434");
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let request = request.body(Body::from(body.to_string())).unwrap();
    let response = hearth::api::app(host.hearth.clone()).oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn fields_hearth_does_not_honour_yet_are_a_400_naming_them_unless_they_ask_for_nothing() {
    let host = TestHost::new();
    let refused = [("tool_choice", json!("required")), ("n_probs", json!(2))];
    for (field, value) in refused {
        let mut body = json!({ "model": "echo", "messages": [{ "role": "user", "content": "x" }] });
        body[field] = value;
        let (status, answer) = post(&host, "/v1/chat/completions", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("`{field}`")), "{field}: {message}");
    }
    let (status, _) =
        post(&host, "/v1/completions", json!({ "model": "echo", "prompt": "x", "echo": true }))
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let neutral = json!({ "model": "echo", "messages": [{ "role": "user", "content": "x" }], "tools": [],
                          "presence_penalty": 0, "logprobs": false, "logit_bias": {}, "user": "me" });
    let (status, answer) = post(&host, "/v1/chat/completions", neutral).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

// The fixture backend lists none of the features these need, so the request is
// refused before a load, naming the field, the backend and the feature.
#[tokio::test]
async fn fields_that_need_a_feature_the_backend_does_not_list_are_a_400_naming_them() {
    let host = TestHost::new();
    let needing = [
        ("logprobs", json!(true), "logprobs"),
        ("presence_penalty", json!(0.5), "presence-frequency-penalties"),
        ("frequency_penalty", json!(1), "presence-frequency-penalties"),
        ("logit_bias", json!({ "50256": -100 }), "logit-bias"),
        ("grammar", json!("start: \"x\""), "grammar"),
    ];
    for (field, value, feature) in needing {
        let mut body = json!({ "model": "echo", "messages": [{ "role": "user", "content": "x" }] });
        body[field] = value;
        let (status, answer) = post(&host, "/v1/chat/completions", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("`{field}` is not supported by backend fixture"))
                && message.contains(&format!("`{feature}`")),
            "{field}: {message}"
        );
    }
    // Every way of asking for a shape, tool calls too, is a grammar to the backend.
    for (field, value) in [
        ("response_format", json!({ "type": "json_object" })),
        ("json_schema", json!({ "type": "object" })),
        ("tools", json!([{ "type": "function", "function": { "name": "f" } }])),
    ] {
        let mut body = json!({ "model": "echo", "messages": [{ "role": "user", "content": "x" }] });
        body[field] = value;
        let (status, answer) = post(&host, "/v1/chat/completions", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains("`grammar` is not supported by backend fixture"), "{message}");
    }
    assert!(host.hearth.loaded_models().is_empty(), "nothing was loaded to find out");
    let (status, answer) =
        post(&host, "/tokenize", json!({ "model": "echo", "content": "x" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("`tokenize` is not supported by backend fixture"), "{message}");
}

#[tokio::test]
async fn statuses_tell_the_client_whether_to_fix_the_request_give_up_or_retry() {
    let host = TestHost::with_models(&[("missing", "tokens = 1\n")], "");
    let missing = host.hearth.store().model_path("missing", "missing.fixture").unwrap();
    std::fs::remove_file(missing).unwrap();
    // Listed in the catalog, but its file is not there: permanent, not a 503.
    let (status, headers, answer) = post_raw(
        &host,
        "/v1/completions",
        Some("application/json"),
        &json!({ "model": "missing", "prompt": "x" }).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert!(headers.get("retry-after").is_none());
    // An unknown route: a 404 with a JSON error, not an empty body.
    let (status, _, answer) = post_raw(&host, "/v1/nothing-here", None, "{}").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(answer["error"]["message"].as_str().unwrap().contains("/v1/nothing-here"), "{answer}");
    // No Content-Type, and curl -d's form type: read as JSON. The fixture echoes the prompt
    // from word `seed % words`, so the seed is fixed.
    let body = json!({ "model": "echo", "prompt": "plain curl", "max_tokens": 2.0, "seed": 0 })
        .to_string();
    for content_type in [None, Some("application/x-www-form-urlencoded")] {
        let (status, _, answer) = post_raw(&host, "/v1/completions", content_type, &body).await;
        assert_eq!(status, StatusCode::OK, "{content_type:?}: {answer}");
        assert_eq!(answer["choices"][0]["text"], "plain curl ");
    }
    let (status, _, answer) = post_raw(&host, "/v1/completions", Some("image/png"), &body).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{answer}");
    // A whole number written as a float is that number; a fraction is not a count.
    let fraction = json!({ "model": "echo", "prompt": "x", "max_tokens": 5.5 }).to_string();
    let (status, _, answer) = post_raw(&host, "/v1/completions", None, &fraction).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("max_tokens"), "{answer}");
}

#[tokio::test]
async fn a_plugin_panic_is_a_500_on_that_request_only() {
    let host = TestHost::new();
    let (status, answer) =
        post(&host, "/v1/completions", json!({ "model": "echo", "prompt": "boom #panic" })).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(answer["error"]["message"].as_str().unwrap().contains("panicked"));
    let (status, answer) = post(
        &host,
        "/v1/completions",
        json!({ "model": "echo", "prompt": "fine", "max_tokens": 2 }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["choices"][0]["text"], "fine fine ");
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn native_endpoints_report_models_plugins_profile_and_health() {
    let host = TestHost::new();
    let models = get(&host, "/v1/models").await;
    assert!(models["data"].as_array().unwrap().iter().any(|model| model["id"] == "echo"));
    let plugins = get(&host, "/api/plugins").await;
    assert_eq!(plugins["plugins"][0]["id"], "fixture");
    let profile = get(&host, "/api/profile").await;
    assert!(profile["device"]["host"]["ram_total_bytes"].as_u64().unwrap() > 0);
    assert_eq!(get(&host, "/health").await["status"], "ok");
    let metrics = hearth::api::app(host.hearth.clone())
        .oneshot(Request::get("/metrics").header("host", "localhost").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(metrics.into_body().collect().await.unwrap().to_bytes().to_vec())
        .unwrap();
    assert!(text.contains("# TYPE hearth_requests_total counter"), "{text}");
    assert!(text.contains("hearth_loaded_models{state=\"ready\"} 0"), "{text}");

    let (status, loaded) = post(&host, "/api/load", json!({ "model": "echo" })).await;
    assert_eq!(status, StatusCode::OK, "{loaded}");
    let ps = get(&host, "/api/ps").await;
    assert_eq!(ps["models"][0]["key"]["model_id"], "echo");
    let (status, _) = post(&host, "/api/unload", json!({ "model": "echo" })).await;
    assert_eq!(status, StatusCode::OK);
    assert!(get(&host, "/api/ps").await["models"].as_array().unwrap().is_empty());
}

/// Serve the API on an ephemeral loopback port.
async fn serve(host: &TestHost) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = hearth::api::app(host.hearth.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

/// The `data:` payloads of an SSE body.
fn sse_payloads(text: &str) -> Vec<String> {
    text.lines().filter_map(|line| line.strip_prefix("data: ")).map(str::to_string).collect()
}

#[tokio::test]
async fn a_streamed_chat_completion_arrives_as_sse_chunks_ending_in_done() {
    let host = TestHost::new();
    let base = serve(&host).await;
    let body = json!({ "model": "echo", "messages": [{ "role": "user", "content": "up down" }], "seed": 0,
                       "stream": true, "stream_options": { "include_usage": true } });
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let payloads = sse_payloads(&response.text().await.unwrap());
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> =
        payloads[..payloads.len() - 1].iter().map(|p| serde_json::from_str(p).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "up down up down up down ");
    let finish =
        chunks.iter().find(|chunk| chunk["choices"][0]["finish_reason"].is_string()).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 6);
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_cancels_its_generation() {
    let host = TestHost::new();
    let base = serve(&host).await;
    // 200 tokens at 20 ms each would take 4 s; the client leaves after three.
    let body = json!({ "model": "slow", "messages": [{ "role": "user", "content": "tick tock" }], "stream": true, "max_tokens": 200 });
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    let mut seen = String::new();
    while seen.matches("\"content\":\"t").count() < 3 {
        let chunk = stream.next().await.expect("stream ended early").unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(stream);
    let started = std::time::Instant::now();
    loop {
        let ps = host.hearth.loaded_models();
        if ps.iter().all(|model| model.refs == 0) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "generation still running after the client left: {ps:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn send(
    router: axum::Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn chat_request(host_header: &str, body: &str) -> Request<Body> {
    Request::post("/v1/chat/completions")
        .header("host", host_header)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

const ECHO_CHAT: &str = r#"{"model":"echo","messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn a_foreign_host_header_is_refused_on_a_loopback_server() {
    let host = TestHost::new();
    let (status, _, body) = send(
        hearth::api::app(host.hearth.clone()),
        chat_request("rebind.attacker.example", ECHO_CHAT),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, _) =
        send(hearth::api::app(host.hearth.clone()), chat_request("127.0.0.1:8434", ECHO_CHAT))
            .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn an_api_key_is_required_when_configured_except_for_health() {
    let host = TestHost::new();
    let config = hearth::api::ApiConfig {
        api_key: Some("s3cret".into()),
        ..hearth::api::ApiConfig::default()
    };
    let app = hearth::api::app_with(host.hearth.clone(), config);
    let (status, headers, _) = send(app.clone(), chat_request("localhost", ECHO_CHAT)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer");
    let mut with_key = chat_request("localhost", ECHO_CHAT);
    with_key.headers_mut().insert("authorization", "Bearer s3cret".parse().unwrap());
    assert_eq!(send(app.clone(), with_key).await.0, StatusCode::OK);
    let health = Request::get("/health").header("host", "localhost").body(Body::empty()).unwrap();
    assert_eq!(send(app, health).await.0, StatusCode::OK);
}

#[tokio::test]
async fn an_oversized_body_gets_413() {
    let host = TestHost::new();
    let config =
        hearth::api::ApiConfig { max_body_bytes: 1024, ..hearth::api::ApiConfig::default() };
    let big = format!(
        r#"{{"model":"echo","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(4096)
    );
    let (status, _, _) =
        send(hearth::api::app_with(host.hearth.clone(), config), chat_request("localhost", &big))
            .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn requests_past_the_queue_cap_get_503_with_retry_after() {
    let host = TestHost::new();
    let config =
        hearth::api::ApiConfig { max_queue_per_model: 1, ..hearth::api::ApiConfig::default() };
    let app = hearth::api::app_with(host.hearth.clone(), config);
    let slow = r#"{"model":"slow","messages":[{"role":"user","content":"a b"}],"max_tokens":20}"#;
    let first = tokio::spawn(send(app.clone(), chat_request("localhost", slow)));
    let started = std::time::Instant::now();
    while host.hearth.loaded_models().iter().all(|model| model.refs == 0) {
        assert!(started.elapsed() < Duration::from_secs(5), "the first request never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, headers, _) = send(app, chat_request("localhost", slow)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(first.await.unwrap().0, StatusCode::OK);
}

/// Serve the API the way `hearth serve` does (hyper with a header-read timeout) on an
/// ephemeral loopback port.
async fn serve_guarded(host: &TestHost, header_read_timeout: Duration) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = hearth::api::app(host.hearth.clone());
    tokio::spawn(hearth::api::serve_until(
        listener,
        app,
        header_read_timeout,
        std::future::pending(),
    ));
    address
}

#[tokio::test]
async fn a_client_that_sends_its_headers_too_slowly_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = TestHost::new();
    let address = serve_guarded(&host, Duration::from_millis(300)).await;
    let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n").await.unwrap();
    let started = std::time::Instant::now();
    // One header byte every 50 ms never completes the head; the server hangs up.
    let mut closed = false;
    for byte in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
        if slow.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut buffer = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(50), slow.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(read)) => {
                panic!("the server answered a request it never fully got: {:?}", &buffer[..read])
            }
            Err(_) => {}
        }
    }
    assert!(closed, "still connected after {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "cut off only after {:?}",
        started.elapsed()
    );
    let health = reqwest::get(format!("http://{address}/health")).await.unwrap();
    assert_eq!(health.status(), 200, "a prompt client is still served");
}

#[tokio::test]
async fn out_of_range_or_unparseable_numbers_and_empty_messages_get_400_over_tcp() {
    let host = TestHost::new();
    let address = serve_guarded(&host, Duration::from_secs(10)).await;
    let user = r#""messages":[{"role":"user","content":"x"}]"#;
    // Raw bodies: NaN and Infinity are not JSON, so a client can only send them as text.
    let bodies = [
        format!(r#"{{"model":"echo",{user},"max_tokens":1000000000}}"#),
        format!(r#"{{"model":"echo",{user},"max_tokens":1180591620717411303424}}"#),
        format!(r#"{{"model":"echo",{user},"max_tokens":-5}}"#),
        format!(r#"{{"model":"echo",{user},"max_tokens":"lots"}}"#),
        format!(r#"{{"model":"echo",{user},"temperature":NaN}}"#),
        format!(r#"{{"model":"echo",{user},"temperature":1e400}}"#),
        format!(r#"{{"model":"echo",{user},"top_p":-Infinity}}"#),
        r#"{"model":"echo","messages":[]}"#.to_string(),
    ];
    let client = reqwest::Client::new();
    for body in bodies {
        let response = client
            .post(format!("http://{address}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["type"], "invalid_request_error", "{body} → {answer}");
    }
}
