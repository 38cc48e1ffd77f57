//! The built shared library, loaded the way the host loads plugins, answers through
//! the stable ABI.

use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};

use hearth_sdk::abi::PluginModuleRef;
use hearth_sdk::abi_stable::library::lib_header_from_path;
use hearth_sdk::abi_stable::std_types::RString;
use hearth_sdk::{FinishReason, GenerateRequest, SinkControl, TokenLogprobs, TokenSink};

use crate::common::{chat, load_request, model_path, SMOLLM2};

#[derive(Default)]
struct Collect {
    text: String,
    logprobs: Vec<TokenLogprobs>,
}

impl TokenSink for Collect {
    fn on_token(&mut self, piece: &str) -> SinkControl {
        self.text.push_str(piece);
        SinkControl::Continue
    }

    fn on_logprobs(&mut self, logprobs: &TokenLogprobs) {
        self.logprobs.push(logprobs.clone());
    }
}

#[test]
fn the_shared_library_answers_through_the_stable_abi() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    // Cargo builds the cdylib beside the test binary's `deps` folder.
    let exe = std::env::current_exe().unwrap();
    let name = format!("{DLL_PREFIX}hearth_llamacpp{DLL_SUFFIX}");
    let library = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(library.is_file(), "{} was not built", library.display());
    let module = lib_header_from_path(&library)
        .and_then(hearth_sdk::abi_stable::library::LibHeader::init_root_module::<PluginModuleRef>)
        .unwrap_or_else(|error| panic!("{}: {error}", library.display()));
    let backend = (module.new_backend())().unwrap();
    assert_eq!(backend.info().unwrap().id, RString::from("llamacpp"));
    let path = model_path(SMOLLM2);
    let model = backend.load(load_request(path.to_str().unwrap(), 256).view()).unwrap();
    let mut sink = Collect::default();
    let request = GenerateRequest {
        logprobs: Some(2).into(),
        ..chat("What is the capital of France? Answer in one word.", 16)
    };
    let stats = hearth_sdk::abi::generate(&model, &request, &mut sink).unwrap();
    assert!(sink.text.contains("Paris"), "{:?}", sink.text);
    assert_ne!(stats.finish_reason, FinishReason::Cancelled);
    // The request's 2.1 field crossed as a view method, the answer as a sink method.
    assert_eq!(sink.logprobs.len(), stats.completion_tokens as usize);
    for entry in &sink.logprobs {
        assert_eq!(entry.top.len(), 2);
        assert_eq!(entry.chosen.token, entry.top[0].token, "greedy takes the likeliest");
        assert!(entry.chosen.logprob <= 0.0 && entry.top[1].logprob <= entry.top[0].logprob);
    }
}
