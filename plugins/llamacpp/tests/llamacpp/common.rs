//! What the integration tests share: finding the test models, loading one, and a
//! token sink that records what it was sent.

use std::path::PathBuf;

use hearth_llamacpp::LlamaCppBackend;
use hearth_sdk::abi_stable::std_types::{ROption, RString, RVec};
use hearth_sdk::{
    Backend, ChatMessage, GenerateRequest, GenerateStats, LoadRequest, Model, PluginError,
    Sampling, SinkControl, TokenSink,
};

/// The development model, as the setup script lays it out.
pub const SMOLLM2: (&str, &str) = ("smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf");
/// Gemma 3 270M: another architecture, tokenizer and chat template.
pub const GEMMA3: (&str, &str) = ("gemma3-270m", "gemma-3-270m-q4_k_m.gguf");

/// The path of a test model under `$HEARTH_TEST_MODELS`. Panics with the fix when the
/// models are not there: a skipped test would pass without testing anything.
pub fn model_path((id, file): (&str, &str)) -> PathBuf {
    let Some(root) = std::env::var_os("HEARTH_TEST_MODELS") else {
        panic!(
            "HEARTH_TEST_MODELS is not set. Run the setup script to fetch the test models, then set \
             HEARTH_TEST_MODELS to its models folder (laid out as <model-id>/<file>)"
        );
    };
    let path = PathBuf::from(root).join(id).join(file);
    assert!(
        path.is_file(),
        "test model {} is missing. Run the setup script to fetch the test models into $HEARTH_TEST_MODELS",
        path.display()
    );
    path
}

pub fn load_request(path: &str, context_size: u32) -> LoadRequest {
    LoadRequest {
        model_id: "test-model".into(),
        paths: RVec::from(vec![RString::from(path)]),
        format: "gguf".into(),
        context_size,
        threads: 2,
        device: ROption::RNone,
        ..Default::default()
    }
}

/// Load a model on the CPU with a small context, keeping the tests quick.
pub fn load(spec: (&str, &str), context_size: u32) -> Box<dyn Model> {
    let path = model_path(spec);
    let backend = LlamaCppBackend::new().expect("backend starts");
    backend.load(&load_request(path.to_str().unwrap(), context_size)).expect("model loads")
}

pub fn greedy() -> Sampling {
    Sampling { temperature: 0.0, ..Sampling::default() }
}

pub fn chat(text: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        messages: RVec::from(vec![ChatMessage { role: "user".into(), content: text.into() }]),
        prompt: ROption::RNone,
        sampling: greedy(),
        stop: RVec::new(),
        max_tokens,
        adapters: RVec::new(),
        ..GenerateRequest::default()
    }
}

pub fn raw(prompt: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest { prompt: ROption::RSome(prompt.into()), ..chat("", max_tokens) }
}

/// Records every piece; asks to stop after `stop_after` pieces when set.
#[derive(Default)]
pub struct Recorder {
    pub pieces: Vec<String>,
    pub stop_after: Option<usize>,
}

impl Recorder {
    pub fn text(&self) -> String {
        self.pieces.concat()
    }
}

impl TokenSink for Recorder {
    fn on_token(&mut self, piece: &str) -> SinkControl {
        self.pieces.push(piece.to_string());
        match self.stop_after {
            Some(limit) if self.pieces.len() >= limit => SinkControl::Stop,
            _ => SinkControl::Continue,
        }
    }
}

/// Generate, returning the streamed text with the stats.
pub fn run(
    model: &dyn Model,
    request: &GenerateRequest,
) -> Result<(String, GenerateStats), PluginError> {
    let mut recorder = Recorder::default();
    let stats = model.generate(request, &mut recorder)?;
    Ok((recorder.text(), stats))
}
