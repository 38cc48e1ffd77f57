//! The built shared library, loaded the way the host loads plugins, answers through
//! the stable ABI.

use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};

use hearth_sdk::abi::{AbiTokenSink, AbiTokenSink_TO, PluginModuleRef};
use hearth_sdk::abi_stable::library::lib_header_from_path;
use hearth_sdk::abi_stable::sabi_trait::TD_Opaque;
use hearth_sdk::abi_stable::std_types::{RStr, RString};
use hearth_sdk::{FinishReason, SinkControl};

use crate::common::{chat, load_request, model_path, SMOLLM2};

#[derive(Default)]
struct Collect(String);

impl AbiTokenSink for Collect {
    fn on_token(&mut self, piece: RStr<'_>) -> SinkControl {
        self.0.push_str(piece.as_str());
        SinkControl::Continue
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
    let stats = model
        .generate(
            chat("What is the capital of France? Answer in one word.", 16).view(),
            AbiTokenSink_TO::from_ptr(&mut sink, TD_Opaque),
        )
        .unwrap();
    assert!(sink.0.contains("Paris"), "{:?}", sink.0);
    assert_ne!(stats.finish_reason, FinishReason::Cancelled);
}
