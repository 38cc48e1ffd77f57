//! Embeddings over HTTP with the real embedding model (all-MiniLM-L6-v2, converted by
//! setup) on the real llama.cpp plugin: OpenAI's `/v1/embeddings` and Ollama's
//! `/api/embed` and `/api/embeddings`, in process and in a worker process; and SmolLM2
//! read as a mean-pooling embedding model on each backend (MLX and WebGPU run no BERT).

use serde_json::{json, Value};

use std::path::Path;

use hearth_backend_check::embeddings::cosine;
use hearth_backend_check::fixtures::{pooled_copy, smollm2_path};

use crate::helpers::{serve, RealHost};

const MODEL: &str = "all-minilm-l6-v2";

async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    let response =
        reqwest::Client::new().post(format!("{base}{path}")).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn floats(value: &Value) -> Vec<f32> {
    value.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

const SENTENCES: [&str; 3] = [
    "A man is eating a piece of bread.",
    "A man is eating food.",
    "The stock market fell sharply on Monday.",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_put_a_paraphrase_closer_than_an_unrelated_sentence_in_process_and_in_a_worker()
{
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let mut vectors_by_host = Vec::new();
    for host in [RealHost::llamacpp(), RealHost::llamacpp().in_worker_processes()] {
        let (base, _hearth) = serve(&host).await;
        let (status, answer) =
            post(&base, "/v1/embeddings", json!({ "model": MODEL, "input": SENTENCES })).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["object"], "list");
        assert_eq!(answer["model"], MODEL);
        let data = answer["data"].as_array().unwrap();
        let vectors: Vec<Vec<f32>> = data.iter().map(|entry| floats(&entry["embedding"])).collect();
        assert_eq!(
            data.iter().map(|entry| entry["index"].as_u64()).collect::<Vec<_>>(),
            [Some(0), Some(1), Some(2)]
        );
        for vector in &vectors {
            assert_eq!(vector.len(), 384);
            assert!((dot(vector, vector) - 1.0).abs() < 1e-4, "not unit length");
        }
        // The model's own f32 weights, run in f64 outside llama.cpp, give cosines of
        // 0.755 and 0.051 (sentence-transformers reports the same); the f16 file is
        // within a hundredth of them.
        let (paraphrase, unrelated) =
            (dot(&vectors[0], &vectors[1]), dot(&vectors[0], &vectors[2]));
        assert!(
            (paraphrase - 0.755).abs() < 0.01 && (unrelated - 0.051).abs() < 0.01,
            "cosine to the paraphrase {paraphrase}, to the unrelated sentence {unrelated}"
        );
        // [CLS], the WordPiece tokens and [SEP]: 11, 8 and 10, as the model's own
        // tokenizer.json splits them.
        assert_eq!(answer["usage"]["prompt_tokens"], 29, "{answer}");

        // The openai SDK asks for base64: the same floats, little-endian.
        let ask = json!({ "model": MODEL, "input": SENTENCES[0], "encoding_format": "base64" });
        let (status, answer) = post(&base, "/v1/embeddings", ask).await;
        assert_eq!(status, 200, "{answer}");
        let encoded = answer["data"][0]["embedding"].as_str().unwrap();
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
        let decoded: Vec<f32> =
            bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        assert_eq!(decoded, vectors[0]);
        vectors_by_host.push(vectors);
    }
    assert_eq!(vectors_by_host[0], vectors_by_host[1], "a worker process embeds the same");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_embed_normalises_truncates_by_default_and_refuses_an_overlong_text_when_asked() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::llamacpp();
    let (base, _hearth) = serve(&host).await;
    let ask = json!({ "model": format!("{MODEL}:latest"), "input": SENTENCES[..2] });
    let (status, answer) = post(&base, "/api/embed", ask).await;
    assert_eq!(status, 200, "{answer}");
    let embeddings = answer["embeddings"].as_array().unwrap();
    assert_eq!(embeddings.len(), 2);
    let first = floats(&embeddings[0]);
    assert!((dot(&first, &first) - 1.0).abs() < 1e-4);
    assert!(answer["prompt_eval_count"].as_u64().unwrap() > 0, "{answer}");

    // The older endpoint gives the vector as the model pools it, not normalised.
    let ask = json!({ "model": MODEL, "prompt": SENTENCES[0] });
    let (status, answer) = post(&base, "/api/embeddings", ask).await;
    assert_eq!(status, 200, "{answer}");
    let raw = floats(&answer["embedding"]);
    let norm = dot(&raw, &raw).sqrt();
    assert!((norm - 1.0).abs() > 1e-2, "norm {norm}");
    let scaled: Vec<f32> = raw.iter().map(|x| x / norm).collect();
    assert!(dot(&scaled, &first) > 0.9999);

    // 600 words are more than the model's 512-token window.
    let long = "lighthouse ".repeat(600);
    let (status, answer) =
        post(&base, "/api/embed", json!({ "model": MODEL, "input": long })).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["prompt_eval_count"], 512, "{answer}");
    let ask = json!({ "model": MODEL, "input": long, "truncate": false });
    let (status, answer) = post(&base, "/api/embed", ask).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("embeds at most 512"), "{answer}");

    let ask = json!({ "model": MODEL, "input": "hello", "dimensions": 128 });
    let (status, answer) = post(&base, "/api/embed", ask).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("384-dimensional"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generative_model_is_refused_embeddings_and_an_embedding_model_is_refused_chat() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::with_plugins(&["hearth_llamacpp", "hearth_webgpu"]);
    let (base, hearth) = serve(&host).await;
    let ask = json!({ "model": "smollm2-135m", "backend": "llamacpp", "input": "hello" });
    let (status, answer) = post(&base, "/v1/embeddings", ask).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("gives no embeddings"), "{answer}");

    // WebGPU embeds through the model layer, which refuses the same file alike.
    let ask = json!({ "model": "smollm2-135m", "backend": "webgpu", "input": "hello" });
    let (status, answer) = post(&base, "/v1/embeddings", ask).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("gives no embeddings"), "{answer}");

    let ask = json!({ "model": MODEL, "messages": [{ "role": "user", "content": "hi" }] });
    let (status, answer) = post(&base, "/v1/chat/completions", ask).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("is an embedding model"), "{answer}");

    for (body, named) in [
        (json!({ "input": "hello" }), "`model` is required"),
        (json!({ "model": MODEL, "input": [1, 2, 3] }), "token ids"),
        (json!({ "model": MODEL, "input": "hi", "encoding_format": "int8" }), "encoding_format"),
        (
            json!({ "model": MODEL, "input": "hi", "truncation": true }),
            "unknown field `truncation`",
        ),
    ] {
        let (status, answer) = post(&base, "/v1/embeddings", body).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer.to_string().contains(named), "{answer}");
    }
    // The host went on serving: the embedding model still embeds.
    let (status, _) = post(&base, "/v1/embeddings", json!({ "model": MODEL, "input": "hi" })).await;
    assert_eq!(status, 200);
    drop(hearth);
}

