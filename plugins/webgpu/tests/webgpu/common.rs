//! What the integration tests share: the test model, and a sink that collects.

use hearth_sdk::{SinkControl, TokenSink};

pub use hearth_backend_check::fixtures::smollm2_path;

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
