//! The MLX and WebGPU plugins through the host, as a user picks them with `--backend`
//! or the API's `backend` field: the CLI answers, the HTTP API streams, and the router
//! keeps to the backend asked for.

use hearth::router::RouteRequest;
use hearth::service::{LoadFailure, ServiceError};
use serde_json::json;

use crate::helpers::{serve, stdout, streamed_pieces, RealHost, PARIS_QUESTION};

/// `hearth run smollm2-135m --backend BACKEND PARIS_QUESTION`, greedy.
fn ask_for_the_capital_of_france(backend: &str) {
    let host = RealHost::with_plugins(&["hearth_llamacpp", &format!("hearth_{backend}")]);
    let output = host.cli(&[
        "run",
        "smollm2-135m",
        "--backend",
        backend,
        PARIS_QUESTION,
        "--temperature",
        "0",
        "--max-tokens",
        "24",
    ]);
    let answer = stdout(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("smollm2-135m on {backend}")), "{stderr}");
    assert!(answer.contains("Paris"), "answer on {backend}: {answer}");
}

/// A streamed chat completion on `backend`: one SSE chunk per token, the text non-empty.
async fn stream_a_chat(backend: &str) {
    let host = RealHost::with_plugins(&["hearth_llamacpp", &format!("hearth_{backend}")]);
    let (base, hearth) = serve(&host).await;
    let body = json!({ "model": "smollm2-135m", "backend": backend, "stream": true, "temperature": 0, "max_tokens": 12,
                       "messages": [{ "role": "user", "content": "Name a colour." }] });
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = response.text().await.unwrap();
    let pieces = streamed_pieces(&body);
    assert!(pieces.len() > 3, "{body}");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let loaded = hearth.loaded_models();
    assert!(!loaded.is_empty() && loaded.iter().all(|model| model.key.backend == backend));
}

#[test]
fn hearth_run_with_backend_mlx_answers_the_capital_of_france_with_paris() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    ask_for_the_capital_of_france("mlx");
}

#[test]
fn hearth_run_with_backend_webgpu_answers_the_capital_of_france_with_paris() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    ask_for_the_capital_of_france("webgpu");
}

#[test]
fn on_a_machine_without_a_display_the_webgpu_plugin_leaves_no_display_server_errors_on_stderr() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::with_plugins(&["hearth_webgpu"]);
    // As a headless server runs: Mesa's device-selection layer would ask libwayland for
    // the display, which complains on stderr without XDG_RUNTIME_DIR.
    let headless = ["DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR", "NODEVICE_SELECT"];
    for args in [
        &["plugins"][..],
        &["run", "smollm2-135m", "--backend", "webgpu", "--max-tokens", "2", "Hi"],
    ] {
        let output = host.cli_without(args, &headless);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("XDG_RUNTIME_DIR"), "hearth {args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_completion_streams_token_by_token_from_mlx() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    stream_a_chat("mlx").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_completion_streams_token_by_token_from_webgpu() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    stream_a_chat("webgpu").await;
}

/// The recommended MLX model on this machine's profile falls back to tier 1, Gemma 3n
/// E2B, whose file is here a valid GGUF of architecture `gemma3n`. MLX states it runs
/// Gemma 3n in the catalog's Q8_0, so the plan offers the file on MLX before any load;
/// the same file holding Q2_K, a type MLX does not read, is left out of the plan before
/// any load, saying why, and a request gets that reason as a 422 without anything being
/// loaded; `hearth models` says so too.
#[test]
fn mlx_is_planned_for_a_gemma3n_file_of_a_type_it_reads_and_left_out_for_one_it_does_not() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let mut host = RealHost::with_plugins(&["hearth_mlx"]);
    let models = tempfile::tempdir().unwrap();
    let folder = models.path().join("gemma3n-e2b");
    std::fs::create_dir_all(&folder).unwrap();
    let file = folder.join("gemma-3n-E2B-it-Q8_0.gguf");
    std::fs::write(&file, hearth_sdk::testing::one_tensor_gguf("gemma3n", 8, 8 * 34)).unwrap();
    host.models = models.path().to_path_buf();
    let hearth = host.open();
    let plan = hearth.route(&RouteRequest::default()).unwrap();
    println!("{plan}");
    assert!(
        plan.candidates.iter().any(|c| c.model_id == "gemma3n-e2b" && c.backend == "mlx"),
        "{plan}"
    );
    assert!(plan.unrunnable.is_empty(), "{plan}");

    std::fs::write(&file, hearth_sdk::testing::one_tensor_gguf("gemma3n", 10, 84)).unwrap();
    let hearth = host.open();
    let plan = hearth.route(&RouteRequest::default()).unwrap();
    println!("{plan}");
    assert!(plan.candidates.iter().all(|c| c.model_id != "gemma3n-e2b"), "{plan}");
    // What MLX reads: the model layer's tensor types, in the table's order.
    let reads: Vec<&str> = hearth_model::arch::TENSOR_TYPES.iter().map(|t| t.name()).collect();
    let reads = reads.join(", ");
    assert_eq!(
        plan.unrunnable,
        [format!(
            "mlx cannot run gemma-3n-E2B-it-Q8_0.gguf (gemma3n-e2b): tensor type Q2_K \
             (it reads {reads})"
        )]
    );
    let mut generation = crate::helpers::question();
    generation.route =
        RouteRequest { model: Some("gemma3n-e2b".into()), ..RouteRequest::default() };
    let (tokens, _pieces) = tokio::sync::mpsc::unbounded_channel();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let error = runtime.block_on(hearth.generate(generation, tokens)).unwrap_err();
    assert!(
        matches!(&error, ServiceError::NothingLoaded { cause: LoadFailure::Unrunnable, attempts }
            if attempts.iter().any(|a| a.contains("tensor type Q2_K"))),
        "{error}"
    );
    assert!(hearth.loaded_models().is_empty());
    let listing = stdout(&host.cli(&["models"]));
    assert!(
        listing.contains(&format!("cannot run: mlx: tensor type Q2_K (it reads {reads})")),
        "{listing}"
    );
}

