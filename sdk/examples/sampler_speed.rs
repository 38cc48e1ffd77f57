//! How long the host's sampler takes a token where it reads every logit (a request with
//! a logit bias or penalties on an engine that cannot adjust the logits where they
//! are): [`Sampler::sample`] over vocabularies of SmolLM2's and Llama 3's size with
//! llama-server's default sampling and Ollama's repeat penalty, against sorting every
//! adjusted logit first (how it sampled before it selected the top-k). It prints
//! figures and asserts only that both draw the same tokens.
//!
//! ```text
//! cargo run --release -p hearth-sdk --features helpers --example sampler_speed
//! ```

use std::time::Instant;

use hearth_sdk::helpers::Sampler;
use hearth_sdk::{GenerateRequest, Sampling};

const STEPS: usize = 200;

/// A sampler with a repeat penalty over 64 seen tokens, all distinct.
fn sampler() -> Sampler {
    let request = GenerateRequest {
        sampling: Sampling { seed: 1, repeat_penalty: 1.1, ..Sampling::default() },
        ..GenerateRequest::default()
    };
    let mut sampler = Sampler::for_request(&request);
    (0..64).for_each(|token| sampler.accept(token * 31));
    sampler
}

/// Sample as before the selection: adjust, then sort every logit.
fn sample_sorting_everything(sampler: &mut Sampler, logits: &[f32]) -> u32 {
    let mut logits = logits.to_vec();
    sampler.adjustments().apply(&mut logits);
    let mut ranked: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .filter(|(_, logit)| !logit.is_nan())
        .map(|(token, &logit)| (token as u32, logit))
        .collect();
    ranked.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
    sampler.sample_candidates(&ranked)
}

/// Milliseconds a token over `STEPS` tokens, and the tokens drawn.
fn timed(mut sample: impl FnMut() -> u32) -> (f64, Vec<u32>) {
    let start = Instant::now();
    let tokens = (0..STEPS).map(|_| sample()).collect();
    (start.elapsed().as_secs_f64() * 1e3 / STEPS as f64, tokens)
}

fn main() {
    for vocab in [49_152usize, 128_256] {
        // Distinct logits (no ties for the two orders to break apart), spread over 16.
        let logits: Vec<f32> =
            (0..vocab).map(|i| ((i * 7919) % vocab) as f32 / vocab as f32 * 16.0 - 8.0).collect();
        let (mut selecting, mut sorting) = (sampler(), sampler());
        let (selected_ms, selected) = timed(|| selecting.sample(&logits));
        let (sorted_ms, sorted) = timed(|| sample_sorting_everything(&mut sorting, &logits));
        assert_eq!(selected, sorted, "both ways draw the same tokens");
        println!(
            "{vocab} logits: {selected_ms:.2} ms a token selecting the top-k, {sorted_ms:.2} ms \
             sorting every logit ({:.1}x)",
            sorted_ms / selected_ms
        );
    }
}
