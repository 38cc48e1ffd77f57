//! Measure prompt and decode speed of one GGUF model through the plugin's own code path.
//!
//! `cargo run --release -p hearth-llamacpp --example decode_speed -- MODEL.gguf [TOKENS] [THREADS]`

use hearth_llamacpp::LlamaCppBackend;
use hearth_sdk::abi_stable::std_types::{ROption, RString, RVec};
use hearth_sdk::{Backend, GenerateRequest, LoadRequest, Sampling, SinkControl, TokenSink};

struct Discard;

impl TokenSink for Discard {
    fn on_token(&mut self, _: &str) -> SinkControl {
        SinkControl::Continue
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: decode_speed MODEL.gguf [TOKENS] [THREADS]")?;
    let tokens: u32 = args.next().map_or(Ok(128), |value| value.parse())?;
    let threads: u32 = args.next().map_or(Ok(2), |value| value.parse())?;

    let started = std::time::Instant::now();
    let backend = LlamaCppBackend::new()?;
    let model = backend.load(&LoadRequest {
        model_id: "bench".into(),
        paths: RVec::from(vec![RString::from(path)]),
        format: "gguf".into(),
        context_size: 1024,
        threads,
        device: ROption::RNone,
        ..Default::default()
    })?;
    println!("load: {:.0} ms", started.elapsed().as_secs_f64() * 1e3);

    let request = GenerateRequest {
        messages: RVec::new(),
        // A prompt the model will not end early: a long, open-ended continuation.
        prompt: ROption::RSome(
            "Here is a very long story about a dragon who lived in the mountains.".into(),
        ),
        sampling: Sampling { temperature: 0.0, ..Sampling::default() },
        stop: RVec::new(),
        max_tokens: tokens,
        adapters: RVec::new(),
        ..GenerateRequest::default()
    };
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let idle = model.memory();
    println!(
        "memory: {:.1} MiB host, {:.1} MiB device",
        mib(idle.host_bytes),
        mib(idle.device_bytes)
    );
    for run in 1..=2 {
        model.trim();
        let stats = model.generate(&request, &mut Discard)?;
        println!(
            "run {run}: prompt {} tokens in {:.1} ms ({:.0} tok/s); decode {} tokens in {:.1} ms ({:.1} tok/s); {}",
            stats.prompt_tokens,
            stats.prompt_ms,
            f64::from(stats.prompt_tokens) / stats.prompt_ms * 1e3,
            stats.completion_tokens,
            stats.decode_ms,
            f64::from(stats.completion_tokens) / stats.decode_ms * 1e3,
            stats.finish_reason.as_str(),
        );
        let busy = model.memory();
        println!(
            "  memory with a context: {:.1} MiB host, {:.1} MiB device",
            mib(busy.host_bytes),
            mib(busy.device_bytes)
        );
    }
    Ok(())
}
