//! The real Gemma 3 270M in Q4_K_M on the GPU: first-step logits against llama.cpp and
//! the CPU reference, and a greedy answer beside the llama.cpp plugin's.

use hearth_backend_check::agreement::{
    assert_as_close_to_llama_cpp_as_exact_arithmetic_within, assert_same_chat_answer_as_llama_cpp,
};
use hearth_backend_check::fixtures::gemma3_path;
use hearth_webgpu::cache::CacheType;
use hearth_webgpu::model::WebGpuModel;

/// With the KV cache in f32, as the CPU reference keeps it.

#[test]
fn gemma3_first_step_logits_on_the_five_prompts_are_as_close_to_llama_cpp_as_exact_arithmetic_is() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let path = gemma3_path();
    let model = WebGpuModel::load_with_kernels(&path, 256, None, Some(CacheType::F32)).unwrap();
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
    let model = WebGpuModel::load(&path, 256).unwrap();
    assert_same_chat_answer_as_llama_cpp(&model, "webgpu", &path, "The capital of France is", 8);
}
