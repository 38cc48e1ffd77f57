//! The tiny random-weight Gemma 3n (`scripts/tiny_models.py`) on WebGPU: a prompt of two
//! batches against the CPU reference under every kernel plan, and the whole generation
//! loop (the prompt in one step, then token by token through the KV cache, its shared
//! layers reading earlier layers' cache, its local layers masking past the window)
//! beside the llama.cpp plugin's greedy answer.

use hearth_backend_check::agreement::{argmax, relative_error};
use hearth_backend_check::conformance::{assert_tiny_gemma3n_answers_as_llama_cpp, tiny_model};
use hearth_backend_check::reference;
use hearth_sdk::helpers::Gguf;
use hearth_webgpu::cache::CacheType;
use hearth_webgpu::device::Gpu;
use hearth_webgpu::forward::UBATCH;
use hearth_webgpu::model::WebGpuModel;
use hearth_webgpu::plan::KernelPlan;

/// The second batch reads the first's K and V, in the layers that share them too.
#[test]
fn tiny_gemma3n_logits_after_two_batches_match_the_cpu_reference_on_every_kernel_plan() {
    let Some(models) = hearth_sdk::testing::real_models() else {
        return;
    };
    let path = tiny_model(&models, "gemma3n", "F16");
    if !std::path::Path::new(&path).is_file() {
        println!("skipped: {path} missing (scripts/setup.sh makes it)");
        return;
    }
    // Any ids of the tiny vocabulary (2048 tokens) do.
    let tokens: Vec<u32> = (0..UBATCH + 13).map(|i| (i * 37 + 11) % 2048).collect();
    let cpu = reference::forward(&Gguf::open(&path).unwrap(), &tokens, None).unwrap();
    for plan in KernelPlan::every(Gpu::new().unwrap().offers()) {
        let model =
            WebGpuModel::load_with_kernels(&path, 64, Some(plan), Some(CacheType::F32)).unwrap();
        let gpu = model.logits(&tokens, &[]).unwrap();
        assert_eq!(argmax(&gpu), argmax(&cpu), "{plan}: the next token differs");
        let error = relative_error(&gpu, &cpu);
        println!("{plan}, {} tokens, max |gpu - cpu| / max |cpu| = {error:e}", tokens.len());
        assert!(error < 10.0 * plan.tolerance(), "{plan}: relative error {error}");
    }
}

#[test]
fn tiny_gemma3n_decodes_through_the_kv_cache_to_the_llama_cpp_plugins_greedy_answer() {
    let Some(models) = hearth_sdk::testing::real_models() else {
        return;
    };
    assert_tiny_gemma3n_answers_as_llama_cpp(&models, "webgpu", |path| {
        WebGpuModel::load(path, 256).unwrap()
    });
}
