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
