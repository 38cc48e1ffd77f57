//! The conformance suite on WebGPU: every architecture in every GGUF type, on the tiny
//! random-weight models, against llama.cpp and the CPU reference
//! (`hearth_backend_check::conformance`).

use hearth_backend_check::conformance::{check_every_cell, Exception};
use hearth_webgpu::cache::CacheType;
use hearth_webgpu::model::WebGpuModel;

/// Cells WebGPU cannot run, each with the reason: none.
const EXCEPTIONS: &[Exception] = &[];

/// With the KV cache in f32, as the CPU reference keeps it: the f16 cache's own rounding
/// is measured in cross_check.rs.

#[test]
fn every_architecture_in_every_gguf_type_on_webgpu_is_as_close_to_llama_cpp_as_exact_arithmetic() {
    let Some(models) = hearth_sdk::testing::real_models() else {
        return;
    };
    check_every_cell(&models, "webgpu", EXCEPTIONS, |path, tokens| {
        WebGpuModel::load_with_kernels(path, 64, None, Some(CacheType::F32))?.logits(tokens, &[])
    });
}
