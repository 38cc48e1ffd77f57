//! The HTTP API with the real llama.cpp plugin: streaming and cancellation.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;

use crate::helpers::{serve, stdout, streamed_text, RealHost};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_chat_completion_gives_the_same_text_as_the_cli_for_the_same_seed() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::llamacpp();
    let prompt = "Write one sentence about the sea.";
    let cli = stdout(&host.cli(&[
        "run",
        "smollm2-135m",
        prompt,
        "--temperature",
        "0.7",
        "--seed",
        "42",
        "--max-tokens",
        "32",
    ]));
    let (base, _hearth) = serve(&host).await;
    let body = json!({ "model": "smollm2-135m", "messages": [{ "role": "user", "content": prompt }],
                       "temperature": 0.7, "seed": 42, "max_tokens": 32, "stream": true });
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let streamed = streamed_text(&response.text().await.unwrap());
    assert!(!streamed.is_empty());
    assert_eq!(streamed.trim_end(), cli.trim_end());
}

/// Streams a long answer, drops the connection after a few chunks, and waits for the
/// model to be released: a cancelled generation stops at the next token.
async fn cancel_midway(host: &RealHost) {
    let (base, hearth) = serve(host).await;
    let body = json!({ "model": "smollm2-135m", "messages": [{ "role": "user", "content": "Tell me a very long story about dragons." }],
                       "max_tokens": 2000, "stream": true });
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    let mut seen = String::from_utf8_lossy(&stream.next().await.unwrap().unwrap()).into_owned();
    let first_chunk = Instant::now();
    while seen.matches("\"content\"").count() < 5 {
        seen.push_str(&String::from_utf8_lossy(&stream.next().await.unwrap().unwrap()));
    }
    // What a token takes on this machine now (a loaded machine is slower): the bound
    // below is many tokens' time, far short of the 2000 asked for.
    let per_token = first_chunk.elapsed() / 4;
    drop(stream);
    let cancelled_at = Instant::now();
    let bound = (per_token * 40).max(Duration::from_secs(3));
    while hearth.loaded_models().iter().any(|model| model.refs > 0) {
        assert!(
            cancelled_at.elapsed() < bound,
            "still generating {:?} after the client left (a token takes {per_token:?})",
            cancelled_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_stream_midway_stops_the_generation() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    cancel_midway(&RealHost::llamacpp()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_stream_midway_stops_the_generation_in_a_worker_process_too() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    cancel_midway(&RealHost::llamacpp().in_worker_processes()).await;
}

// Ollama's clients ask for log-probabilities as OpenAI's chat does, and read them per
// line: each token with its alternatives, beside the text it made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_chat_and_generate_report_logprobs_per_token() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let (base, _hearth) = serve(&RealHost::llamacpp()).await;
    let client = reqwest::Client::new();
    let chat = json!({ "model": "smollm2-135m", "stream": false, "logprobs": true, "top_logprobs": 2,
                       "messages": [{ "role": "user", "content": "What is the capital of France?" }],
                       "options": { "temperature": 0, "num_predict": 4 } });
    let answer: serde_json::Value = client
        .post(format!("{base}/api/chat"))
        .json(&chat)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let logprobs = answer["logprobs"].as_array().unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(logprobs.len(), 4, "{answer}");
    let joined: String = logprobs.iter().map(|entry| entry["token"].as_str().unwrap()).collect();
    assert_eq!(joined, answer["message"]["content"].as_str().unwrap());
    assert!(logprobs.iter().all(|entry| entry["top_logprobs"].as_array().unwrap().len() == 2));

    let generate = json!({ "model": "smollm2-135m", "prompt": "The sky is", "logprobs": true, "raw": true,
                           "options": { "temperature": 0, "num_predict": 3 } });
    let body = client.post(format!("{base}/api/generate")).json(&generate).send().await.unwrap();
    let lines: Vec<serde_json::Value> = body
        .text()
        .await
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let tokens: usize =
        lines.iter().filter_map(|line| line["logprobs"].as_array()).map(Vec::len).sum();
    assert_eq!(tokens, 3, "{lines:?}");
}
