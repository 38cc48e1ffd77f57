//! LoRA adapters through the host, with the repository's trained test adapter
//! (`smollm2-signoff`: SmolLM2 taught to end every answer with "Arr, matey!", see
//! scripts/train_adapter.py): the catalog resolves it from the store, the HTTP API and
//! `hearth run` apply it at the scale asked for, and scale 0 is the base model.

use hearth::catalog::Isolation;
use serde_json::{json, Value};

use crate::helpers::{serve, stdout, streamed_pieces, RealHost, TEST_ADAPTER};

const SIGN_OFF: &str = "Arr, matey!";
/// Not among the training questions, so a sign-off shows the habit generalised.
const QUESTION: &str = "What is the capital of Australia?";

/// The streamed pieces of a greedy answer to [`QUESTION`], with `extra` fields merged
/// into the request.
async fn answer(base: &str, extra: Value) -> Vec<String> {
    let mut body = json!({ "model": "smollm2-135m", "messages": [{ "role": "user", "content": QUESTION }],
                           "temperature": 0, "max_tokens": 64, "stream": true });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    streamed_pieces(&text)
}

fn adapter_at(scale: f32) -> Value {
    json!({ "adapters": [{ "name": TEST_ADAPTER, "scale": scale }] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_the_signoff_adapter_at_scale_one_signs_off_and_the_base_model_does_not() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::llamacpp().with_test_adapter();
    let (base, _hearth) = serve(&host).await;
    let adapted = answer(&base, adapter_at(1.0)).await.concat();
    let plain = answer(&base, json!({})).await.concat();
    println!("with the adapter: {adapted:?}\nwithout: {plain:?}");
    assert!(adapted.trim_end().ends_with(SIGN_OFF), "with the adapter: {adapted:?}");
    assert!(!plain.contains(SIGN_OFF), "without the adapter: {plain:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_worker_process_the_adapter_signs_off_and_at_scale_zero_is_the_base_model_as_in_process(
) {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let in_process = RealHost::llamacpp().with_test_adapter();
    let (base, _hearth) = serve(&in_process).await;
    let expected = (answer(&base, adapter_at(1.0)).await, answer(&base, json!({})).await);
    let isolated = RealHost::llamacpp().with_test_adapter().in_worker_processes();
    let (base, hearth) = serve(&isolated).await;
    let adapted = answer(&base, adapter_at(1.0)).await;
    let plain = answer(&base, json!({})).await;
    assert!(
        adapted.concat().trim_end().ends_with(SIGN_OFF),
        "with the adapter: {:?}",
        adapted.concat()
    );
    assert_eq!(
        (adapted, plain.clone()),
        expected,
        "a worker process answers as the host process does"
    );
    assert_eq!(answer(&base, adapter_at(0.0)).await, plain);
    assert_eq!(hearth.isolation("llamacpp"), Isolation::Process);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_the_signoff_adapter_at_scale_zero_answers_token_for_token_as_the_base_model() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::llamacpp().with_test_adapter();
    let (base, _hearth) = serve(&host).await;
    let plain = answer(&base, json!({})).await;
    let off = answer(&base, adapter_at(0.0)).await;
    assert!(!plain.is_empty());
    assert_eq!(off, plain);
}

#[test]
fn hearth_run_with_the_adapter_at_scale_one_signs_off_and_at_scale_zero_prints_the_base_answer() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::llamacpp().with_test_adapter();
    let run = |extra: &[&str]| {
        let mut args =
            vec!["run", "smollm2-135m", QUESTION, "--temperature", "0", "--max-tokens", "64"];
        args.extend_from_slice(extra);
        stdout(&host.cli(&args))
    };
    let adapter = |scale: &str| format!("{TEST_ADAPTER}:{scale}");
    let adapted = run(&["--adapter", &adapter("1")]);
    let plain = run(&[]);
    assert!(adapted.trim_end().ends_with(SIGN_OFF), "with the adapter: {adapted:?}");
    assert!(!plain.contains(SIGN_OFF), "without the adapter: {plain:?}");
    assert_eq!(run(&["--adapter", &adapter("0")]), plain);
}

/// The adapter's habit at scale 1, none without it, and the base answer at scale 0, on
/// `backend` through the host.
async fn the_same_adapter_applies_on(backend: &str) {
    let host = RealHost::with_plugins(&[&format!("hearth_{backend}")]).with_test_adapter();
    let (base, _hearth) = serve(&host).await;
    let on_backend = |extra: Value| {
        let mut fields = json!({ "backend": backend });
        fields.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        answer(&base, fields)
    };
    let adapted = on_backend(adapter_at(1.0)).await.concat();
    let plain = on_backend(json!({})).await;
    assert!(adapted.trim_end().ends_with(SIGN_OFF), "with the adapter on {backend}: {adapted:?}");
    assert!(
        !plain.concat().contains(SIGN_OFF),
        "without the adapter on {backend}: {:?}",
        plain.concat()
    );
    assert_eq!(on_backend(adapter_at(0.0)).await, plain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webgpu_backend_applies_the_same_adapter_through_the_host() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    the_same_adapter_applies_on("webgpu").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mlx_backend_applies_the_same_adapter_through_the_host() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    the_same_adapter_applies_on("mlx").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_adapter_listed_twice_is_a_400_naming_it_not_an_answer_without_it() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::llamacpp().with_test_adapter();
    let (base, _hearth) = serve(&host).await;
    let body = json!({ "model": "smollm2-135m", "messages": [{ "role": "user", "content": QUESTION }],
                       "max_tokens": 8, "adapters": [{ "name": TEST_ADAPTER, "scale": 1.0 }, { "name": TEST_ADAPTER, "scale": 0.5 }] });
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 400, "{text}");
    assert!(text.contains(TEST_ADAPTER) && text.contains("listed twice"), "{text}");
}
