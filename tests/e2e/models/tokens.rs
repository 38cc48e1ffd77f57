//! `/tokenize` and `/detokenize` over HTTP with the real models: every backend's
//! tokenizer gives llama.cpp's ids, and the ids come back as the text.

use serde_json::{json, Value};

use crate::helpers::{serve, RealHost};

async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    let response =
        reqwest::Client::new().post(format!("{base}{path}")).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_tokenizes_as_llama_cpp_does_and_detokenizes_back() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::with_plugins(&["hearth_llamacpp", "hearth_mlx", "hearth_webgpu"]);
    let (base, hearth) = serve(&host).await;
    let text = "Héllo, wörld! The lighthouse keeper counted 1234 waves.";
    // A piece is one token's text, and a token may hold part of a character.
    let ascii = "The lighthouse keeper counted 1234 waves.";
    let mut counts = Vec::new();
    for model in ["smollm2-135m", "gemma3-270m"] {
        let mut oracle: Option<Value> = None;
        for backend in ["llamacpp", "mlx", "webgpu"] {
            let ask =
                json!({ "model": model, "backend": backend, "content": text, "add_special": true });
            let (status, answer) = post(&base, "/tokenize", ask).await;
            assert_eq!(status, 200, "{model} on {backend}: {answer}");
            assert!(answer["tokens"].as_array().is_some_and(|tokens| tokens.len() > 5));
            match &oracle {
                None => oracle = Some(answer["tokens"].clone()),
                Some(expected) => {
                    assert_eq!(&answer["tokens"], expected, "{model}: {backend} against llama.cpp");
                }
            }

            let ask = json!({ "model": model, "backend": backend, "content": ascii, "with_pieces": true });
            let (status, answer) = post(&base, "/tokenize", ask).await;
            assert_eq!(status, 200, "{answer}");
            let pieces = answer["tokens"].as_array().unwrap();
            let joined: String =
                pieces.iter().map(|piece| piece["piece"].as_str().unwrap()).collect();
            assert_eq!(joined, ascii, "{model} on {backend}: {answer}");

            let ask = json!({ "model": model, "backend": backend, "content": text });
            let (_, answer) = post(&base, "/tokenize", ask).await;
            let back = json!({ "model": model, "backend": backend, "tokens": answer["tokens"] });
            let (status, answer) = post(&base, "/detokenize", back).await;
            assert_eq!((status, answer["content"].as_str()), (200, Some(text)), "{answer}");

            let unknown = json!({ "model": model, "backend": backend, "tokens": [4_000_000] });
            let (status, answer) = post(&base, "/detokenize", unknown).await;
            assert_eq!(status, 400, "{answer}");
            assert!(answer.to_string().contains("token 4000000 is not in the model's vocabulary"));

            // A chat's prompt, through the template, counts the same on every backend.
            let mut generation = crate::helpers::question();
            generation.route.model = Some(model.into());
            generation.route.backend = Some(backend.into());
            let (_, counted) = hearth.count_prompt_tokens(generation).await.unwrap();
            counts.push(counted);
        }
    }
    assert!(counts[..3].iter().all(|&count| count == counts[0] && count > 10), "{counts:?}");
    assert!(counts[3..].iter().all(|&count| count == counts[3] && count > 10), "{counts:?}");
}

// In a worker process the calls cross the worker protocol, and answer the same; so do
// log-probabilities, which stream beside the text, and a request's prompt token count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_in_a_worker_process_tokenizes_and_reports_logprobs_as_in_process() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let text = "The lighthouse keeper counted 1234 waves.";
    let mut answers = Vec::new();
    for host in [RealHost::llamacpp(), RealHost::llamacpp().in_worker_processes()] {
        let hearth = host.open();
        let route = || hearth::router::RouteRequest {
            model: Some("smollm2-135m".into()),
            ..hearth::router::RouteRequest::default()
        };
        let keep = hearth::lifecycle::KeepAlive::Default;
        let tokenized = hearth.tokenize(route(), keep, text.into(), false, true).await.unwrap();
        let (_, back) = hearth.detokenize(route(), keep, tokenized.tokens.clone()).await.unwrap();
        assert_eq!(back, text);
        let mut generation = crate::helpers::question();
        generation.request.max_tokens = 4;
        generation.request.logprobs = Some(2).into();
        let (_, counted) = hearth.count_prompt_tokens(crate::helpers::question()).await.unwrap();
        let (tokens, mut pieces) = tokio::sync::mpsc::unbounded_channel();
        let completion = hearth.generate(generation, tokens).await.unwrap();
        assert_eq!(counted, completion.prompt_tokens, "the count is the prompt generation read");
        let mut logprobs = Vec::new();
        while let Ok(piece) = pieces.try_recv() {
            logprobs.extend(piece.logprobs.into_iter().map(|entry| entry.chosen.token));
        }
        answers.push((tokenized.tokens, tokenized.pieces, logprobs));
    }
    assert_eq!(answers[0].2.len(), 4, "{answers:?}");
    assert_eq!(answers[0], answers[1]);
}
