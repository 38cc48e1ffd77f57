//! The real Gemma 3 270M in Q4_K_M on the GPU: first-step logits against llama.cpp and
//! the CPU reference, and greedy answers beside the llama.cpp plugin's.

use hearth_backend_check::agreement::assert_as_close_to_llama_cpp_as_exact_arithmetic_within;
use hearth_backend_check::fixtures::gemma3_path;
use hearth_backend_check::llamacpp;
use hearth_sdk::Model;
use hearth_webgpu::model::WebGpuModel;

use crate::common::{chat, Collect};

#[test]
fn gemma3_first_step_logits_on_the_five_prompts_are_as_close_to_llama_cpp_as_exact_arithmetic_is() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let path = gemma3_path();
    let model = WebGpuModel::load(&path, 256).unwrap();
    assert_as_close_to_llama_cpp_as_exact_arithmetic_within(8e-2, &path, "webgpu", |tokens| {
        model.logits(tokens, &[]).unwrap()
    });
}

/// The file has no chat template: both render the conversation in Gemma's turn format.
#[test]
fn gemma3_answers_the_capital_of_france_as_the_llama_cpp_plugin_does() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let path = gemma3_path();
    let answer = |model: &dyn Model| {
        let mut sink = Collect::default();
        model.generate(&chat("The capital of France is", 8), &mut sink).unwrap();
        sink.pieces.concat()
    };
    let ours = answer(&WebGpuModel::load(&path, 256).unwrap());
    let theirs = answer(&llamacpp::load_with_plugin(&path));
    println!("webgpu {ours:?}\nllama.cpp {theirs:?}");
    assert_eq!(ours, theirs);
}
