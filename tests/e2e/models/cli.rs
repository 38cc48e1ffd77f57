//! The `hearth` command line with the real llama.cpp plugin.

use crate::helpers::{stdout, RealHost, PARIS_QUESTION};

#[test]
fn hearth_run_answers_the_capital_of_france_with_paris() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::llamacpp();
    let output = host.cli(&[
        "run",
        "smollm2-135m",
        PARIS_QUESTION,
        "--temperature",
        "0",
        "--max-tokens",
        "48",
    ]);
    let answer = stdout(&output);
    assert!(answer.contains("Paris"), "answer: {answer}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("smollm2-135m on llamacpp"), "{stderr}");
}

#[test]
fn hearth_run_without_a_model_lets_the_router_pick_and_says_why() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::llamacpp();
    let output = host.cli(&["run", "Say hello.", "--temperature", "0", "--max-tokens", "16"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("on llamacpp"), "{stderr}");
    assert!(stderr.contains("why:"), "{stderr}");
    assert!(!stdout(&output).trim().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemma_3_270m_completes_a_raw_prompt_too() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    // The packaged Gemma is the base model, without a chat template: it completes text
    // rather than answering questions.
    let hearth = RealHost::llamacpp().open();
    let mut generation = crate::helpers::question();
    generation.route.model = Some("gemma3-270m".into());
    generation.request.messages = Default::default();
    generation.request.prompt = Some("The capital of France is the city of".into()).into();
    generation.request.max_tokens = 8;
    let (tokens, mut pieces) = tokio::sync::mpsc::unbounded_channel();
    let completion = hearth.generate(generation, tokens).await.unwrap();
    let mut text = String::new();
    while let Ok(piece) = pieces.try_recv() {
        text.push_str(&piece.text);
    }
    assert_eq!(completion.backend, "llamacpp");
    assert!(text.contains("Paris"), "completion: {text}");
}

#[test]
fn hearth_plugins_shows_the_llamacpp_plugin_with_version_and_devices() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::llamacpp();
    let listing = stdout(&host.cli(&["plugins"]));
    assert!(listing.contains("llamacpp"), "{listing}");
    assert!(listing.contains("llama.cpp"), "{listing}");
    assert!(listing.contains("available"), "{listing}");
    assert!(listing.contains("cpu"), "{listing}");
}

#[test]
fn hearth_profile_on_this_machine_routes_to_llamacpp_and_explains_the_fallback() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::llamacpp();
    let profile: serde_json::Value =
        serde_json::from_str(&stdout(&host.cli(&["profile", "--json"]))).unwrap();
    let candidates = profile["route"]["plan"]["candidates"].as_array().unwrap();
    assert_eq!(candidates[0]["backend"], "llamacpp", "{profile:#}");
    let text = stdout(&host.cli(&["profile"]));
    assert!(text.contains("not installed"), "{text}");
}
