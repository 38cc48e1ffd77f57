//! The baseline `hearth bench` is compared with: the same measurements, made by a program
//! that drives llama.cpp through llama-cpp-2's safe API with no host, no plugin ABI, no
//! router and no lifecycle in between. What `hearth bench` costs beyond these figures is
//! what hearth adds on top of the engine.
//!
//! ```text
//! cargo run --release -p hearth-llamacpp --example direct -- MODEL.gguf \
//!     [--threads N] [--context N] [--prompt-tokens N] [--gen-tokens N] [--runs N] [--chat] [--json]
//! ```
//!
//! It does per token what the plugin does (greedy sample, end-of-generation check, the
//! token's bytes, the next decode) and times the same spans: the prompt from its first
//! decode call, the answer from there to the last token, the first token from the start
//! of the request. With `--chat` the prompt is a two-message chat rendered with the
//! model's own template — how `scripts/bench_suite.py` sends it over HTTP.

use std::io::Write;
use std::num::NonZeroU32;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;

type AnyError = Box<dyn std::error::Error>;

struct Options {
    model: String,
    threads: i32,
    context: u32,
    prompt_tokens: u32,
    gen_tokens: u32,
    runs: usize,
    chat: bool,
    json: bool,
}

const USAGE: &str = "usage: direct MODEL.gguf [--threads N] [--context N] [--prompt-tokens N] \
                     [--gen-tokens N] [--runs N] [--chat] [--json]";

impl Options {
    fn parse() -> Result<Self, AnyError> {
        let mut args = std::env::args().skip(1);
        let mut options = Self {
            model: String::new(),
            threads: 2,
            // The catalog's context for SmolLM2, so the KV cache is the size hearth uses.
            context: 8192,
            prompt_tokens: 512,
            gen_tokens: 128,
            runs: 5,
            chat: false,
            json: false,
        };
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value; {USAGE}"));
            match arg.as_str() {
                "--threads" => options.threads = value()?.parse()?,
                "--context" => options.context = value()?.parse()?,
                "--prompt-tokens" => options.prompt_tokens = value()?.parse()?,
                "--gen-tokens" => options.gen_tokens = value()?.parse()?,
                "--runs" => options.runs = value()?.parse()?,
                "--chat" => options.chat = true,
                "--json" => options.json = true,
                _ if arg.starts_with('-') || !options.model.is_empty() => {
                    return Err(format!("unexpected {arg}; {USAGE}").into())
                }
                _ => options.model = arg,
            }
        }
        if options.model.is_empty() || options.runs == 0 {
            return Err(USAGE.into());
        }
        Ok(options)
    }
}

/// The text `hearth bench` and `bench_suite.py` send, so every program evaluates the same
/// tokens. Each run starts differently: the plugin and llama-server reuse a cached
/// prefix, and an identical prompt would leave them one token to evaluate.
fn prompt_body(prompt_tokens: u32) -> String {
    // About ten tokens per sentence with the llama-family tokenizers.
    "The quick brown fox jumps over the lazy dog. ".repeat((prompt_tokens / 10).max(1) as usize)
}

fn raw_prompt(run: usize, prompt_tokens: u32) -> String {
    format!("Run {run}. {}", prompt_body(prompt_tokens))
}

/// The chat `bench_suite.py` posts to `/v1/chat/completions`: the run marker as the system
/// message (first, so the shared prefix is only the template's opening), the body as the
/// user's.
fn chat_prompt(model: &LlamaModel, run: usize, prompt_tokens: u32) -> Result<String, AnyError> {
    let template = model.chat_template(None)?;
    let chat = [
        LlamaChatMessage::new("system".into(), format!("Run {run}."))?,
        LlamaChatMessage::new("user".into(), prompt_body(prompt_tokens))?,
    ];
    Ok(model.apply_chat_template(&template, &chat, true)?)
}

/// One generation's figures, as the plugin's `GenerateStats` reports them.
struct Stats {
    prompt_tokens: usize,
    completion_tokens: u32,
    first_token_ms: f64,
    prompt_ms: f64,
    decode_ms: f64,
}

fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

fn new_context<'m>(
    backend: &LlamaBackend,
    model: &'m LlamaModel,
    options: &Options,
) -> Result<LlamaContext<'m>, AnyError> {
    // The plugin's settings (plugins/llamacpp/src/ffi.rs, RawContext::new).
    let batch = options.context.min(512);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(options.context))
        .with_n_batch(batch)
        .with_n_ubatch(batch)
        .with_n_seq_max(1)
        .with_n_threads(options.threads)
        .with_n_threads_batch(options.threads);
    Ok(model.new_context(backend, params)?)
}

/// Evaluate `prompt` on an empty cache and greedily generate up to `max_tokens`.
/// `started` is when the request began, for the time to first token.
fn generate(
    model: &LlamaModel,
    context: &mut LlamaContext<'_>,
    prompt: &str,
    max_tokens: u32,
    started: Instant,
) -> Result<Stats, AnyError> {
    let vocab = model.vocab();
    // add_special and parse_special, as the plugin tokenizes.
    let tokens = vocab.tokenize(prompt.as_bytes(), true, true);
    let mut sampler = LlamaSampler::greedy();
    context.clear_kv_cache();

    let prompt_started = Instant::now();
    let batch_size = context.n_batch() as usize;
    let mut batch = LlamaBatch::new(batch_size, 1);
    let mut position = 0;
    for chunk in tokens.chunks(batch_size) {
        batch.clear();
        for &token in chunk {
            // Logits only for the prompt's last token, the one sampled from.
            let last = position as usize + 1 == tokens.len();
            batch.add(token, position, &[0], last)?;
            position += 1;
        }
        context.decode(&mut batch)?;
    }
    let prompt_ms = ms_since(prompt_started);

    let decode_started = Instant::now();
    let mut first_token_ms = f64::NAN;
    let mut generated = 0u32;
    let mut bytes = Vec::new();
    let mut logits_index = batch.n_tokens() - 1;
    loop {
        let token = sampler.sample(context, logits_index);
        if vocab.is_eog(token) {
            break;
        }
        generated += 1;
        bytes.clear();
        vocab.token_to_piece_into(token, &mut bytes, false, None);
        if generated == 1 {
            first_token_ms = ms_since(started);
        }
        if generated >= max_tokens {
            break;
        }
        batch.clear();
        batch.add(token, position, &[0], true)?;
        position += 1;
        context.decode(&mut batch)?;
        logits_index = 0;
    }
    Ok(Stats {
        prompt_tokens: tokens.len(),
        completion_tokens: generated,
        first_token_ms,
        prompt_ms,
        decode_ms: ms_since(decode_started),
    })
}

/// This process's resident memory, as `hearth bench` reads its own.
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Median, minimum and maximum, as `hearth bench` reports them.
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    let median = if values.len() % 2 == 0 {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    };
    (median, values[0], values[values.len() - 1])
}

