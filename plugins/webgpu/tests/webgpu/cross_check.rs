//! The GPU forward pass against the CPU reference on the same GGUF weights, and against
//! llama.cpp: first-step logits and the first 16 greedy tokens on the five fixed prompts.

use hearth_backend_check::agreement::{
    argmax, assert_as_close_to_llama_cpp_as_exact_arithmetic, assert_greedy_agreement,
    assert_within_of_llama_cpp, chatml, greedy_answer, relative_error, PROMPTS,
};
use hearth_backend_check::fixtures::smollm2_f16_path;
use hearth_backend_check::{llamacpp, reference};
use hearth_sdk::abi_stable::std_types::ROption;
use hearth_sdk::helpers::{Gguf, Tokenizer};
use hearth_sdk::{GenerateRequest, Model, SinkControl, TokenLogprobs, TokenSink};
use hearth_webgpu::cache::CacheType;
use hearth_webgpu::device::Gpu;
use hearth_webgpu::forward::UBATCH;
use hearth_webgpu::model::WebGpuModel;
use hearth_webgpu::plan::KernelPlan;

use crate::common::{raw, smollm2_path};

/// The prompt is longer than one batch, so the chunked prompt processing and the KV
/// cache across chunks are both covered, by every kernel plan the adapter can run;
/// with the cache in f32, as the reference keeps it.
#[test]
fn smollm2_logits_on_the_gpu_match_the_cpu_reference_within_ten_times_each_kernel_plan_s_tolerance()
{
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let path = smollm2_path();
    let gguf = Gguf::open(&path).unwrap();
    let tokenizer = Tokenizer::from_gguf(&gguf).unwrap();
    let tokens = tokenizer
        .encode("<|im_start|>user\nWrite one short sentence about the grey sea, the cold wind, the gulls and the small fishing boats that leave the old harbour at dawn.<|im_end|>\n<|im_start|>assistant\n")
        .unwrap();
    assert!(
        tokens.len() > UBATCH as usize,
        "the prompt must span two batches, it has {} tokens",
        tokens.len()
    );
    let cpu = reference::forward(&gguf, &tokens, None).unwrap();
    let device = Gpu::new().unwrap();
    for plan in KernelPlan::every(device.offers()) {
        let model =
            WebGpuModel::load_with_kernels(&path, 256, Some(plan), Some(CacheType::F32)).unwrap();
        let gpu = model.logits(&tokens, &[]).unwrap();
        assert_eq!(argmax(&gpu), argmax(&cpu), "{plan}: the next token differs");
        let error = relative_error(&gpu, &cpu);
        println!("{plan}, {} tokens, max |gpu - cpu| / max |cpu| = {error:e}", tokens.len());
        // The prompt's last chunk may be short enough for the decode product.
        let tolerance = 10.0 * plan.tolerance_with(device.matvec);
        assert!(error < tolerance, "{plan}: relative error {error}");
    }
}

/// llama.cpp's CPU kernels round every activation to 8 bits per block of 32 before a
/// quantized dot product (Q8_0/Q8_1) and keep the KV cache in f16, so its logits sit a
/// few percent (max |Δ| / max |logit|) from exact arithmetic on the same weights. The
/// GPU must be no further from llama.cpp than the exact reference is: then all of the
/// difference is llama.cpp's rounding, none of it ours. With our cache in f32, as the
/// reference keeps it; the next test measures the f16 cache's own rounding.
#[test]
fn first_step_logits_on_the_five_prompts_are_as_close_to_llama_cpp_as_exact_arithmetic_is() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let path = smollm2_path();
    let model = WebGpuModel::load_with_kernels(&path, 256, None, Some(CacheType::F32)).unwrap();
    assert_as_close_to_llama_cpp_as_exact_arithmetic(&path, "webgpu", |tokens| {
        model.logits(tokens, &[]).unwrap()
    });
}

/// The f16 cache (the default where the adapter has f16) rounds every key and value to
/// 11 significant bits, as llama.cpp's default cache does: on the five prompts that
/// moves the first-step logits by less than 1e-3 of the largest from the f32 cache's
/// (2–3.3e-4 on lavapipe). On the plan the adapter runs whose products are exact to
/// 1e-5: the cooperative matrices' products round their inputs to f16, so there a
/// slightly different cache moves the logits by as much as those products' own
/// rounding (1.26e-3 on an H100 on one prompt); the greedy answers on that plan, with
/// the f16 cache, are checked against the CPU reference above.
#[test]
fn an_f16_cache_moves_smollm2_s_first_step_logits_less_than_1e_3_from_the_f32_cache_s() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let path = smollm2_path();
    let device = Gpu::new().unwrap();
    if !CacheType::every(&device).contains(&CacheType::F16) {
        println!("this adapter has no f16");
        return;
    }
    let mut plans = KernelPlan::every(device.offers()).into_iter();
    let plan = plans.rfind(|plan| plan.tolerance() <= 1e-5).expect("the software plan");
    let load = |cache| WebGpuModel::load_with_kernels(&path, 256, Some(plan), Some(cache)).unwrap();
    let (f16, f32) = (load(CacheType::F16), load(CacheType::F32));
    let tokenizer = Tokenizer::from_gguf(&Gguf::open(&path).unwrap()).unwrap();
    for prompt in PROMPTS {
        let tokens = tokenizer.encode(&chatml(prompt)).unwrap();
        let (rounded, exact) =
            (f16.logits(&tokens, &[]).unwrap(), f32.logits(&tokens, &[]).unwrap());
        let moved = relative_error(&rounded, &exact);
        println!("{prompt:?}: the f16 cache moved the logits by {moved:e}");
        assert!(moved < 1e-3, "{prompt:?}: the f16 cache moved the logits by {moved}");
        assert_eq!(argmax(&rounded), argmax(&exact), "{prompt:?}: the next token");
    }
}

