//! The idle lifecycle with a real plugin on tokio's paused clock.

use std::time::Duration;

use hearth::lifecycle::ModelState;

use crate::generate::{chat, collect};
use crate::helpers::TestHost;

fn state_of(host: &TestHost, model: &str) -> Option<ModelState> {
    host.hearth
        .loaded_models()
        .into_iter()
        .find(|loaded| loaded.key.model_id == model)
        .map(|loaded| loaded.state)
}

/// Let blocking trims and drops finish; the paused clock does not move meanwhile
/// because nothing sleeps.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[tokio::test(start_paused = true)]
async fn a_model_is_trimmed_at_two_minutes_unloaded_at_five_and_reloads_on_the_next_request() {
    let host = TestHost::new();
    collect(&host, chat("echo", "one two", 4)).await.unwrap();
    settle().await;
    assert_eq!(state_of(&host, "echo"), Some(ModelState::Ready));
    let loaded_bytes = host.hearth.loaded_models()[0].memory.host_bytes;

    tokio::time::sleep(Duration::from_secs(119)).await;
    settle().await;
    assert_eq!(state_of(&host, "echo"), Some(ModelState::Ready));
    tokio::time::sleep(Duration::from_secs(2)).await;
    settle().await;
    assert_eq!(state_of(&host, "echo"), Some(ModelState::Trimmed));
    assert!(
        host.hearth.loaded_models()[0].memory.host_bytes < loaded_bytes,
        "trim released the cache"
    );

    tokio::time::sleep(Duration::from_secs(180)).await;
    settle().await;
    assert_eq!(state_of(&host, "echo"), None, "unloaded after five idle minutes");

    let text = collect(&host, chat("echo", "one two", 4)).await.unwrap();
    assert_eq!(text, "two one two one ");
    assert_eq!(state_of(&host, "echo"), Some(ModelState::Ready));
}

#[tokio::test(start_paused = true)]
async fn the_hard_timeout_never_fires_while_a_request_is_in_flight() {
    let host = TestHost::new();
    let generation = chat("slow", "a b c", 200);
    // The slow model takes 200 × 20 ms of real time; hold it while the clock jumps.
    let prepared = host.hearth.prepare(generation).await.unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    settle().await;
    assert_eq!(state_of(&host, "slow"), Some(ModelState::Busy));
    drop(prepared);
    settle().await;
    assert_eq!(state_of(&host, "slow"), Some(ModelState::Ready));
}
