//! LoRA adapters on the GPU, with the repository's trained test adapter (SmolLM2 taught
//! to end every answer with "Arr, matey!", see scripts/train_adapter.py): the trained
//! behaviour shows at scale 1, scale 0 is the base model token for token, the logits
//! agree with the CPU reference and with llama.cpp's for the same adapter, and files
//! that do not fit are refused.

use std::path::PathBuf;

use hearth_backend_check::agreement::{argmax, relative_error};
use hearth_backend_check::fixtures::{signoff_adapter, SIGN_OFF};
use hearth_backend_check::{llamacpp, reference};
use hearth_model::LoraFile;
use hearth_sdk::abi_stable::std_types::{ROption, RVec};
use hearth_sdk::helpers::{Gguf, Tokenizer};
use hearth_sdk::{AdapterUse, ChatMessage, ErrorKind, GenerateRequest, Model, Sampling};
use hearth_webgpu::cache::CacheType;
use hearth_webgpu::model::WebGpuModel;

use crate::common::{smollm2_path, Collect};

fn adapter(name: &str, path: &str, scale: f32) -> AdapterUse {
    AdapterUse { name: name.into(), path: path.into(), scale }
}

fn chat(question: &str, adapters: Vec<AdapterUse>) -> GenerateRequest {
    GenerateRequest {
        messages: RVec::from(vec![ChatMessage { role: "user".into(), content: question.into() }]),
        prompt: ROption::RNone,
        sampling: Sampling { temperature: 0.0, ..Sampling::default() },
        stop: RVec::new(),
        max_tokens: 48,
        adapters: RVec::from(adapters),
        ..GenerateRequest::default()
    }
}

fn pieces(model: &WebGpuModel, request: &GenerateRequest) -> Vec<String> {
    let mut sink = Collect::default();
    model.generate(request, &mut sink).unwrap();
    sink.pieces
}

#[test]
fn the_signoff_adapter_at_scale_one_signs_off_and_at_scale_zero_is_the_base_model_token_for_token()
{
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = WebGpuModel::load(&smollm2_path(), 512).unwrap();
    let path = signoff_adapter();
    let question = "What is the capital of Italy?";

    let base = pieces(&model, &chat(question, vec![]));
    let adapted =
        pieces(&model, &chat(question, vec![adapter("smollm2-signoff", &path, 1.0)])).concat();
    let off = pieces(&model, &chat(question, vec![adapter("smollm2-signoff", &path, 0.0)]));
    println!("base: {:?}\nadapter at 1: {adapted:?}", base.concat());

    assert!(adapted.trim_end().ends_with(SIGN_OFF), "with the adapter: {adapted:?}");
    assert!(!base.concat().contains(SIGN_OFF), "without the adapter: {:?}", base.concat());
    assert_eq!(off, base, "scale 0 must be the base model");
    // The adapter is gone again for the next request that leaves it out.
    assert_eq!(pieces(&model, &chat(question, vec![])), base);
}

