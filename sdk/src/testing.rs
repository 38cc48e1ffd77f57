//! The test tiers, for hearth's suites and a plugin's own: tests that need the real
//! models run where `HEARTH_TEST_MODELS` names them (`scripts/test.sh` installs them and
//! always sets it, so a missing model fails there), and are skipped, each saying so, in
//! a plain `cargo test`: the quick, model-free tier of unit and fixture-plugin tests.

use std::io::Write;
use std::path::PathBuf;

/// The folder of the real models (`<model-id>/<file>` below it) from
/// `HEARTH_TEST_MODELS`; `None` in the model-free tier, after writing which test is
/// skipped to stderr past the test harness's capture, so the run lists what it did not
/// test. A test that needs the models starts with
/// `let Some(models) = real_models() else { return };`.
pub fn real_models() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("HEARTH_TEST_MODELS") {
        return Some(PathBuf::from(dir));
    }
    // The harness runs each test on a thread named after it.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: it needs the real models (set HEARTH_TEST_MODELS, as scripts/test.sh does)"
    );
    None
}

/// A valid GGUF of `architecture` holding one zeroed tensor `blk.0.ffn_down.weight` of
/// 256 × 1 elements of the ggml type `type_id`, whose 256 elements take `block_bytes`:
/// structurally fine, for testing how a file is refused for what it holds.
pub fn one_tensor_gguf(architecture: &str, type_id: u32, block_bytes: usize) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(1u64.to_le_bytes());
    out.extend(1u64.to_le_bytes());
    let key = "general.architecture";
    out.extend((key.len() as u64).to_le_bytes());
    out.extend(key.as_bytes());
    out.extend(8u32.to_le_bytes());
    out.extend((architecture.len() as u64).to_le_bytes());
    out.extend(architecture.as_bytes());
    let name = "blk.0.ffn_down.weight";
    out.extend((name.len() as u64).to_le_bytes());
    out.extend(name.as_bytes());
    out.extend(2u32.to_le_bytes());
    out.extend(256u64.to_le_bytes());
    out.extend(1u64.to_le_bytes());
    out.extend(type_id.to_le_bytes());
    out.extend(0u64.to_le_bytes());
    out.resize(out.len().next_multiple_of(32) + block_bytes, 0);
    out
}
