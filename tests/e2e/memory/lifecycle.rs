//! Soft and hard unload with the real llama.cpp plugin, and memory coming back.

use std::time::Duration;

use hearth::lifecycle::ModelState;
use tokio::sync::mpsc;

use crate::helpers::{question, resident_bytes, RealHost, ALONE};

async fn ask(hearth: &hearth::service::Hearth) -> String {
    let (tokens, mut pieces) = mpsc::unbounded_channel();
    hearth.generate(question(), tokens).await.unwrap();
    let mut text = String::new();
    while let Ok(piece) = pieces.try_recv() {
        text.push_str(&piece.text);
    }
    text
}

fn state(hearth: &hearth::service::Hearth) -> Option<ModelState> {
    hearth.loaded_models().first().map(|model| model.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trim_and_unload_release_memory_and_the_next_request_reloads_transparently() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let _alone = ALONE.lock().await;
    let host = RealHost::llamacpp();
    let hearth = host.open_with_idle("1s", "4s");
    let before_load = resident_bytes();
    let first = ask(&hearth).await;
    assert!(first.contains("Paris"), "{first}");
    let loaded = hearth.loaded_models()[0].memory.host_bytes;
    assert!(loaded > 50_000_000, "the plugin reports the weights it holds: {loaded}");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(state(&hearth), Some(ModelState::Trimmed), "trimmed after the soft timeout");
    assert!(hearth.loaded_models()[0].memory.host_bytes < loaded, "trim released the context");
    assert_eq!(ask(&hearth).await, first, "after a trim the same request gives the same answer");

    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(state(&hearth), None, "unloaded after the hard timeout");
    let after_unload = resident_bytes();
    assert!(
        after_unload < before_load + 16 * 1024 * 1024,
        "resident memory after unload {after_unload} vs before load {before_load}"
    );
    assert_eq!(ask(&hearth).await, first, "after an unload the next request reloads the model");
}