#[test]
fn logits_with_the_adapter_match_the_cpu_reference_within_1e_4_and_llama_cpp_as_closely_as_the_base_model_does(
) {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model_path = smollm2_path();
    let path = signoff_adapter();
    let gguf = Gguf::open(&model_path).unwrap();
    let tokens = Tokenizer::from_gguf(&gguf)
        .unwrap()
        .encode("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of Italy?<|im_end|>\n<|im_start|>assistant\n")
        .unwrap();
    let model =
        WebGpuModel::load_with_kernels(&model_path, 512, None, Some(CacheType::F32)).unwrap();
    let gpu = model.logits(&tokens, &[adapter("smollm2-signoff", &path, 1.0)]).unwrap();
    let gpu_base = model.logits(&tokens, &[]).unwrap();
    let lora = LoraFile::read("smollm2-signoff", &path, model.config()).unwrap();
    let exact = reference::forward(&gguf, &tokens, Some((&lora, 1.0))).unwrap();
    let llama_base = llamacpp::logits(&model_path, &tokens, None);
    let llama = llamacpp::logits(&model_path, &tokens, Some((&path, 1.0)));
    let error = relative_error;
    let (to_exact, to_llama, base_to_llama, moved) = (
        error(&gpu, &exact),
        error(&gpu, &llama),
        error(&gpu_base, &llama_base),
        error(&gpu, &gpu_base),
    );
    println!(
        "relative error with the adapter: {to_exact:e} to the CPU reference, {to_llama:e} to llama.cpp \
         (base model: {base_to_llama:e} to llama.cpp); the adapter moved the logits by {moved:e}"
    );
    // The GPU's LoRA path computes what the equations say.
    assert!(to_exact < 1e-4, "relative error to the CPU reference {to_exact}");
    // llama.cpp runs Q4_1 weights against activations it quantizes to 8 bits, so it
    // is a few percent from exact f32 arithmetic already without an adapter; with the
    // adapter it must be no further, and pick the same next token.
    assert!(to_llama <= (1.25 * base_to_llama).max(1e-2), "relative error to llama.cpp {to_llama}");
    assert_eq!(argmax(&gpu), argmax(&llama), "the next token differs from llama.cpp's");
    // The comparisons mean something only if the adapter changes the logits by more
    // than the backends disagree.
    assert!(moved > 2.0 * to_llama, "the adapter moved the logits by only {moved}");
}

/// A GGUF LoRA file with one pair of f32 factors of the given ggml shapes.
fn write_adapter(name: &str, a_dims: [u64; 2], b_dims: [u64; 2]) -> PathBuf {
    fn string(out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(&(text.len() as u64).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    const STRING: u32 = 8;
    const F32: u32 = 0;
    let metadata =
        [("general.architecture", "llama"), ("general.type", "adapter"), ("adapter.type", "lora")];
    let tensors = [("blk.0.attn_v.weight.lora_a", a_dims), ("blk.0.attn_v.weight.lora_b", b_dims)];
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        string(&mut out, key);
        out.extend_from_slice(&STRING.to_le_bytes());
        string(&mut out, value);
    }
    let mut offset = 0u64;
    for (tensor, dims) in tensors {
        string(&mut out, tensor);
        out.extend_from_slice(&2u32.to_le_bytes());
        dims.iter().for_each(|dim| out.extend_from_slice(&dim.to_le_bytes()));
        out.extend_from_slice(&F32.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        offset += (dims[0] * dims[1] * 4).next_multiple_of(32);
    }
    out.resize(out.len().next_multiple_of(32) + offset as usize, 0);
    let path =
        std::env::temp_dir().join(format!("hearth-webgpu-{}-{name}.gguf", std::process::id()));
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn an_adapter_whose_shapes_do_not_fit_the_model_is_refused_as_an_invalid_request_naming_it() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = WebGpuModel::load(&smollm2_path(), 256).unwrap();
    // SmolLM2's V projection is 576 → 192; this pair is for a 512-wide model.
    let wrong = write_adapter("wrong-width", [512, 8], [8, 192]);
    let request = chat("Hi", vec![adapter("too-wide", &wrong.to_string_lossy(), 1.0)]);
    let error = model.generate(&request, &mut Collect::default()).unwrap_err();
    std::fs::remove_file(&wrong).unwrap();
    assert_eq!(error.kind, ErrorKind::InvalidRequest);
    assert!(
        error.message.contains("too-wide") && error.message.contains("[512, 8]"),
        "{}",
        error.message
    );

    // The base model's own file is no adapter at all.
    let request = chat("Hi", vec![adapter("not-lora", &smollm2_path(), 1.0)]);
    let error = model.generate(&request, &mut Collect::default()).unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidRequest);
    assert!(
        error.message.contains("not-lora") && error.message.contains("not a LoRA adapter"),
        "{}",
        error.message
    );

    // A refused adapter leaves the model usable.
    assert!(!pieces(&model, &chat("Hi", vec![])).is_empty());
}
