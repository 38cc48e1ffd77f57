//! The built `hearth` binary as a child process: a listing whose reader goes away.
//! (The server as a child process is `support::server`, shared with the models tests.)

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use crate::helpers::built_binary;

#[test]
fn a_listing_piped_into_a_reader_that_has_gone_ends_quietly_instead_of_panicking() {
    let home = crate::helpers::fixture_home(&["hearth_fixture_plugin"], "2m", "5m");
    let mut child = Command::new(built_binary())
        .arg("--home")
        .arg(home.path())
        .arg("models")
        .env_remove("HEARTH_CATALOG")
        .env_remove("HEARTH_PLUGINS")
        .env_remove("HEARTH_MODELS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hearth models");
    // The reader goes before the listing is written, as `head` does once it has enough.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    const SIGPIPE: i32 = 13;
    assert!(
        output.status.success() || output.status.signal() == Some(SIGPIPE),
        "{:?}: {stderr}",
        output.status
    );
}
