//! The conformance suite on the CPU reference itself: every architecture in every GGUF
//! type within llama.cpp's rounding of llama.cpp, with llama.cpp's greedy token. The
//! engines' suites check the same of the reference on the cells they run; this one
//! covers every cell, those an engine cannot run (yet) included.

use hearth_backend_check::conformance::check_every_cell;
use hearth_sdk::helpers::Gguf;
use hearth_sdk::PluginError;

#[test]
fn the_cpu_reference_agrees_with_llama_cpp_on_every_architecture_in_every_gguf_type() {
    let Some(models) = hearth_sdk::testing::real_models() else {
        return;
    };
    check_every_cell(&models, "reference", &[], |path, tokens| {
        let gguf = Gguf::open(path).map_err(|e| PluginError::model_file(e.to_string()))?;
        hearth_model::reference::forward(&gguf, tokens, None)
    });
}

/// Each row of `logits_of_every_token` is what `forward` gives for the tokens up to it:
/// what lets one pass check every step of a greedy answer.
#[test]
fn the_logits_of_every_token_are_the_logits_of_each_prefix() {
    let Some(models) = hearth_sdk::testing::real_models() else {
        return;
    };
    let path = hearth_backend_check::conformance::tiny_model(&models, "llama", "Q8_0");
    let gguf = Gguf::open(&path).unwrap();
    let tokens = [1, 17, 4, 250, 9, 33];
    let every = hearth_model::reference::logits_of_every_token(&gguf, &tokens).unwrap();
    let vocab = every.len() / tokens.len();
    for (end, row) in (1..=tokens.len()).zip(every.chunks(vocab)) {
        let prefix = hearth_model::reference::forward(&gguf, &tokens[..end], None).unwrap();
        let largest = prefix.iter().fold(0f32, |m, v| m.max(v.abs()));
        let deviation = row.iter().zip(&prefix).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(deviation <= 1e-5 * largest, "{end} tokens: {deviation} of {largest}");
    }
}
