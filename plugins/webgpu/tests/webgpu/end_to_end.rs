//! The plugin end to end on the real SmolLM2 model, on whatever adapter wgpu finds
//! (lavapipe here): chat answers, raw prompts, stop strings, cancellation, lifecycle,
//! and sampling on a GPU plan (top-k on the device, with a bias and penalties).

use hearth_sdk::abi_stable::std_types::ROption;
use hearth_sdk::helpers::Sampler;
use hearth_sdk::{FinishReason, GenerateRequest, LogitBias, Model, Sampling};
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

/// A raw prompt that asks for a story: an answer with room to differ.
const STORY: &str =
    "<|im_start|>user\nTell me a story about a lighthouse.<|im_end|>\n<|im_start|>assistant\n";

/// A GPU plan of this adapter, where the real models are here; `None` (said why) where
/// either is missing.
fn gpu_plan_with_smollm2() -> Option<KernelPlan> {
    hearth_sdk::testing::real_models()?;
    let plans = KernelPlan::every(Gpu::new().unwrap().offers());
    let plan = plans.into_iter().find(|&plan| plan != KernelPlan::Software);
    if plan.is_none() {
        println!("no GPU plan on this adapter");
    }
    plan
}

/// llama-server's default sampling (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05)
/// with a seed: on a GPU plan the device finds each step's 40 candidates and only they
/// come back; a request for log-probabilities reads every logit instead, and draws the
/// same tokens.
#[test]
fn tokens_sampled_from_the_device_s_top_k_are_those_sampled_from_every_logit() {
    let Some(plan) = gpu_plan_with_smollm2() else { return };
    let answer = |logprobs: ROption<u32>| {
        let request = GenerateRequest {
            sampling: Sampling { seed: 11, ..Sampling::default() },
            logprobs,
            ..raw(STORY, 24, &[])
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

/// A request with a logit bias and every penalty (repeat, frequency, presence), on a GPU
/// plan: the device adjusts the logits and ranks them, and only the candidates come
/// back. They are the host's top-k of the logits it adjusts itself, and the tokens
/// drawn from them, sampled or greedy, are those drawn from every logit (a request for
/// log-probabilities reads every logit).
#[test]
fn biased_and_penalised_sampling_ranks_the_logits_adjusted_on_the_device() {
    let Some(plan) = gpu_plan_with_smollm2() else { return };
    let adjusted = |sampling: Sampling, max_tokens: u32| GenerateRequest {
        sampling: Sampling { repeat_penalty: 1.3, ..sampling },
        presence_penalty: 0.4,
        frequency_penalty: 0.25,
        // One token disfavoured, one favoured.
        logit_bias: vec![LogitBias { token: 260, bias: -3.0 }, LogitBias { token: 504, bias: 1.5 }]
            .into(),
        ..raw(STORY, max_tokens, &[])
    };

    let model = WebGpuModel::load_with_plan(&smollm2_path(), 256, Some(plan)).unwrap();
    // Any ids will do: the device and the host evaluate the same ones.
    let tokens = [1, 9690, 198, 19556, 506, 253, 1837, 563, 253, 37432, 30, 2];
    let mut sampler = Sampler::for_request(&adjusted(Sampling::default(), 1));
    tokens.iter().for_each(|&token| sampler.accept(token));
    let (adjustments, k) = sampler.adjusted_top_k().expect("top-k of adjusted logits");
    let found = model.adjusted_top_k(&tokens, k, &adjustments).unwrap().expect("on the device");
    let mut logits = model.logits(&tokens, &[]).unwrap();
    adjustments.apply(&mut logits);
    let mut ranked: Vec<(u32, f32)> =
        logits.iter().enumerate().map(|(token, &logit)| (token as u32, logit)).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let ids = |pairs: &[(u32, f32)]| pairs.iter().map(|&(token, _)| token).collect::<Vec<_>>();
    assert_eq!(ids(&found), ids(&ranked[..k as usize]));
    for (&(_, device), &(_, host)) in found.iter().zip(&ranked) {
        assert!((device - host).abs() <= 1e-5 * host.abs().max(1.0), "{device} vs {host}");
    }

    for (sampling, max_tokens) in [
        (Sampling { seed: 11, ..Sampling::default() }, 24),
        (Sampling { temperature: 0.0, ..Sampling::default() }, 16),
    ] {
        let answer = |logprobs: ROption<u32>| {
            let request = GenerateRequest { logprobs, ..adjusted(sampling, max_tokens) };
            let model = WebGpuModel::load_with_plan(&smollm2_path(), 256, Some(plan)).unwrap();
            let mut sink = Collect::default();
            let stats = model.generate(&request, &mut sink).unwrap();
            assert_eq!(stats.completion_tokens, max_tokens);
            sink.pieces.concat()
        };
        let on_device = answer(ROption::RNone);
        println!("{plan}, temperature {}: {on_device:?}", sampling.temperature);
        assert_eq!(on_device, answer(ROption::RSome(1)));
    }
}
