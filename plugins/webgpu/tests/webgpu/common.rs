//! What the integration tests share: finding the test model, and a sink that collects.

use std::path::PathBuf;

use hearth_sdk::{SinkControl, TokenSink};

/// The SmolLM2 test model under `HEARTH_TEST_MODELS`; a missing setting or file fails
/// the test with a message saying what to set, instead of skipping it.
pub fn smollm2_path() -> String {
    let root = std::env::var("HEARTH_TEST_MODELS")
        .expect("HEARTH_TEST_MODELS must point at the test models folder (<model-id>/<file>)");
    let path = PathBuf::from(root).join("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.is_file(), "test model missing: {}", path.display());
    path.to_string_lossy().into_owned()
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
