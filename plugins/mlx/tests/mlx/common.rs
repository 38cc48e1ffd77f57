//! What the integration tests share: finding the test models, requests, and a sink
//! that collects.

use std::path::PathBuf;

use hearth_sdk::abi_stable::std_types::{ROption, RVec};
use hearth_sdk::{ChatMessage, GenerateRequest, Sampling, SinkControl, TokenSink};

/// A test model under `HEARTH_TEST_MODELS`; a missing setting or file fails the test
/// with a message saying what to set, instead of skipping it.
pub fn model_path(relative: &str) -> String {
    let root = std::env::var("HEARTH_TEST_MODELS")
        .expect("HEARTH_TEST_MODELS must point at the test models folder (<model-id>/<file>)");
    let path = PathBuf::from(root).join(relative);
    assert!(path.is_file(), "test model missing: {}", path.display());
    path.to_string_lossy().into_owned()
}

pub fn smollm2_path() -> String {
    model_path("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf")
}

pub fn greedy() -> Sampling {
    Sampling { temperature: 0.0, ..Sampling::default() }
}

pub fn chat(question: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        messages: RVec::from(vec![ChatMessage { role: "user".into(), content: question.into() }]),
        prompt: ROption::RNone,
        sampling: greedy(),
        stop: RVec::new(),
        max_tokens,
        adapters: RVec::new(),
    }
}

pub fn raw(prompt: &str, max_tokens: u32, stop: &[&str]) -> GenerateRequest {
    GenerateRequest {
        messages: RVec::new(),
        prompt: ROption::RSome(prompt.into()),
        sampling: greedy(),
        stop: stop.iter().map(|s| (*s).into()).collect(),
        max_tokens,
        adapters: RVec::new(),
    }
}

/// Collects pieces; asks to stop after `limit` pieces when set.
#[derive(Default)]
pub struct Collect {
    pub pieces: Vec<String>,
    pub limit: Option<usize>,
}

impl TokenSink for Collect {
    fn on_token(&mut self, piece: &str) -> SinkControl {
        self.pieces.push(piece.to_string());
        if self.limit.is_some_and(|limit| self.pieces.len() >= limit) {
            SinkControl::Stop
        } else {
            SinkControl::Continue
        }
    }
}
