//! Embeddings on MLX: SmolLM2 and every architecture's tiny model under every pooling,
//! against llama.cpp and the CPU reference (`hearth_backend_check::embeddings`).

use hearth_backend_check::embeddings::check_every_model;
use hearth_mlx::model::MlxModel;
use hearth_sdk::Model;

#[test]
fn every_architecture_embeds_on_mlx_as_llama_cpp_does_under_every_pooling() {
    let Some(models) = hearth_sdk::testing::real_models() else {
        return;
    };
    check_every_model(&models, "mlx", |path, text| MlxModel::load(path, 512)?.embed(text, false));
}