fn main() -> Result<(), AnyError> {
    let options = Options::parse()?;
    // The backend modules (CPU, CUDA, …), loaded as the plugin loads them.
    hearth_llamacpp::backends::load()?;
    let mut backend = LlamaBackend::init()?;
    backend.void_logs();
    let model_params = LlamaModelParams::default();

    let resident_before_load = resident_bytes();
    let started = Instant::now();
    let model = LlamaModel::load_from_file(&backend, &options.model, &model_params)?;
    let load_ms = ms_since(started);
    let resident_after_load = resident_bytes();

    let mut context = new_context(&backend, &model, &options)?;
    let prompt = |run: usize| -> Result<String, AnyError> {
        if options.chat {
            chat_prompt(&model, run, options.prompt_tokens)
        } else {
            Ok(raw_prompt(run, options.prompt_tokens))
        }
    };
    // Run 0 is the warm-up.
    let mut runs = Vec::with_capacity(options.runs);
    for run in 0..=options.runs {
        let text = prompt(run)?;
        let stats = generate(&model, &mut context, &text, options.gen_tokens, Instant::now())?;
        if run > 0 {
            runs.push(stats);
        }
    }

    // Trimmed: the context (KV cache, scratch) goes, the weights stay.
    drop(context);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let resident_after_trim = resident_bytes();
    let started = Instant::now();
    let mut context = new_context(&backend, &model, &options)?;
    let after_trim = generate(&model, &mut context, "Hello", 1, started)?;

    drop(context);
    drop(model);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let resident_after_unload = resident_bytes();
    let started = Instant::now();
    let model = LlamaModel::load_from_file(&backend, &options.model, &model_params)?;
    let mut context = new_context(&backend, &model, &options)?;
    let after_unload = generate(&model, &mut context, "Hello", 1, started)?;

    let figure = |f: &dyn Fn(&Stats) -> f64| spread(runs.iter().map(f).collect());
    let ttft = figure(&|s| s.first_token_ms);
    let prompt_rate = figure(&|s| s.prompt_tokens as f64 / (s.prompt_ms / 1e3));
    let decode_rate =
        figure(&|s| f64::from(s.completion_tokens.saturating_sub(1)) / (s.decode_ms / 1e3));
    let gen_tokens = figure(&|s| f64::from(s.completion_tokens));
    let mut out = std::io::stdout().lock();
    if options.json {
        let json = |(median, min, max): (f64, f64, f64)| {
            format!(r#"{{"median": {median}, "min": {min}, "max": {max}}}"#)
        };
        writeln!(
            out,
            r#"{{"program": "direct", "threads": {}, "context": {}, "runs": {}, "prompt_tokens": {}, "gen_tokens": {}, "load_ms": {load_ms}, "time_to_first_token_ms": {}, "prompt_tokens_per_second": {}, "decode_tokens_per_second": {}, "reload_from_trimmed_first_token_ms": {}, "reload_from_unloaded_first_token_ms": {}, "resident_bytes_before_load": {resident_before_load}, "resident_bytes_after_load": {resident_after_load}, "resident_bytes_after_trim": {resident_after_trim}, "resident_bytes_after_unload": {resident_after_unload}}}"#,
            options.threads,
            options.context,
            options.runs,
            runs[0].prompt_tokens,
            json(gen_tokens),
            json(ttft),
            json(prompt_rate),
            json(decode_rate),
            after_trim.first_token_ms,
            after_unload.first_token_ms,
        )?;
    } else {
        let row = |name: &str, (median, min, max): (f64, f64, f64)| {
            format!("{name:<36} {median:>9.1}  ({min:.1} – {max:.1})")
        };
        let mb = |bytes: u64| bytes as f64 / 1e6;
        writeln!(
            out,
            "direct llama-cpp-2 — {} runs after a warm-up, {} prompt tokens, {} threads",
            options.runs, runs[0].prompt_tokens, options.threads
        )?;
        writeln!(out, "{:<36} {load_ms:>9.1}", "load (ms)")?;
        writeln!(out, "{}", row("time to first token (ms)", ttft))?;
        writeln!(out, "{}", row("prompt processing (tok/s)", prompt_rate))?;
        writeln!(out, "{}", row("decode (tok/s)", decode_rate))?;
        writeln!(out, "{:<36} {:>9.1}", "first token after trim (ms)", after_trim.first_token_ms)?;
        writeln!(
            out,
            "{:<36} {:>9.1}",
            "first token after unload (ms)", after_unload.first_token_ms
        )?;
        writeln!(out, "{:<36} {:>9.1}", "resident MB before load", mb(resident_before_load))?;
        writeln!(out, "{:<36} {:>9.1}", "resident MB after load", mb(resident_after_load))?;
        writeln!(out, "{:<36} {:>9.1}", "resident MB after trim", mb(resident_after_trim))?;
        writeln!(out, "{:<36} {:>9.1}", "resident MB after unload", mb(resident_after_unload))?;
    }
    Ok(())
}
