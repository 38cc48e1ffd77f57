//! `hearth-llama-logits --tokenize MODEL`: reads UTF-8 text from stdin and prints
//! llama.cpp's token ids for it, space-separated on one line, with BOS (and EOS) as the
//! model adds them and special-token texts parsed as their tokens: the reference the
//! SDK's tokenizer is checked against.

use std::io::{Read, Write};

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;

use crate::AnyError;

pub fn run(model: &str) -> Result<(), AnyError> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let mut backend = LlamaBackend::init()?;
    backend.void_logs();
    let params = LlamaModelParams::default().with_vocab_only(true);
    let model = LlamaModel::load_from_file(&backend, model, &params)?;
    let ids: Vec<String> = model
        .vocab()
        .tokenize(text.as_bytes(), true, true)
        .iter()
        .map(|token| token.0.to_string())
        .collect();
    writeln!(std::io::stdout().lock(), "{}", ids.join(" "))?;
    Ok(())
}
