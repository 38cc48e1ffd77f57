//! The plugin end to end on the real SmolLM2 model, on whatever adapter wgpu finds
//! (lavapipe here): chat answers, raw prompts, stop strings, cancellation, lifecycle.

use hearth_sdk::abi_stable::std_types::ROption;
use hearth_sdk::{FinishReason, GenerateRequest, Model, Sampling};
use hearth_webgpu::device::Gpu;
use hearth_webgpu::model::WebGpuModel;
use hearth_webgpu::plan::KernelPlan;

use crate::common::{chat, raw, smollm2_path, Collect};

#[test]
fn smollm2_answers_the_capital_of_france_with_paris() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
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

#[test]
fn raw_prompts_stop_strings_cancellation_and_trim_behave_as_the_sdk_says() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = WebGpuModel::load(&smollm2_path(), 256).unwrap();
    let prompt = "<|im_start|>user\nCount from 1 to 9, separated by commas.<|im_end|>\n<|im_start|>assistant\n";

    let mut sink = Collect::default();
    let stats = model.generate(&raw(prompt, 6, &[]), &mut sink).unwrap();
    let text = sink.pieces.concat();
    println!("raw: {text:?}");
    assert_eq!((stats.completion_tokens, stats.finish_reason), (6, FinishReason::Length));
    assert!(text.contains('1') && text.contains('2'), "{text:?}");

    // The same greedy request with a stop string cuts the same text before it.
    let mut stopped = Collect::default();
    let stats = model.generate(&raw(prompt, 6, &["2"]), &mut stopped).unwrap();
    assert_eq!(stats.finish_reason, FinishReason::Stop);
    assert_eq!(stopped.pieces.concat(), text[..text.find('2').unwrap()]);

    let mut cancelling = Collect { limit: Some(2), ..Collect::default() };
    let stats = model.generate(&raw(prompt, 6, &[]), &mut cancelling).unwrap();
    assert_eq!((stats.finish_reason, cancelling.pieces.len()), (FinishReason::Cancelled, 2));

    let loaded = model.memory().device_bytes;
    model.trim();
    let trimmed = model.memory().device_bytes;
    assert!(trimmed < loaded, "trim frees the KV cache and scratch: {loaded} -> {trimmed}");
    let file = std::fs::metadata(smollm2_path()).unwrap().len();
    assert!(
        trimmed <= file * 13 / 10,
        "weights on the device stay within 1.3x the file: {trimmed} vs {file}"
    );
    let mut again = Collect::default();
    model.generate(&raw(prompt, 6, &[]), &mut again).unwrap();
    assert_eq!(
        again.pieces.concat(),
        text,
        "a trimmed model rebuilds its cache and answers the same"
    );
}

/// llama-server's default sampling (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05)
/// with a seed: on a GPU plan the device finds each step's 40 candidates and only they
/// come back; a request for log-probabilities reads every logit instead, and draws the
/// same tokens.
#[test]
fn tokens_sampled_from_the_device_s_top_k_are_those_sampled_from_every_logit() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let plans = KernelPlan::every(Gpu::new().unwrap().offers());
    let Some(plan) = plans.into_iter().find(|&plan| plan != KernelPlan::Software) else {
        println!("no GPU plan on this adapter");
        return;
    };
    let prompt =
        "<|im_start|>user\nTell me a story about a lighthouse.<|im_end|>\n<|im_start|>assistant\n";
    let answer = |logprobs: ROption<u32>| {
        let request = GenerateRequest {
            sampling: Sampling { seed: 11, ..Sampling::default() },
            logprobs,
            ..raw(prompt, 24, &[])
        };
        // A model each, so both answers start from the prompt evaluated alike.
        let model = WebGpuModel::load_with_plan(&smollm2_path(), 256, Some(plan)).unwrap();
        let mut sink = Collect::default();
        let stats = model.generate(&request, &mut sink).unwrap();
        assert_eq!(stats.completion_tokens, 24);
        sink.pieces.concat()
    };
    let on_device = answer(ROption::RNone);
    println!("{plan}: {on_device:?}");
    assert_eq!(on_device, answer(ROption::RSome(1)));
}