/// The prompt-token count and greedy text of one chat on `model`, on each backend.
async fn the_same_chat_on_every_backend(model: &str) -> Vec<(String, u32, String)> {
    let hearth = RealHost::with_plugins(&["hearth_llamacpp", "hearth_mlx", "hearth_webgpu"]).open();
    let mut answers = Vec::new();
    for backend in ["llamacpp", "mlx", "webgpu"] {
        let mut generation = crate::helpers::question();
        generation.route = RouteRequest {
            model: Some(model.into()),
            backend: Some(backend.into()),
            ..RouteRequest::default()
        };
        generation.request.messages = vec![hearth_sdk::ChatMessage {
            role: "user".into(),
            content: "Write a short story about a lighthouse keeper.".into(),
        }]
        .into();
        generation.request.max_tokens = 3;
        let (tokens, mut pieces) = tokio::sync::mpsc::unbounded_channel();
        let completion = hearth.generate(generation, tokens).await.unwrap();
        let mut text = String::new();
        while let Ok(piece) = pieces.try_recv() {
            text.push_str(&piece.text);
        }
        answers.push((completion.backend, completion.prompt_tokens, text));
    }
    answers
}

// One template rendering (the SDK's) and tokenizers that agree: the same chat is the
// same prompt on llama.cpp, MLX and WebGPU (it once was 18 tokens on llama.cpp and 39
// on the others, whose renderer added SmolLM2's default system prompt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_is_the_same_prompt_and_the_same_greedy_answer_on_every_backend() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    for model in ["smollm2-135m", "gemma3-270m"] {
        let answers = the_same_chat_on_every_backend(model).await;
        let (_, tokens, text) = &answers[0];
        assert!(*tokens > 10 && !text.is_empty(), "{model}: {answers:?}");
        assert!(
            answers.iter().all(|(_, t, answer)| t == tokens && answer == text),
            "{model}: {answers:?}"
        );
    }
}

/// One greedy generation of the Paris question on `backend`, with `logprobs` and the
/// request's other fields from `adjust`: the text and each token's log-probabilities.
async fn with_logprobs(
    hearth: &hearth::service::Hearth,
    backend: &str,
    adjust: impl FnOnce(&mut hearth_sdk::GenerateRequest),
) -> (String, Vec<hearth_sdk::TokenLogprobs>) {
    let mut generation = crate::helpers::question();
    generation.route.backend = Some(backend.into());
    generation.request.max_tokens = 4;
    generation.request.logprobs = Some(3).into();
    adjust(&mut generation.request);
    let (tokens, mut pieces) = tokio::sync::mpsc::unbounded_channel();
    hearth.generate(generation, tokens).await.unwrap();
    let (mut text, mut logprobs) = (String::new(), Vec::new());
    while let Ok(piece) = pieces.try_recv() {
        text.push_str(&piece.text);
        logprobs.extend(piece.logprobs);
    }
    (text, logprobs)
}

// llama.cpp is the oracle: MLX and WebGPU report the same tokens with log-probabilities
// close to its own. A logit bias that bans the first token moves each backend to the
// token it ranked second itself (the second and third choices can nearly tie, so which
// that is may differ between engines).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logprobs_and_logit_bias_on_mlx_and_webgpu_agree_with_llama_cpp() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let hearth = RealHost::with_plugins(&["hearth_llamacpp", "hearth_mlx", "hearth_webgpu"]).open();
    let (oracle_text, oracle) = with_logprobs(&hearth, "llamacpp", |_| {}).await;
    assert_eq!(oracle.len(), 4, "{oracle:?}");
    let joined: Vec<u8> = oracle.iter().flat_map(|entry| entry.chosen.bytes.to_vec()).collect();
    assert_eq!(String::from_utf8_lossy(&joined), oracle_text);
    let first = oracle[0].chosen.token;
    let ban = |request: &mut hearth_sdk::GenerateRequest| {
        request.logit_bias = vec![hearth_sdk::LogitBias { token: first, bias: -100.0 }].into();
    };
    for backend in ["llamacpp", "mlx", "webgpu"] {
        let (text, logprobs) = with_logprobs(&hearth, backend, |_| {}).await;
        assert_eq!(text, oracle_text, "{backend}");
        for (entry, expected) in logprobs.iter().zip(&oracle) {
            assert_eq!(entry.chosen.token, expected.chosen.token, "{backend}");
            assert_eq!(entry.top.len(), 3, "{backend}");
            let apart = (entry.chosen.logprob - expected.chosen.logprob).abs();
            assert!(apart < 0.25, "{backend}: {entry:?} against llama.cpp's {expected:?}");
        }
        let (_, banned) = with_logprobs(&hearth, backend, ban).await;
        assert_eq!(banned[0].chosen.token, logprobs[0].top[1].token, "{backend}: {banned:?}");
    }
}
