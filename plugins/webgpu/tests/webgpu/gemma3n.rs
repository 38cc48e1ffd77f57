//! The tiny random-weight Gemma 3n (`scripts/tiny_models.py`) on WebGPU through the
//! whole generation loop: the prompt in one step, then token by token through the KV
//! cache (its shared layers reading earlier layers' cache, its local layers masking past
//! the window), beside the llama.cpp plugin's greedy answer.

use hearth_backend_check::agreement::assert_same_chat_answer_as_llama_cpp;
use hearth_backend_check::conformance::tiny_model;
use hearth_webgpu::model::WebGpuModel;

#[test]
fn tiny_gemma3n_decodes_through_the_kv_cache_to_the_llama_cpp_plugins_greedy_answer() {
    let Some(models) = hearth_sdk::testing::real_models() else {
        return;
    };
    for ty in ["F16", "Q8_0", "Q4_K"] {
        let path = tiny_model(&models, "gemma3n", ty);
        if !std::path::Path::new(&path).is_file() {
            println!("skipped: {path} missing (scripts/setup.sh makes it)");
            return;
        }
        let model = WebGpuModel::load(&path, 256).unwrap();
        assert_same_chat_answer_as_llama_cpp(
            &model,
            "webgpu",
            &path,
            "Tell me about lighthouses",
            12,
        );
    }
}
