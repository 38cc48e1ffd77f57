//! Structured output and tool calls over HTTP with SmolLM2 on each real backend: the
//! grammar holds the answer, and every backend gives llama.cpp's greedy answer.

use serde_json::{json, Value};

use crate::helpers::{serve, RealHost};

const BACKENDS: [&str; 3] = ["llamacpp", "mlx", "webgpu"];

/// The answers of one greedy chat request on each backend, in [`BACKENDS`]' order.
async fn on_every_backend(base: &str, request: &Value) -> Vec<Value> {
    let client = reqwest::Client::new();
    let mut answers = Vec::new();
    for backend in BACKENDS {
        let mut request = request.clone();
        request["backend"] = backend.into();
        let response =
            client.post(format!("{base}/v1/chat/completions")).json(&request).send().await.unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{backend}: {answer}");
        assert_eq!(answer["hearth"]["backend"], backend, "{answer}");
        answers.push(answer["choices"][0].clone());
    }
    answers
}

// One test, one host: each backend loads SmolLM2 once for both requests (WebGPU runs on
// lavapipe here, where a load and a prompt take their time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_schema_and_a_required_tool_call_hold_every_backend_to_llama_cpps_answer() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::with_plugins(&["hearth_llamacpp", "hearth_mlx", "hearth_webgpu"]);
    let (base, _hearth) = serve(&host).await;
    let schema = json!({ "type": "object", "required": ["name", "age"], "properties": {
        "name": { "type": "string" }, "age": { "type": "integer" } } });
    let request = json!({ "model": "smollm2-135m", "temperature": 0, "max_tokens": 60,
        "messages": [{ "role": "user", "content": "Give me a person with a name and an age." }],
        "response_format": { "type": "json_schema", "json_schema": { "name": "person", "schema": schema } } });
    let answers = on_every_backend(&base, &request).await;
    let content = answers[0]["message"]["content"].as_str().unwrap();
    let person: Value = serde_json::from_str(content).unwrap_or_else(|_| panic!("{content}"));
    assert!(person["name"].is_string() && person["age"].is_i64(), "{person}");
    assert_eq!(person.as_object().unwrap().len(), 2, "no key the schema does not list: {person}");
    for (backend, answer) in BACKENDS.iter().zip(&answers) {
        assert_eq!(answer["message"]["content"], content, "{backend}");
    }

    let tools = json!([{ "type": "function", "function": { "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } } },
        { "type": "function", "function": { "name": "get_time", "description": "The time now" } }]);
    let request = json!({ "model": "smollm2-135m", "temperature": 0, "max_tokens": 60,
        "messages": [{ "role": "user", "content": "What is the weather in Paris?" }],
        "tools": tools, "tool_choice": "required", "parallel_tool_calls": false });
    let answers = on_every_backend(&base, &request).await;
    for (backend, answer) in BACKENDS.iter().zip(&answers) {
        assert_eq!(answer["finish_reason"], "tool_calls", "{backend}: {answer}");
        let calls = answer["message"]["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 1, "one call when calls may not go in parallel: {answer}");
        let function = &calls[0]["function"];
        assert_eq!(function, &answers[0]["message"]["tool_calls"][0]["function"], "{backend}");
        let arguments: Value =
            serde_json::from_str(function["arguments"].as_str().unwrap()).unwrap();
        assert!(function["name"] == "get_weather" && arguments["city"].is_string(), "{function}");
    }
}
