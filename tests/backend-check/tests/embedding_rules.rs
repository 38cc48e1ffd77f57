//! The model layer's embedding rules (`hearth_model::embed`), which MLX and WebGPU
//! share, on the tiny Llama read as a mean-pooling embedding model, with its real
//! tokenizer and the CPU reference's hidden states: the window, truncation, the empty
//! text, a generative file and a state that is not finite. Skipped, with a `skipped:`
//! line, when the models are not installed.

use std::path::Path;

use hearth_backend_check::conformance::tiny_model;
use hearth_backend_check::fixtures::pooled_copy;
use hearth_backend_check::reference;
use hearth_model::{embed, Config, Pooling, Text};
use hearth_sdk::helpers::Gguf;
use hearth_sdk::ErrorKind;

const TEXT: &str = "The old lighthouse keeper counted seven ships before the storm.";

/// The tiny Llama's F16 file, or `None` (with a `skipped:` line) without the models.
fn tiny_llama() -> Option<String> {
    let models = hearth_sdk::testing::real_models()?;
    let path = tiny_model(&models, "llama", "F16");
    if !Path::new(&path).is_file() {
        println!("skipped: {path} missing (scripts/setup.sh makes it)");
        return None;
    }
    Some(path)
}

fn open(path: &str) -> (Gguf, Config, Text) {
    let gguf = Gguf::open(path).unwrap();
    let config = Config::from_gguf(&gguf).unwrap();
    let text = Text::from_gguf(&gguf, &config).unwrap();
    (gguf, config, text)
}

#[test]
fn a_text_longer_than_the_window_is_cut_to_it_when_asked_and_refused_otherwise() {
    let Some(path) = tiny_llama() else { return };
    let (gguf, config, text) = open(&pooled_copy(&path, 1));
    assert_eq!(config.pooling, Pooling::Mean);
    let all = text.tokenize(TEXT, true).unwrap();
    assert!(all.len() > 4, "{} tokens", all.len());
    let states = |tokens: &[u32]| reference::hidden_states(&gguf, tokens);

    let cut = embed(&text, &config, 4, TEXT, true, states).unwrap();
    assert_eq!(cut.tokens, 4);
    let first_four = reference::hidden_states(&gguf, &all[..4]).unwrap();
    assert_eq!(cut.vector.to_vec(), Pooling::Mean.pool(&first_four, config.n_embd as usize));

    let error = embed(&text, &config, 4, TEXT, false, states).unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidRequest);
    let expected = format!("the text is {} tokens; the model embeds at most 4 at once", all.len());
    assert_eq!(error.message.as_str(), expected);
}

#[test]
fn an_empty_text_is_refused_as_the_clients_mistake_and_a_generative_file_gives_no_embeddings() {
    let Some(path) = tiny_llama() else { return };
    let (gguf, config, text) = open(&pooled_copy(&path, 1));
    let states = |tokens: &[u32]| reference::hidden_states(&gguf, tokens);
    let error = embed(&text, &config, 512, "", true, states).unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidRequest);
    assert!(error.message.contains("empty"), "{error}");

    let (gguf, config, text) = open(&path);
    assert_eq!(config.pooling, Pooling::None);
    let states = |tokens: &[u32]| reference::hidden_states(&gguf, tokens);
    let error = embed(&text, &config, 512, TEXT, true, states).unwrap_err();
    assert_eq!(error.kind, ErrorKind::Unsupported);
    assert!(error.message.contains("names no pooling"), "{error}");
}

#[test]
fn hidden_states_that_are_not_finite_are_a_fault_of_the_model_file() {
    let Some(path) = tiny_llama() else { return };
    let (_, config, text) = open(&pooled_copy(&path, 3));
    assert_eq!(config.pooling, Pooling::Last);
    let overflowed = |tokens: &[u32]| Ok(vec![f32::INFINITY; tokens.len() * 256]);
    let error = embed(&text, &config, 512, TEXT, true, overflowed).unwrap_err();
    assert_eq!(error.kind, ErrorKind::ModelFile);
    assert!(error.message.contains("not finite"), "{error}");
}