/// The tokens a generation chose, from their log-probabilities.
#[derive(Default)]
struct Chosen(Vec<u32>);

impl TokenSink for Chosen {
    fn on_token(&mut self, _: &str) -> SinkControl {
        SinkControl::Continue
    }

    fn on_logprobs(&mut self, logprobs: &TokenLogprobs) {
        self.0.push(logprobs.chosen.token);
    }
}

/// SmolLM2's greedy answers, 16 tokens decoded through the KV cache by every kernel
/// plan the adapter runs, with the cache and the decode product's input it takes by
/// default, are the CPU reference's (exact f32 arithmetic) on the five fixed prompts:
/// one reference pass over a prompt and its answer picks every token of the answer.
/// The answers come with log-probabilities, which give their tokens; the same
/// answers without them, where the engine picks each token on the device, are the
/// same text.
#[test]
fn greedy_smollm2_answers_on_every_plan_are_the_cpu_reference_s_on_the_five_prompts() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let path = smollm2_path();
    let gguf = Gguf::open(&path).unwrap();
    let device = Gpu::new().unwrap();
    let mut reference_picks = std::collections::HashMap::new();
    for plan in KernelPlan::every(device.offers()) {
        let model = WebGpuModel::load_with_kernels(&path, 256, Some(plan), None).unwrap();
        for prompt in PROMPTS {
            let request =
                GenerateRequest { logprobs: ROption::RSome(0), ..raw(&chatml(prompt), 16, &[]) };
            let mut answer = Chosen::default();
            model.generate(&request, &mut answer).unwrap();
            let prompt_tokens = model.tokenize(&chatml(prompt), true).unwrap();
            assert_eq!(prompt_tokens.len() as u32, model.count_prompt_tokens(&request).unwrap());
            // The rows after the prompt's last token and each answer token but the last.
            let read = [&prompt_tokens[..], &answer.0[..answer.0.len() - 1]].concat();
            let picks = reference_picks.entry(read.clone()).or_insert_with(|| {
                let logits = reference::logits_of_every_token(&gguf, &read).unwrap();
                let vocab = logits.len() / read.len();
                let rows = logits.chunks(vocab).skip(prompt_tokens.len() - 1);
                rows.map(|row| argmax(row) as u32).collect::<Vec<_>>()
            });
            let text = model.detokenize(&answer.0).unwrap();
            println!("{plan}, {prompt:?}: {text:?}");
            assert_eq!(*picks, answer.0, "{plan}, {prompt:?}: the reference's picks");
            // Without log-probabilities the engine picks the tokens itself, a step
            // queued ahead of each pick's read.
            assert_eq!(greedy_answer(&model, prompt, 16), text, "{plan}, {prompt:?}");
        }
    }
}

#[test]
fn greedy_smollm2_gives_the_same_16_tokens_as_the_llama_cpp_plugin_on_most_of_the_five_prompts() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let path = smollm2_path();
    let gpu = WebGpuModel::load(&path, 256).unwrap();
    assert_greedy_agreement(3, &gpu, "webgpu", &llamacpp::load_with_plugin(&path));
}

/// The same model with its weights in F16, on which llama.cpp rounds a matmul's
/// activations only to f16: the backends then agree with it as closely as the issue
/// asks of the quantized file, which shows the quantized file's disagreement is
/// llama.cpp's 8-bit rounding.
#[test]
fn on_smollm2_in_f16_first_step_logits_are_within_1e_2_of_llama_cpp_on_the_five_prompts() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let path = smollm2_f16_path();
    let model = WebGpuModel::load(&path, 256).unwrap();
    assert_within_of_llama_cpp(1e-2, &path, "webgpu", |tokens| model.logits(tokens, &[]).unwrap());
}

#[test]
fn on_smollm2_in_f16_greedy_answers_match_the_llama_cpp_plugin_on_at_least_four_of_five_prompts() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let path = smollm2_f16_path();
    let ours = WebGpuModel::load(&path, 256).unwrap();
    assert_greedy_agreement(4, &ours, "webgpu", &llamacpp::load_with_plugin(&path));
}
