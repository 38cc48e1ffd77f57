//! The llama.cpp plugin, the correctness reference, loaded as the host loads it: its
//! shared library through the ABI. (Linking its rlib beside this crate's is not
//! possible: each plugin crate exports the same abi_stable root-module symbol.)

use std::path::PathBuf;

use hearth_sdk::abi::{AbiTokenSink, AbiTokenSink_TO, ModelBox, PluginModuleRef};
use hearth_sdk::abi_stable::library::lib_header_from_path;
use hearth_sdk::abi_stable::sabi_trait::TD_Opaque;
use hearth_sdk::abi_stable::std_types::{ROption, RStr, RVec};
use hearth_sdk::{GenerateRequest, GenerateStats, LoadRequest, MemoryUsage, Model, PluginError, SinkControl, TokenSink};

/// Lends a sink to the plugin for one generation.
struct SinkBridge<'a>(&'a mut dyn TokenSink);

impl AbiTokenSink for SinkBridge<'_> {
    fn on_token(&mut self, piece: RStr<'_>) -> SinkControl {
        self.0.on_token(piece.as_str())
    }
}

/// A model loaded by the llama.cpp plugin.
pub struct LlamaCpp(ModelBox);

impl Model for LlamaCpp {
    fn generate(&self, request: &GenerateRequest, sink: &mut dyn TokenSink) -> Result<GenerateStats, PluginError> {
        let mut bridge = SinkBridge(sink);
        self.0.generate(request, AbiTokenSink_TO::from_ptr(&mut bridge, TD_Opaque)).into_result()
    }
    fn trim(&self) {
        self.0.trim().into_result().unwrap();
    }
    fn memory(&self) -> MemoryUsage {
        self.0.memory().into_result().unwrap()
    }
}

/// Load `path` with the llama.cpp plugin found in `HEARTH_TEST_PLUGINS` (failing the
/// test, with what to set, when it is not there).
pub fn load(path: &str) -> LlamaCpp {
    let folder = std::env::var("HEARTH_TEST_PLUGINS")
        .expect("HEARTH_TEST_PLUGINS must name a folder holding libhearth_llamacpp.so, the reference backend");
    let library = PathBuf::from(folder).join(format!("libhearth_llamacpp.{}", std::env::consts::DLL_EXTENSION));
    assert!(library.is_file(), "reference plugin missing: {}", library.display());
    let module = lib_header_from_path(&library).unwrap().init_root_module::<PluginModuleRef>().unwrap();
    let backend = module.new_backend()().into_result().unwrap();
    let request = LoadRequest {
        model_id: "smollm2-135m".into(),
        paths: RVec::from(vec![path.into()]),
        format: "gguf".into(),
        context_size: 256,
        threads: 2,
        device: ROption::RNone,
    };
    let model = backend.load(&request).into_result().unwrap();
    // The backend object must outlive its models; the test process ends soon anyway.
    std::mem::forget(backend);
    LlamaCpp(model)
}
