//! Greedy requests and a sink that collects what a backend streams, as every backend's
//! tests make them.

use hearth_sdk::abi_stable::std_types::{ROption, RVec};
use hearth_sdk::{ChatMessage, GenerateRequest, Sampling, SinkControl, TokenSink};

pub fn greedy() -> Sampling {
    Sampling { temperature: 0.0, ..Sampling::default() }
}

/// A greedy chat of one user message, for `max_tokens` tokens.
pub fn chat(question: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        messages: RVec::from(vec![ChatMessage { role: "user".into(), content: question.into() }]),
        sampling: greedy(),
        max_tokens,
        ..GenerateRequest::default()
    }
}

/// A greedy completion of the raw `prompt`, for `max_tokens` tokens, cut at `stop`.
pub fn raw(prompt: &str, max_tokens: u32, stop: &[&str]) -> GenerateRequest {
    GenerateRequest {
        prompt: ROption::RSome(prompt.into()),
        sampling: greedy(),
        stop: stop.iter().map(|s| (*s).into()).collect(),
        max_tokens,
        ..GenerateRequest::default()
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
