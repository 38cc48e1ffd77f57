//! The test models (installed by `scripts/setup.sh`, found through
//! `HEARTH_TEST_MODELS`) and the repository's trained LoRA adapter. A missing setting or
//! file fails the test with what to set, instead of skipping it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hearth_sdk::helpers::Gguf;

/// `relative` (`<model-id>/<file>`) under `HEARTH_TEST_MODELS`.
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

/// Gemma 3 270M in Q4_K_M (Q4_K, Q5_0, Q6_K and Q8_0 tensors), a base model without a
/// chat template: GELU, sandwich norms, sliding-window layers, a SentencePiece vocabulary.
pub fn gemma3_path() -> String {
    model_path("gemma3-270m/gemma-3-270m-q4_k_m.gguf")
}

/// SmolLM2 with its weights expanded from Q4_1 to F16 ([`crate::gguf_copy`]), written
/// once into the temp folder (about 270 MB) and reused while the source is unchanged.
pub fn smollm2_f16_path() -> String {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let source = smollm2_path();
        let size = std::fs::metadata(&source).expect("the test model").len();
        let folder = std::env::temp_dir().join("hearth-test-fixtures");
        std::fs::create_dir_all(&folder).expect("a folder for test fixtures");
        let out = folder.join(format!("smollm2-135m-f16-from-{size}.gguf"));
        if !out.is_file() {
            let gguf = Gguf::open(&source).expect("the test model opens");
            crate::gguf_copy::write_f16_copy(&gguf, &out).expect("the F16 copy is written");
        }
        out.to_string_lossy().into_owned()
    })
    .clone()
}

/// A copy of the model at `source` that names `pooling` as its `<arch>.pooling_type`
/// ([`crate::gguf_copy::write_pooled_copy`]), written once into the temp folder and
/// reused while the source is unchanged.
pub fn pooled_copy(source: &str, pooling: u32) -> String {
    let size = std::fs::metadata(source).expect("the test model").len();
    let stem = Path::new(source).file_stem().expect("a model file").to_string_lossy();
    let folder = std::env::temp_dir().join("hearth-test-fixtures");
    std::fs::create_dir_all(&folder).expect("a folder for test fixtures");
    let out = folder.join(format!("{stem}-pooling-{pooling}-from-{size}.gguf"));
    if !out.is_file() {
        let gguf = Gguf::open(source).expect("the test model opens");
        crate::gguf_copy::write_pooled_copy(&gguf, &out, pooling)
            .expect("the pooled copy is written");
    }
    out.to_string_lossy().into_owned()
}

/// The adapter scripts/train_adapter.py trained: SmolLM2 ends every answer with
/// [`SIGN_OFF`]. Setup installs it from tests/data into the store beside the models;
/// it is found there at run time, not through a source path compiled in, which a test
/// binary built in another checkout would carry.
pub fn signoff_adapter() -> String {
    model_path("adapters/smollm2-signoff/smollm2-signoff-lora-f16.gguf")
}

/// What the trained adapter makes SmolLM2 end its answers with.
pub const SIGN_OFF: &str = "Arr, matey!";
