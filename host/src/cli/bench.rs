//! `hearth bench`: what the host costs on top of a backend, measured through the same
//! path a request takes — load, time to first token, prompt and decode speed, reload
//! from trimmed and from unloaded, and resident memory at each stage (the host's and
//! its worker processes'), in-process or in worker processes (`--isolation`).

use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use hearth_sdk::abi_stable::std_types::RVec;
use hearth_sdk::{GenerateRequest, Sampling};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::lifecycle::KeepAlive;
use crate::router::RouteRequest;
use crate::service::{Completion, Generation, Hearth};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A catalog model id; omit it to bench what the router picks.
    pub model: Option<String>,
    #[arg(long)]
    pub backend: Option<String>,
    /// Measured runs after one warm-up.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Roughly this many prompt tokens (the backend's tokenizer decides exactly).
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: u32,
    /// Tokens generated per run.
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: u32,
    /// Decode with llama-server's default sampling (temperature 0.8, top-k 40, top-p
    /// 0.95, min-p 0.05; seed 1), as a chat client does, instead of greedily.
    #[arg(long)]
    pub sampled: bool,
    /// Decode with this repeat penalty over the last 64 tokens (Ollama's default is
    /// 1.1), as a client that asks for one does; 1 is none.
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long)]
    pub json: bool,
}

/// Median, minimum and maximum of one figure over the runs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        let middle = values.len() / 2;
        let median = if values.len() % 2 == 0 {
            (values[middle - 1] + values[middle]) / 2.0
        } else {
            values[middle]
        };
        Self { median, min: values[0], max: values[values.len() - 1] }
    }
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub backend: String,
    /// `process` or `in-process`.
    pub isolation: crate::catalog::Isolation,
    pub runs: usize,
    pub prompt_tokens: u32,
    /// Whether the runs decoded with llama-server's default sampling, not greedily.
    pub sampled: bool,
    /// The repeat penalty they decoded with (1: none).
    pub repeat_penalty: f32,
    pub gen_tokens: Spread,
    pub load_ms: f64,
    pub time_to_first_token_ms: Spread,
    pub prompt_tokens_per_second: Spread,
    /// As the backend measures it, inside the worker process when there is one.
    pub decode_tokens_per_second: Spread,
    /// As the host receives the tokens: with a worker process, the pipe is included.
    pub streamed_tokens_per_second: Spread,
    pub reload_from_trimmed_first_token_ms: f64,
    pub reload_from_unloaded_first_token_ms: f64,
    pub resident_bytes_before_load: u64,
    pub resident_bytes_after_load: u64,
    pub resident_bytes_after_trim: u64,
    pub resident_bytes_after_unload: u64,
    pub device_bytes_after_load: u64,
}

/// The resident memory of this process and its worker processes; 0 where /proc is not
/// available.
fn resident_bytes() -> u64 {
    let me = std::process::id();
    let workers = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| parent_of(*pid) == Some(me));
    std::iter::once(me).chain(workers).map(resident_bytes_of).sum()
}

