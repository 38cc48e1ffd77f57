//! The tiny random-weight Gemma 3n (`scripts/tiny_models.py`) on MLX through the whole
//! generation loop, beside the llama.cpp plugin's greedy answer
//! ([`assert_tiny_gemma3n_answers_as_llama_cpp`]).

use hearth_backend_check::conformance::assert_tiny_gemma3n_answers_as_llama_cpp;
use hearth_mlx::model::MlxModel;

#[test]
fn tiny_gemma3n_decodes_through_the_kv_cache_to_the_llama_cpp_plugins_greedy_answer() {
    let Some(models) = hearth_sdk::testing::real_models() else {
        return;
    };
    assert_tiny_gemma3n_answers_as_llama_cpp(&models, "mlx", |path| {
        MlxModel::load(path, 256).unwrap()
    });
}
