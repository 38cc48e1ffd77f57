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