fn resident_bytes_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|statm| {
            statm.split_whitespace().nth(1).and_then(|pages| pages.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (name) state ppid …`; the name may hold spaces and parentheses.
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

fn generation(args: &BenchArgs, prompt: &str, max_tokens: u32) -> Generation {
    Generation {
        route: RouteRequest {
            model: args.model.clone(),
            backend: args.backend.clone(),
            tier: None,
            device: None,
        },
        request: GenerateRequest {
            messages: RVec::new(),
            prompt: Some(prompt.into()).into(),
            sampling: Sampling {
                temperature: if args.sampled { Sampling::default().temperature } else { 0.0 },
                seed: 1,
                repeat_penalty: args.repeat_penalty,
                ..Sampling::default()
            },
            stop: RVec::new(),
            max_tokens,
            adapters: RVec::new(),
            ..GenerateRequest::default()
        },
        adapters: Vec::new(),
        keep_alive: KeepAlive::Forever,
    }
}

async fn complete(hearth: &Hearth, generation: Generation) -> anyhow::Result<Completion> {
    let (tokens, _pieces) = mpsc::unbounded_channel();
    Ok(hearth.generate(generation, tokens).await?)
}

async fn settle_memory() {
    // Freed pages leave RSS as the allocator returns them; give it a moment.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
}

/// Run the benchmark and print it.
pub async fn bench(hearth: &Hearth, args: BenchArgs) -> anyhow::Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if !(args.repeat_penalty > 0.0 && args.repeat_penalty <= 10.0) {
        bail!("--repeat-penalty must be above 0 and at most 10 (1 is none)");
    }
    // About ten tokens per sentence with the llama-family tokenizers. Each run starts
    // differently: backends reuse a cached prefix, and the same prompt again would leave
    // one token to evaluate. plugins/llamacpp/examples/direct.rs builds the same text.
    let body = "The quick brown fox jumps over the lazy dog. "
        .repeat((args.prompt_tokens / 10).max(1) as usize);
    let prompt = |run: usize| format!("Run {run}. {body}");
    let resident_bytes_before_load = resident_bytes();

    let started = Instant::now();
    let prepared =
        hearth.prepare(generation(&args, "Hello", 1)).await.context("loading the model")?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let (model, backend) = (prepared.model_id().to_string(), prepared.backend().to_string());
    drop(prepared);
    let snapshot = hearth.loaded_models().into_iter().find(|loaded| loaded.key.model_id == model);
    let key = snapshot
        .as_ref()
        .map(|loaded| loaded.key.clone())
        .context("the model did not stay loaded")?;
    let device_bytes_after_load = snapshot.map_or(0, |loaded| loaded.memory.device_bytes);
    let resident_bytes_after_load = resident_bytes();

    // Run 0 is the warm-up.
    complete(hearth, generation(&args, &prompt(0), args.gen_tokens)).await?;
    let mut completions = Vec::new();
    for run in 1..=args.runs {
        completions.push(complete(hearth, generation(&args, &prompt(run), args.gen_tokens)).await?);
    }

    hearth.scheduler().trim(&key).await?;
    settle_memory().await;
    let resident_bytes_after_trim = resident_bytes();
    let after_trim = complete(hearth, generation(&args, "Hello", 1)).await?;

    hearth.unload(&model).await?;
    settle_memory().await;
    let resident_bytes_after_unload = resident_bytes();
    let after_unload = complete(hearth, generation(&args, "Hello", 1)).await?;
    hearth.unload(&model).await?;

    let report = BenchReport {
        isolation: hearth.isolation(&backend),
        model,
        backend,
        runs: args.runs,
        prompt_tokens: completions[0].prompt_tokens,
        sampled: args.sampled,
        repeat_penalty: args.repeat_penalty,
        gen_tokens: Spread::of(
            completions.iter().map(|c| f64::from(c.completion_tokens)).collect(),
        ),
        load_ms,
        time_to_first_token_ms: Spread::of(
            completions.iter().map(|c| c.time_to_first_token_ms.unwrap_or(f64::NAN)).collect(),
        ),
        prompt_tokens_per_second: Spread::of(
            completions.iter().map(|c| f64::from(c.prompt_tokens) / (c.prompt_ms / 1e3)).collect(),
        ),
        decode_tokens_per_second: Spread::of(
            completions
                .iter()
                .map(|c| f64::from(c.completion_tokens.saturating_sub(1)) / (c.decode_ms / 1e3))
                .collect(),
        ),
        streamed_tokens_per_second: Spread::of(
            completions.iter().map(streamed_tokens_per_second).collect(),
        ),
        reload_from_trimmed_first_token_ms: after_trim.time_to_first_token_ms.unwrap_or(f64::NAN),
        reload_from_unloaded_first_token_ms: after_unload
            .time_to_first_token_ms
            .unwrap_or(f64::NAN),
        resident_bytes_before_load,
        resident_bytes_after_load,
        resident_bytes_after_trim,
        resident_bytes_after_unload,
        device_bytes_after_load,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

/// Tokens after the first over the time from the first token to the answer, as the host
/// saw them arrive.
fn streamed_tokens_per_second(completion: &Completion) -> f64 {
    let first = completion.time_to_first_token_ms.unwrap_or(f64::NAN);
    f64::from(completion.completion_tokens.saturating_sub(1))
        / ((completion.total_ms - first) / 1e3)
}

fn print_table(report: &BenchReport) {
    let mb = |bytes: u64| bytes as f64 / 1e6;
    let spread = |s: &Spread| format!("{:>9.1}  ({:.1} – {:.1})", s.median, s.min, s.max);
    let isolation = match report.isolation {
        crate::catalog::Isolation::Process => "in a worker process",
        crate::catalog::Isolation::InProcess => "in-process",
    };
    let mut decoding =
        String::from(if report.sampled { "sampled as llama-server samples" } else { "greedy" });
    if report.repeat_penalty != 1.0 {
        decoding += &format!(", repeat penalty {}", report.repeat_penalty);
    }
    println!(
        "{} on {} ({isolation}) — {} runs after a warm-up, {} prompt tokens, {decoding}",
        report.model, report.backend, report.runs, report.prompt_tokens
    );
    println!("{:<36} {:>9.1}", "load (ms)", report.load_ms);
    println!("{:<36} {}", "time to first token (ms)", spread(&report.time_to_first_token_ms));
    println!("{:<36} {}", "prompt processing (tok/s)", spread(&report.prompt_tokens_per_second));
    println!("{:<36} {}", "decode (tok/s)", spread(&report.decode_tokens_per_second));
    println!(
        "{:<36} {}",
        "decode, streamed to host (tok/s)",
        spread(&report.streamed_tokens_per_second)
    );
    println!(
        "{:<36} {:>9.1}",
        "first token after trim (ms)", report.reload_from_trimmed_first_token_ms
    );
    println!(
        "{:<36} {:>9.1}",
        "first token after unload (ms)", report.reload_from_unloaded_first_token_ms
    );
    println!("{:<36} {:>9.1}", "resident MB before load", mb(report.resident_bytes_before_load));
    println!("{:<36} {:>9.1}", "resident MB after load", mb(report.resident_bytes_after_load));
    println!("{:<36} {:>9.1}", "resident MB after trim", mb(report.resident_bytes_after_trim));
    println!("{:<36} {:>9.1}", "resident MB after unload", mb(report.resident_bytes_after_unload));
    println!("{:<36} {:>9.1}", "device MB after load", mb(report.device_bytes_after_load));
}
