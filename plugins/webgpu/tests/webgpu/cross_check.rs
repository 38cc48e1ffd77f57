//! The GPU forward pass against the CPU reference forward pass on the same GGUF
//! weights (the llama.cpp plugin is built on another branch, so the reference is the
//! Rust one in `reference.rs`). The prompt is longer than one batch, so the chunked
//! prompt processing and the KV cache across chunks are both covered.

use hearth_sdk::helpers::{Gguf, Tokenizer};
use hearth_webgpu::forward::UBATCH;
use hearth_webgpu::model::WebGpuModel;

use crate::common::smollm2_path;
use crate::reference;

#[test]
fn smollm2_logits_on_the_gpu_match_the_cpu_reference_within_1e_4() {
    let path = smollm2_path();
    let gguf = Gguf::open(&path).unwrap();
    let tokenizer = Tokenizer::from_gguf(&gguf).unwrap();
    let tokens = tokenizer
        .encode("<|im_start|>user\nWrite one short sentence about the grey sea, the cold wind, the gulls and the small fishing boats that leave the old harbour at dawn.<|im_end|>\n<|im_start|>assistant\n")
        .unwrap();
    assert!(tokens.len() > UBATCH as usize, "the prompt must span two batches, it has {} tokens", tokens.len());
    let model = WebGpuModel::load(&path, 256).unwrap();
    let gpu = model.logits(&tokens, &[]).unwrap();
    let cpu = reference::forward(&gguf, model.config(), &tokens, None);
    let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    assert_eq!(argmax(&gpu), argmax(&cpu), "the next token differs");
    let scale = cpu.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let error = gpu.iter().zip(&cpu).fold(0.0f32, |m, (g, c)| m.max((g - c).abs())) / scale;
    println!("{} tokens, max |gpu - cpu| / max |cpu| = {error:e}", tokens.len());
    assert!(error < 1e-4, "relative error {error}");
}
