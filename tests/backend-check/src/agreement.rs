//! Cross-backend agreement: the five fixed prompts every backend answers greedily beside
//! the llama.cpp plugin, and how logits are compared.

use hearth_sdk::helpers::{Gguf, Tokenizer};
use hearth_sdk::Model;

use crate::requests::{raw, Collect};

/// The prompts of the greedy cross-check, fixed once and never chosen by outcome.
pub const PROMPTS: [&str; 5] = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain what a prime number is.",
    "List three fruits.",
    "How many legs does a spider have?",
];

/// SmolLM2's chat format around one user message, so every backend sees the same text
/// whatever its template engine.
pub fn chatml(question: &str) -> String {
    format!("<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")
}

/// The first `tokens` tokens `model` answers to `prompt` (in SmolLM2's chat format), greedily.
pub fn greedy_answer(model: &dyn Model, prompt: &str, tokens: u32) -> String {
    let mut sink = Collect::default();
    model.generate(&raw(&chatml(prompt), tokens, &[]), &mut sink).expect("generate");
    sink.pieces.concat()
}

/// How many of [`PROMPTS`] get the same first 16 greedy tokens from both models;
/// prints both answers to each.
pub fn same_first_16_tokens(ours: &dyn Model, ours_name: &str, llama_cpp: &dyn Model) -> usize {
    PROMPTS
        .iter()
        .filter(|prompt| {
            let (a, b) = (greedy_answer(ours, prompt, 16), greedy_answer(llama_cpp, prompt, 16));
            println!("{prompt:?}\n  {ours_name:<9}  {a:?}\n  llama.cpp  {b:?}");
            a == b
        })
        .count()
}

/// `max |a - b| / max |b|`: the largest deviation, relative to the largest logit.
pub fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "logit vectors of different lengths");
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// The index of the largest logit: the greedy next token.
pub fn argmax(logits: &[f32]) -> usize {
    logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).expect("logits").0
}

/// One prompt's first-step logits beside llama.cpp's.
pub struct FirstStep {
    pub prompt: &'static str,
    /// The backend's relative error to llama.cpp.
    pub to_llama_cpp: f32,
    /// The exact reference's relative error to llama.cpp, when it was computed.
    pub exact_to_llama_cpp: Option<f32>,
}

/// The first-step logits `logits_of` gives for each of [`PROMPTS`] on the GGUF model at
/// `path`, compared with llama.cpp's (and, with `with_exact`, the exact reference's with
/// llama.cpp's); prints a line per prompt.
pub fn first_step_logits(
    path: &str,
    backend: &str,
    with_exact: bool,
    logits_of: impl Fn(&[u32]) -> Vec<f32>,
) -> Vec<FirstStep> {
    let gguf = Gguf::open(path).expect("the model opens");
    let tokenizer = Tokenizer::from_gguf(&gguf).expect("its tokenizer");
    PROMPTS
        .iter()
        .map(|&prompt| {
            let tokens = tokenizer.encode(&chatml(prompt)).expect("the prompt tokenizes");
            let (ours, llama) = (logits_of(&tokens), crate::llamacpp::logits(path, &tokens, None));
            let exact = with_exact
                .then(|| crate::reference::forward(&gguf, &tokens, None).expect("the reference runs"));
            let row = FirstStep {
                prompt,
                to_llama_cpp: relative_error(&ours, &llama),
                exact_to_llama_cpp: exact.as_ref().map(|exact| relative_error(exact, &llama)),
            };
            match &exact {
                Some(exact) => println!(
                    "{prompt:?}: {backend} to llama.cpp {:e}, exact to llama.cpp {:e}, {backend} to exact {:e}",
                    row.to_llama_cpp,
                    relative_error(exact, &llama),
                    relative_error(&ours, exact)
                ),
                None => println!("{prompt:?}: {backend} to llama.cpp {:e}", row.to_llama_cpp),
            }
            row
        })
        .collect()
}

/// On a quantized file: on each of [`PROMPTS`], `backend`'s first-step logits are no
/// further from llama.cpp's than exact arithmetic's are (to 1e-4), and exact arithmetic
/// is within 5e-2 of llama.cpp (its 8-bit rounding of activations, nothing more).
pub fn assert_as_close_to_llama_cpp_as_exact_arithmetic(
    path: &str,
    backend: &str,
    logits_of: impl Fn(&[u32]) -> Vec<f32>,
) {
    assert_as_close_to_llama_cpp_as_exact_arithmetic_within(5e-2, path, backend, logits_of);
}

/// [`assert_as_close_to_llama_cpp_as_exact_arithmetic`] with exact arithmetic within
/// `llama_cpp_rounding` of llama.cpp: models whose K-quant matmuls llama.cpp runs on
/// activations rounded to 8 bits per block of 256 (Q8_K), with its f16 GELU table,
/// sit further from exact arithmetic than SmolLM2's Q4_1 does.
pub fn assert_as_close_to_llama_cpp_as_exact_arithmetic_within(
    llama_cpp_rounding: f32,
    path: &str,
    backend: &str,
    logits_of: impl Fn(&[u32]) -> Vec<f32>,
) {
    for row in first_step_logits(path, backend, true, logits_of) {
        let exact = row.exact_to_llama_cpp.expect("computed");
        assert!(
            row.to_llama_cpp <= exact + 1e-4,
            "{:?}: {} from llama.cpp, exact arithmetic is {exact}",
            row.prompt,
            row.to_llama_cpp
        );
        assert!(
            exact < llama_cpp_rounding,
            "{:?}: llama.cpp is {exact} from exact arithmetic",
            row.prompt
        );
    }
}

/// On each of [`PROMPTS`], `backend`'s first-step logits are within `bound` of llama.cpp's.
pub fn assert_within_of_llama_cpp(
    bound: f32,
    path: &str,
    backend: &str,
    logits_of: impl Fn(&[u32]) -> Vec<f32>,
) {
    for row in first_step_logits(path, backend, false, logits_of) {
        assert!(row.to_llama_cpp < bound, "{:?}: relative error {}", row.prompt, row.to_llama_cpp);
    }
}

/// At least `at_least` of [`PROMPTS`] get the same first 16 greedy tokens from both.
pub fn assert_greedy_agreement(
    at_least: usize,
    ours: &dyn Model,
    ours_name: &str,
    llama_cpp: &dyn Model,
) {
    let same = same_first_16_tokens(ours, ours_name, llama_cpp);
    println!("{same} of 5 agree");
    assert!(same >= at_least, "only {same} of 5 greedy answers agree");
}
