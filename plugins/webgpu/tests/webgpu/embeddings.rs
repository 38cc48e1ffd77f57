//! Embeddings on WebGPU: SmolLM2 and every architecture's tiny model under every pooling,
//! against llama.cpp and the CPU reference (`hearth_backend_check::embeddings`).

use hearth_backend_check::embeddings::check_every_model;
use hearth_sdk::Model;
use hearth_webgpu::model::WebGpuModel;

#[test]
fn every_architecture_embeds_on_webgpu_as_llama_cpp_does_under_every_pooling() {
    let Some(models) = hearth_sdk::testing::real_models() else {
        return;
    };
    check_every_model(&models, "webgpu", |path, text| {
        WebGpuModel::load(path, 512)?.embed(text, false)
    });
}
