//! The plugin end to end on the real SmolLM2 model, on whatever adapter wgpu finds
//! (lavapipe here): chat answers, raw prompts, stop strings, cancellation, lifecycle.

mod common;

use std::time::Instant;

use hearth_sdk::abi_stable::std_types::{ROption, RVec};
use hearth_sdk::{ChatMessage, FinishReason, GenerateRequest, Model, Sampling};
use hearth_webgpu::model::WebGpuModel;

use common::{smollm2_path, Collect};

fn greedy() -> Sampling {
    Sampling { temperature: 0.0, ..Sampling::default() }
}

fn chat(question: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        messages: RVec::from(vec![ChatMessage { role: "user".into(), content: question.into() }]),
        prompt: ROption::RNone,
        sampling: greedy(),
        stop: RVec::new(),
        max_tokens,
        adapters: RVec::new(),
    }
}

#[test]
fn smollm2_answers_the_capital_of_france_with_paris() {
    let model = WebGpuModel::load(&smollm2_path(), 512).unwrap();
    let mut sink = Collect::default();
    let stats = model.generate(&chat("What is the capital of France?", 12), &mut sink).unwrap();
    let answer = sink.pieces.concat();
    println!("answer: {answer:?}");
    println!(
        "prompt: {} tokens in {:.0} ms; decode: {} tokens in {:.0} ms = {:.2} tok/s",
        stats.prompt_tokens,
        stats.prompt_ms,
        stats.completion_tokens,
        stats.decode_ms,
        stats.completion_tokens as f64 / (stats.decode_ms / 1e3)
    );
    assert!(answer.contains("Paris"), "answer was {answer:?}");
}
