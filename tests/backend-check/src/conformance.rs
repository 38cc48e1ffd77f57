//! The conformance suite: every architecture the model layer describes
//! ([`hearth_model::arch::ARCHITECTURES`]) in every GGUF type an engine reads, each
//! engine against llama.cpp, the oracle. The models are tiny and have random weights
//! (`scripts/tiny_models.py`, run by setup: real Qwen2 and Qwen3 weights cannot be had
//! here, and a real model covers one type), quantized "pure" by llama.cpp's own
//! quantizer, so each file tests one type.
//!
//! On each cell, on one fixed prompt longer than Gemma 3's tiny sliding window:
//! - the engine's first-step logits are no further from llama.cpp's than exact
//!   arithmetic's (the CPU reference's) are, to 1e-4: all of the difference is
//!   llama.cpp's own rounding of activations, none of it the engine's;
//! - exact arithmetic is within [`LLAMA_CPP_ROUNDING`] of llama.cpp, so the reference
//!   and the oracle read the file alike;
//! - the engine's greedy next token and the reference's are llama.cpp's, unless
//!   llama.cpp's own top two are closer than its rounding (see [`same_greedy_token`]).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use hearth_sdk::helpers::{Gguf, Tokenizer};
use hearth_sdk::PluginError;

use crate::agreement::{argmax, relative_error};
use crate::{llamacpp, reference};

/// The GGUF types of the tiny models, as `scripts/tiny_models.py` names its files.
pub const TYPES: [&str; 10] =
    ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"];

/// Ten tokens or more with every tokenizer here: past the window of 4 that the tiny
/// Gemma 3's local layers have, so they are tested masking, not only its global one.
pub const PROMPT: &str = "The old lighthouse keeper counted seven ships before the storm.";

/// How far llama.cpp may sit from exact arithmetic (max |Δ| / max |logit|): it rounds
/// each matmul's activations to 8 bits (Q8_0, Q8_1, or Q8_K per block of 256 for the
/// K-quants), to f16 or bf16 for those weights, keeps its KV cache in f16 and takes
/// GELU from an f16 table; the real Gemma 3 270M sits within this too.
pub const LLAMA_CPP_ROUNDING: f32 = 8e-2;

/// Cells an engine cannot run, with the reason: one type of an architecture, or every
/// type (`ty: None`); they are listed in the table, not run.
pub struct Exception {
    pub arch: &'static str,
    pub ty: Option<&'static str>,
    pub reason: &'static str,
}

/// `<models>/tiny/<arch>/<arch>-<TYPE>.gguf`.
pub fn tiny_model(models: &Path, arch: &str, ty: &str) -> String {
    models.join("tiny").join(arch).join(format!("{arch}-{ty}.gguf")).to_string_lossy().into_owned()
}

/// The tiny Gemma 3n in F16, Q8_0 and Q4_K through `engine`'s whole generation loop
/// (`load` opens a file at a context of 256): the prompt in one step, then token by token
/// through the KV cache (its shared layers reading earlier layers' cache, its local
/// layers masking past the window), beside the llama.cpp plugin's greedy answer. Without
/// the tiny models, prints `skipped` and returns.
pub fn assert_tiny_gemma3n_answers_as_llama_cpp<M: hearth_sdk::Model>(
    models: &Path,
    engine: &str,
    load: impl Fn(&str) -> M,
) {
    for ty in ["F16", "Q8_0", "Q4_K"] {
        let path = tiny_model(models, "gemma3n", ty);
        if !Path::new(&path).is_file() {
            println!("skipped: {path} missing (scripts/setup.sh makes it)");
            return;
        }
        let question = "Tell me about lighthouses";
        crate::agreement::assert_same_chat_answer_as_llama_cpp(
            &load(&path),
            engine,
            &path,
            question,
            12,
        );
    }
}

/// Whether `ours` picks llama.cpp's greedy token, or one llama.cpp itself scores within
/// `llama_cpp_error` (its relative distance from exact arithmetic) of its best: random
/// weights make near-ties, which llama.cpp's rounding decides, not the engine.
pub fn same_greedy_token(ours: &[f32], llama: &[f32], llama_cpp_error: f32) -> bool {
    let (mine, theirs) = (argmax(ours), argmax(llama));
    let scale = llama.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    mine == theirs || llama[theirs] - llama[mine] <= llama_cpp_error * scale
}

/// One cell's numbers.
struct Row {
    prompt_tokens: usize,
    to_llama_cpp: f32,
    exact_to_llama_cpp: f32,
    to_exact: f32,
    tokens: (usize, usize, usize),
    failures: Vec<String>,
}