/// SmolLM2 as a decoder embedding model: a copy of its file that names mean pooling
/// (`llama.pooling_type = 1`), under a catalog entry of its own.
const POOLED_SMOLLM2: &str = "smollm2-135m-mean";

/// The vectors of [`SENTENCES`] from `/v1/embeddings` and from Ollama's `/api/embed` on
/// a home whose only plugin is `plugin`, each checked for unit length.
async fn pooled_smollm2_vectors(plugin: &str, backend: &str) -> [Vec<Vec<f32>>; 2] {
    let copy = pooled_copy(&smollm2_path(), 1);
    let host = RealHost::with_plugins(&[plugin]).with_extra_model(
        POOLED_SMOLLM2,
        Path::new(&copy),
        &[backend],
    );
    let (base, _hearth) = serve(&host).await;
    let ask = json!({ "model": POOLED_SMOLLM2, "input": SENTENCES });
    let (status, openai) = post(&base, "/v1/embeddings", ask.clone()).await;
    assert_eq!(status, 200, "{backend}: {openai}");
    let openai: Vec<Vec<f32>> = openai["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| floats(&entry["embedding"]))
        .collect();
    let (status, ollama) = post(&base, "/api/embed", ask).await;
    assert_eq!(status, 200, "{backend}: {ollama}");
    let ollama: Vec<Vec<f32>> =
        ollama["embeddings"].as_array().unwrap().iter().map(floats).collect();
    for vector in openai.iter().chain(&ollama) {
        assert_eq!(vector.len(), 576, "{backend}: SmolLM2's hidden size");
        assert!((dot(vector, vector) - 1.0).abs() < 1e-4, "{backend}: not unit length");
    }

    // An empty text is the client's mistake on every endpoint.
    let (status, answer) =
        post(&base, "/v1/embeddings", json!({ "model": POOLED_SMOLLM2, "input": "" })).await;
    assert_eq!(status, 400, "{backend}: {answer}");
    assert!(answer.to_string().contains("empty"), "{backend}: {answer}");
    [openai, ollama]
}

/// How close MLX's and WebGPU's SmolLM2 vectors must sit to llama.cpp's here: on the
/// Q4_1 file llama.cpp rounds every matmul's activations to 8 bits, which alone puts
/// its vectors at cosines of 0.99903 to 0.99982 from the engines' on these sentences
/// (the engines agree with each other and with exact arithmetic to six digits).
const SMOLLM2_TO_LLAMA_CPP: f64 = 0.998;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlx_and_webgpu_embed_a_mean_pooled_smollm2_as_llama_cpp_does_over_openai_and_ollama() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let [llama, _] = pooled_smollm2_vectors("hearth_llamacpp", "llamacpp").await;
    let [mlx, mlx_ollama] = pooled_smollm2_vectors("hearth_mlx", "mlx").await;
    let [webgpu, webgpu_ollama] = pooled_smollm2_vectors("hearth_webgpu", "webgpu").await;
    for (backend, openai, ollama) in
        [("mlx", &mlx, &mlx_ollama), ("webgpu", &webgpu, &webgpu_ollama)]
    {
        for (index, sentence) in SENTENCES.iter().enumerate() {
            let to_llama = cosine(&openai[index], &llama[index]);
            println!("{backend} {sentence:?}: cosine {to_llama:.6} to llama.cpp");
            assert!(
                to_llama >= SMOLLM2_TO_LLAMA_CPP,
                "{backend} {sentence:?}: cosine {to_llama} to llama.cpp"
            );
            assert!(
                cosine(&openai[index], &ollama[index]) > 0.99999,
                "{backend}: endpoints differ"
            );
            assert!(
                cosine(&openai[index], &webgpu[index]) > 0.99999,
                "{backend} and webgpu differ"
            );
        }
    }
    // Mean-pooled decoder states are alike (the unrelated sentence still sits at 0.58 to
    // 0.59), yet the paraphrase is clearly the closer, at 0.90, on each backend.
    for (backend, vectors) in [("llamacpp", &llama), ("mlx", &mlx), ("webgpu", &webgpu)] {
        let (paraphrase, unrelated) =
            (dot(&vectors[0], &vectors[1]), dot(&vectors[0], &vectors[2]));
        println!("{backend}: cosine to the paraphrase {paraphrase}, to the unrelated {unrelated}");
        assert!(paraphrase > unrelated + 0.2, "{backend}: {paraphrase} against {unrelated}");
    }
}
