//! The conformance suite on WebGPU: every architecture in every GGUF type, on the tiny
//! random-weight models, against llama.cpp and the CPU reference
//! (`hearth_backend_check::conformance`).

use hearth_backend_check::conformance::{check_every_cell, Exception};
use hearth_webgpu::model::WebGpuModel;

/// Cells WebGPU cannot run, each with the reason: none.
const EXCEPTIONS: &[Exception] = &[];

#[test]
fn every_architecture_in_every_gguf_type_on_webgpu_is_as_close_to_llama_cpp_as_exact_arithmetic() {
    let Some(models) = hearth_sdk::testing::real_models() else {
        return;
    };
    check_every_cell(&models, "webgpu", EXCEPTIONS, |path, tokens| {
        WebGpuModel::load(path, 64)?.logits(tokens, &[])
    });
}
