//! Ollama's and Anthropic's APIs through the router, with the fixture plugin's echo
//! model: their answer shapes (one JSON, NDJSON lines, Anthropic's SSE events), their
//! error shapes, and the 400s naming what hearth does not implement.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::helpers::TestHost;

/// The status, content type and body text of one request through the router.
async fn call(
    host: &TestHost,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, String, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost:8434")
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |body| Body::from(body.to_string())))
        .unwrap();
    let response = hearth::api::app(host.hearth.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn post_json(host: &TestHost, path: &str, body: Value) -> (StatusCode, Value) {
    let (status, _, text) = call(host, "POST", path, Some(body)).await;
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
}

async fn get_json(host: &TestHost, path: &str) -> Value {
    let (status, _, text) = call(host, "GET", path, None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn lines(text: &str) -> Vec<Value> {
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[tokio::test]
async fn an_ollama_chat_streams_ndjson_lines_ending_in_one_with_counts_and_durations() {
    let host = TestHost::new();
    let body = json!({ "model": "echo:latest", "messages": [{ "role": "user", "content": "red green blue" }],
                       "options": { "seed": 0 } });
    let (status, content_type, text) = call(&host, "POST", "/api/chat", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(content_type, "application/x-ndjson");
    let lines = lines(&text);
    let (last, pieces) = lines.split_last().unwrap();
    assert_eq!(pieces.len(), 6, "{text}");
    for piece in pieces {
        assert_eq!(piece["done"], false);
        assert_eq!(piece["model"], "echo:latest");
        assert_eq!(piece["message"]["role"], "assistant");
        assert!(piece["created_at"].as_str().unwrap().ends_with('Z'));
    }
    let streamed: String =
        pieces.iter().map(|piece| piece["message"]["content"].as_str().unwrap()).collect();
    assert!(streamed.contains("red") && streamed.contains("blue"), "{streamed}");
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["eval_count"], 6);
    assert!(last["prompt_eval_count"].as_u64().unwrap() >= 3, "{last}");
    for duration in ["total_duration", "load_duration", "prompt_eval_duration", "eval_duration"] {
        assert!(last[duration].is_u64(), "{duration}: {last}");
    }
    assert!(last["total_duration"].as_u64() >= last["eval_duration"].as_u64(), "{last}");
}

#[tokio::test]
async fn ollama_answers_without_stream_are_one_json_and_num_predict_limits_them() {
    let host = TestHost::new();
    let body = json!({ "model": "echo", "messages": [{ "role": "user", "content": "a b c" }],
                       "stream": false, "options": { "num_predict": 2, "seed": 0 } });
    let (status, chat) = post_json(&host, "/api/chat", body).await;
    assert_eq!(status, StatusCode::OK, "{chat}");
    assert_eq!(chat["done"], true);
    assert_eq!(chat["done_reason"], "length");
    assert_eq!(chat["eval_count"], 2);
    assert_eq!(chat["message"]["content"].as_str().unwrap().split_whitespace().count(), 2);

    let body = json!({ "model": "echo", "prompt": "one two three", "system": "sys", "stream": false,
                       "options": { "seed": 0 }, "keep_alive": "1m" });
    let (status, generated) = post_json(&host, "/api/generate", body).await;
    assert_eq!(status, StatusCode::OK, "{generated}");
    assert_eq!(generated["done_reason"], "stop");
    assert!(generated["response"].as_str().unwrap().contains("two"), "{generated}");
    let raw = json!({ "model": "echo", "prompt": "x y", "raw": true, "stream": false });
    assert_eq!(post_json(&host, "/api/generate", raw).await.0, StatusCode::OK);
}

#[tokio::test]
async fn ollama_fields_hearth_does_not_implement_are_a_400_naming_them_in_ollamas_shape() {
    let host = TestHost::new();
    let message = json!([{ "role": "user", "content": "x" }]);
    for (extra, named) in [
        (json!({ "tools": [{ "type": "function" }] }), "`tools[]`"),
        (json!({ "format": "yaml" }), "`format`"),
        (json!({ "think": true }), "`think`"),
        (json!({ "options": { "mirostat": 2 } }), "`options.mirostat`"),
        (json!({ "options": { "num_ctx": 100_000 } }), "`options.num_ctx`"),
        (json!({ "options": { "num_predict": -2 } }), "`options.num_predict`"),
        (json!({ "colour": "blue" }), "`colour`"),
        (
            json!({ "messages": [{ "role": "user", "content": "x", "images": ["aGk="] }] }),
            "`messages[].images`",
        ),
        (json!({ "model": "" }), "`model`"),
    ] {
        let mut body = json!({ "model": "echo", "messages": message });
        for (name, value) in extra.as_object().unwrap() {
            body[name] = value.clone();
        }
        let (status, answer) = post_json(&host, "/api/chat", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{extra}: {answer}");
        let error =
            answer["error"].as_str().unwrap_or_else(|| panic!("not Ollama's shape: {answer}"));
        assert!(error.contains(named), "{extra}: {error}");
    }
    // What asks for nothing is accepted, as the ollama client sends `tools: []`.
    let neutral = json!({ "model": "echo", "messages": message, "tools": [], "stream": false,
                          "options": { "num_ctx": 512, "mirostat": 0 } });
    assert_eq!(post_json(&host, "/api/chat", neutral).await.0, StatusCode::OK);
    let (status, answer) = post_json(
        &host,
        "/api/generate",
        json!({ "model": "echo", "prompt": "x", "context": [1, 2] }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"].as_str().unwrap().contains("`context`"), "{answer}");
    let (status, answer) =
        post_json(&host, "/api/chat", json!({ "model": "nothing", "messages": message })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(answer["error"].as_str().unwrap().contains("nothing"), "{answer}");
}

#[tokio::test]
async fn ollama_tags_show_and_ps_describe_installed_and_loaded_models_in_ollamas_shape() {
    let host = TestHost::new();
    let tags = get_json(&host, "/api/tags").await;
    let echo =
        tags["models"].as_array().unwrap().iter().find(|model| model["name"] == "echo").unwrap();
    assert_eq!(echo["model"], "echo");
    assert_eq!(echo["size"], "tokens = 6\n".len());
    assert_eq!(echo["details"]["format"], "fixture");
    assert!(echo["modified_at"].as_str().unwrap().ends_with('Z'));

    let (status, shown) = post_json(&host, "/api/show", json!({ "model": "echo" })).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["capabilities"], json!(["completion"]));
    let (status, missing) = post_json(&host, "/api/show", json!({ "model": "nothing" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(missing["error"].as_str().unwrap().contains("nothing"));

    // An empty chat loads the model, as Ollama's does.
    let (status, loaded) =
        post_json(&host, "/api/chat", json!({ "model": "echo", "keep_alive": -1 })).await;
    assert_eq!(
        (status, loaded["done_reason"].as_str()),
        (StatusCode::OK, Some("load")),
        "{loaded}"
    );
    let ps = get_json(&host, "/api/ps").await;
    let entry = &ps["models"][0];
    assert_eq!(entry["name"], "echo");
    assert_eq!(entry["model"], "echo");
    assert!(entry["size"].as_u64().unwrap() > 0, "{entry}");
    assert_eq!(entry["size_vram"], 0);
    assert!(entry["expires_at"].is_null(), "kept forever: {entry}");
    assert_eq!(entry["context_length"], 512);
    // hearth's own facts, beside Ollama's.
    assert_eq!(entry["key"]["model_id"], "echo");
    assert_eq!(entry["state"], "ready");

    let (status, unloaded) =
        post_json(&host, "/api/generate", json!({ "model": "echo", "keep_alive": 0 })).await;
    assert_eq!(
        (status, unloaded["done_reason"].as_str()),
        (StatusCode::OK, Some("unload")),
        "{unloaded}"
    );
    assert!(get_json(&host, "/api/ps").await["models"].as_array().unwrap().is_empty());
    assert!(get_json(&host, "/api/version").await["version"].is_string());
}

#[tokio::test]
async fn ollama_pull_reports_an_installed_model_and_refuses_what_it_cannot_fetch() {
    let host = TestHost::new();
    let (status, _, text) =
        call(&host, "POST", "/api/pull", Some(json!({ "model": "echo" }))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let statuses: Vec<String> =
        lines(&text).iter().map(|line| line["status"].as_str().unwrap().to_string()).collect();
    assert_eq!(statuses.first().map(String::as_str), Some("pulling manifest"), "{text}");
    assert_eq!(statuses.last().map(String::as_str), Some("success"), "{text}");
    let (status, whole) =
        post_json(&host, "/api/pull", json!({ "model": "echo", "stream": false })).await;
    assert_eq!((status, whole["status"].as_str()), (StatusCode::OK, Some("success")));
    let (status, unknown) = post_json(&host, "/api/pull", json!({ "model": "llama3" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(unknown["error"].as_str().unwrap().contains("llama3"), "{unknown}");
}

#[tokio::test]
async fn anthropic_messages_answer_in_anthropics_shape_and_stream_its_event_sequence() {
    let host = TestHost::new();
    let body = json!({ "model": "echo", "max_tokens": 3, "system": [{ "type": "text", "text": "sys" }],
                       "messages": [{ "role": "user", "content": [{ "type": "text", "text": "up down" }] }] });
    let (status, message) = post_json(&host, "/v1/messages", body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["content"][0]["type"], "text");
    assert_eq!(message["content"][0]["text"].as_str().unwrap().split_whitespace().count(), 3);
    assert_eq!(message["stop_reason"], "max_tokens");
    assert_eq!(message["usage"]["output_tokens"], 3);
    assert!(message["usage"]["input_tokens"].as_u64().unwrap() > 0);

    let mut streamed = body;
    streamed["stream"] = json!(true);
    let (status, content_type, text) = call(&host, "POST", "/v1/messages", Some(streamed)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(content_type.starts_with("text/event-stream"));
    let events: Vec<&str> = text.lines().filter_map(|line| line.strip_prefix("event: ")).collect();
    assert_eq!(
        events,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let data: Vec<Value> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    for (name, payload) in events.iter().zip(&data) {
        assert_eq!(payload["type"], *name, "{payload}");
    }
    assert_eq!(data[6]["delta"]["stop_reason"], "max_tokens");
    assert_eq!(data[6]["usage"]["output_tokens"], 3);
}

#[tokio::test]
async fn anthropic_refusals_name_the_field_in_anthropics_error_shape() {
    let host = TestHost::new();
    let user = json!([{ "role": "user", "content": "x" }]);
    for (body, named) in [
        (json!({ "model": "echo", "messages": user }), "`max_tokens`"),
        (
            json!({ "model": "echo", "max_tokens": 4, "messages": user,
                    "tools": [{ "type": "web_search_20250305", "name": "web_search" }] }),
            "`tools[]`",
        ),
        (
            json!({ "model": "echo", "max_tokens": 4, "messages": user, "tool_choice": { "type": "any" } }),
            "`tool_choice`",
        ),
        (
            json!({ "model": "echo", "max_tokens": 4, "messages": user, "temperature": 1.5 }),
            "`temperature`",
        ),
        (
            json!({ "model": "echo", "max_tokens": 4,
                 "messages": [{ "role": "user", "content": [{ "type": "image", "source": {} }] }] }),
            "`image`",
        ),
    ] {
        let (status, answer) = post_json(&host, "/v1/messages", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["type"], "error", "{answer}");
        assert_eq!(answer["error"]["type"], "invalid_request_error", "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(named), "{answer}");
    }
    let (status, answer) = post_json(
        &host,
        "/v1/messages",
        json!({ "model": "nothing", "max_tokens": 4, "messages": user }),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"]["type"], "not_found_error", "{answer}");
}

#[tokio::test]
async fn routes_hearth_does_not_serve_such_as_api_create_are_a_json_404_naming_them() {
    let host = TestHost::new();
    let (status, answer) =
        post_json(&host, "/api/create", json!({ "model": "echo", "from": "x" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(answer["error"]["message"].as_str().unwrap().contains("/api/create"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_on_a_backend_that_does_not_list_them_are_a_400_naming_field_backend_and_feature(
) {
    let host = TestHost::new();
    for (path, body) in [
        ("/v1/embeddings", json!({ "model": "echo", "input": "x" })),
        ("/api/embed", json!({ "model": "echo", "input": ["x"] })),
    ] {
        let (status, answer) = post_json(&host, path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
        let message = answer.to_string();
        assert!(message.contains("`input`") && message.contains("embeddings"), "{message}");
    }
    // The host goes on answering.
    let (status, _) = post_json(&host, "/api/load", json!({ "model": "echo" })).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hearth_ps_reads_the_ollama_shaped_ps_with_hearths_facts() {
    let host = TestHost::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    let app = hearth::api::app(host.hearth.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (status, _) = post_json(&host, "/api/load", json!({ "model": "echo" })).await;
    assert_eq!(status, StatusCode::OK);
    let output = tokio::process::Command::new(crate::helpers::built_binary())
        .args(["ps", "--server", &server])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let row =
        stdout.lines().find(|line| line.starts_with("echo ")).unwrap_or_else(|| panic!("{stdout}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&columns[..4], ["echo", "fixture", "ready", "0"], "{stdout}");
}
