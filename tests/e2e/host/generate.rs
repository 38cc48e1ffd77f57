//! The generation path through the service with the fixture plugin: routing a named
//! model, fallback, faults contained to their request.

use hearth::lifecycle::KeepAlive;
use hearth::router::RouteRequest;
use hearth::service::{Generation, ServiceError};
use hearth_sdk::abi_stable::std_types::RVec;
use hearth_sdk::{ChatMessage, GenerateRequest, Sampling};
use tokio::sync::mpsc;

use crate::helpers::TestHost;

pub fn chat(model: &str, prompt: &str, max_tokens: u32) -> Generation {
    Generation {
        route: RouteRequest { model: Some(model.to_string()), ..RouteRequest::default() },
        request: GenerateRequest {
            messages: RVec::from(vec![ChatMessage { role: "user".into(), content: prompt.into() }]),
            prompt: None.into(),
            sampling: Sampling { seed: 1, ..Sampling::default() },
            stop: RVec::new(),
            max_tokens,
            adapters: RVec::new(),
            ..GenerateRequest::default()
        },
        adapters: Vec::new(),
        keep_alive: KeepAlive::Default,
    }
}

pub async fn collect(host: &TestHost, generation: Generation) -> Result<String, ServiceError> {
    let (tokens, mut pieces) = mpsc::unbounded_channel();
    host.hearth.generate(generation, tokens).await?;
    let mut text = String::new();
    while let Ok(piece) = pieces.try_recv() {
        text.push_str(&piece.text);
    }
    Ok(text)
}

#[tokio::test]
async fn a_named_fixture_model_answers_deterministically() {
    let host = TestHost::new();
    let first = collect(&host, chat("echo", "alpha beta gamma", 100)).await.unwrap();
    let second = collect(&host, chat("echo", "alpha beta gamma", 100)).await.unwrap();
    assert_eq!(first, "beta gamma alpha beta gamma alpha ");
    assert_eq!(first, second);
}

#[tokio::test]
async fn a_model_that_fails_to_load_is_reported_with_the_plugins_reason() {
    let host = TestHost::new();
    let error = collect(&host, chat("broken", "hello", 10)).await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains("fixture load failure requested"), "{message}");
    assert!(matches!(error, ServiceError::NothingLoaded { .. }));
}

#[tokio::test]
async fn a_panic_in_generate_fails_that_request_and_the_host_keeps_serving() {
    let host = TestHost::new();
    let error = collect(&host, chat("echo", "please #panic now", 10)).await.unwrap_err();
    assert!(error.to_string().contains("plugin panicked in generate"), "{error}");
    let text = collect(&host, chat("echo", "still alive", 10)).await.unwrap();
    assert!(text.contains("alive"));
}

#[tokio::test]
async fn an_unknown_model_is_refused_before_anything_loads() {
    let host = TestHost::new();
    let error = collect(&host, chat("no-such-model", "hi", 10)).await.unwrap_err();
    assert!(matches!(error, ServiceError::UnknownModel(_)));
    assert!(host.hearth.loaded_models().is_empty());
}
