//! The conformance suite on the CPU reference itself: every architecture in every GGUF
//! type within llama.cpp's rounding of llama.cpp, with llama.cpp's greedy token. The
//! engines' suites check the same of the reference on the cells they run; this one
//! covers every cell, those an engine cannot run (yet) included.

use hearth_backend_check::conformance::check_every_cell;
use hearth_sdk::helpers::Gguf;
use hearth_sdk::PluginError;

#[test]
fn the_cpu_reference_agrees_with_llama_cpp_on_every_architecture_in_every_gguf_type() {
    let Some(models) = hearth_sdk::testing::real_models() else {
        return;
    };
    check_every_cell(&models, "reference", &[], |path, tokens| {
        let gguf = Gguf::open(path).map_err(|e| PluginError::model_file(e.to_string()))?;
        hearth_model::reference::forward(&gguf, tokens, None)
    });
}