fn check_cell(
    path: &str,
    logits_of: &impl Fn(&str, &[u32]) -> Result<Vec<f32>, PluginError>,
) -> Result<Row, String> {
    let gguf = Gguf::open(path).map_err(|e| format!("open: {e}"))?;
    let tokens = Tokenizer::from_gguf(&gguf)
        .and_then(|tokenizer| tokenizer.encode(PROMPT))
        .map_err(|e| format!("tokenize: {e}"))?;
    let config = hearth_model::Config::from_gguf(&gguf).map_err(|e| format!("config: {e}"))?;
    if let Some(window) = config.sliding_window.filter(|&w| tokens.len() <= w as usize) {
        return Err(format!(
            "{} prompt tokens do not reach past the window of {window}",
            tokens.len()
        ));
    }
    let llama = llamacpp::logits(path, &tokens, None);
    let exact = reference::forward(&gguf, &tokens, None).map_err(|e| format!("reference: {e}"))?;
    // An engine's panic is one failing cell, not the end of the table.
    let ours = catch_unwind(AssertUnwindSafe(|| logits_of(path, &tokens)))
        .map_err(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            format!("panicked: {message}")
        })?
        .map_err(|e| e.to_string())?;
    if ours.len() != llama.len() {
        return Err(format!("{} logits, llama.cpp has {}", ours.len(), llama.len()));
    }
    let row = Row {
        prompt_tokens: tokens.len(),
        to_llama_cpp: relative_error(&ours, &llama),
        exact_to_llama_cpp: relative_error(&exact, &llama),
        to_exact: relative_error(&ours, &exact),
        tokens: (argmax(&ours), argmax(&exact), argmax(&llama)),
        failures: Vec::new(),
    };
    let mut failures = Vec::new();
    if row.to_llama_cpp > row.exact_to_llama_cpp + 1e-4 {
        failures.push(format!(
            "{:e} from llama.cpp, exact arithmetic is {:e}",
            row.to_llama_cpp, row.exact_to_llama_cpp
        ));
    }
    if row.exact_to_llama_cpp >= LLAMA_CPP_ROUNDING {
        failures.push(format!("llama.cpp is {:e} from exact arithmetic", row.exact_to_llama_cpp));
    }
    if !same_greedy_token(&ours, &llama, row.exact_to_llama_cpp) {
        failures
            .push(format!("greedy token {} where llama.cpp's is {}", row.tokens.0, row.tokens.2));
    }
    if !same_greedy_token(&exact, &llama, row.exact_to_llama_cpp) {
        failures.push(format!("reference's greedy token {} is not llama.cpp's", row.tokens.1));
    }
    Ok(Row { failures, ..row })
}

/// Runs every architecture × type on `engine` through `logits_of` (which loads the file
/// at the path and returns the last token's logits), except the `exceptions`; prints a
/// table (per cell: the prompt's tokens; the engine's relative error to llama.cpp, exact
/// arithmetic's to llama.cpp and the engine's to exact arithmetic; the greedy next token
/// of each) and fails naming every failing cell. Without the tiny models (setup makes
/// them), prints `skipped` and returns.
pub fn check_every_cell(
    models: &Path,
    engine: &str,
    exceptions: &[Exception],
    logits_of: impl Fn(&str, &[u32]) -> Result<Vec<f32>, PluginError>,
) {
    let cells: Vec<(&str, &str)> = hearth_model::arch::ARCHITECTURES
        .iter()
        .flat_map(|arch| TYPES.iter().map(move |&ty| (arch.gguf_name, ty)))
        .collect();
    if let Some(missing) = cells
        .iter()
        .map(|(arch, ty)| tiny_model(models, arch, ty))
        .find(|p| !Path::new(p).is_file())
    {
        println!("skipped: tiny model {missing} missing (scripts/setup.sh makes them)");
        return;
    }
    println!(
        "{:<7} {:<5} {:>3} {:>10} {:>10} {:>10}  {:<20} result",
        "arch", "type", "n", "to llama", "exact-ll", "to exact", "next ours/ref/llama"
    );
    let mut failing = Vec::new();
    for (arch, ty) in cells {
        let cell = format!("{arch} {ty}");
        if let Some(exception) =
            exceptions.iter().find(|e| e.arch == arch && e.ty.is_none_or(|t| t == ty))
        {
            println!("{arch:<7} {ty:<5} not run: {}", exception.reason);
            continue;
        }
        let started = std::time::Instant::now();
        match check_cell(&tiny_model(models, arch, ty), &logits_of) {
            Ok(row) => {
                let (ours, exact, llama) = row.tokens;
                println!(
                    "{arch:<7} {ty:<5} {:>3} {:>10.3e} {:>10.3e} {:>10.3e}  {:<20} {} ({:.1}s)",
                    row.prompt_tokens,
                    row.to_llama_cpp,
                    row.exact_to_llama_cpp,
                    row.to_exact,
                    format!("{ours}/{exact}/{llama}"),
                    if row.failures.is_empty() { "ok".into() } else { row.failures.join("; ") },
                    started.elapsed().as_secs_f32()
                );
                if !row.failures.is_empty() {
                    failing.push(format!("{cell}: {}", row.failures.join("; ")));
                }
            }
            Err(error) => {
                println!("{arch:<7} {ty:<5} error: {error}");
                failing.push(format!("{cell}: {error}"));
            }
        }
    }
    assert!(failing.is_empty(), "{engine}: {} cells fail:\n{}", failing.len(), failing.join("\n"));
}
