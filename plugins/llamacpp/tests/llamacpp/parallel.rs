//! Several generations of one model at once (`HEARTH_LLAMACPP_PARALLEL`): they share
//! one batch per step, each keeps to its own answer, one can be cancelled alone, and a
//! bad setting is refused. Each test runs in a child process of this test binary with
//! the variable set, so it never reaches the other tests, which rely on the default
//! (one at a time, the same request always giving the same answer).

use hearth_llamacpp::LlamaCppBackend;
use hearth_sdk::{Backend, FinishReason, GenerateRequest, Model};

use crate::common::{chat, load, load_request, model_path, run, Recorder, SMOLLM2};

/// Run `child` (an ignored test of this module) in a child process with
/// `HEARTH_LLAMACPP_PARALLEL=parallel`, and fail with its output if it fails.
fn in_a_child(child: &str, parallel: &str) {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &format!("parallel::{child}"), "--ignored", "--nocapture"])
        .env("HEARTH_LLAMACPP_PARALLEL", parallel)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{child}:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("1 passed"), "{child} did not run");
}

/// Run `requests` at once, each on a thread of its own; their texts in order.
fn all_at_once(model: &dyn Model, requests: &[GenerateRequest]) -> Vec<String> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .map(|request| scope.spawn(move || run(model, request).unwrap().0))
            .collect();
        handles.into_iter().map(|handle| handle.join().unwrap()).collect()
    })
}

/// The first characters of an answer, as many as [`AGREEING_CHARS`]. Where its cells
/// sit in the shared cache changes the rounding of attention, so an answer given beside
/// others may leave the one given alone where two tokens nearly tie (seen: two of ten,
/// after eight to a dozen tokens — "la femme au" against "la femme," — as with
/// llama-server); an answer that read another sequence's cache or got its tokens differs
/// from its first token.
fn opening(text: &str) -> String {
    text.chars().take(AGREEING_CHARS).collect()
}

/// About five tokens: where answers to different questions have parted.
const AGREEING_CHARS: usize = 20;

#[test]
fn ten_generations_at_once_on_eight_sequences_each_give_their_own_answer() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    in_a_child("ten_at_once", "8");
}

#[test]
#[ignore = "run by the test above in a child process with HEARTH_LLAMACPP_PARALLEL=8"]
fn ten_at_once() {
    let model = load(SMOLLM2, 1024);
    let requests: Vec<GenerateRequest> = [
        "What is the capital of France?",
        "Name three colours.",
        "What is two plus two?",
        "Say hello in Spanish.",
        "What is the largest planet?",
        "Name a famous painter.",
        "What do bees make?",
        "Name a fruit that is yellow.",
        "What is the opposite of cold?",
        "How many legs does a spider have?",
    ]
    .iter()
    .map(|question| chat(question, 16))
    .collect();
    let alone: Vec<String> =
        requests.iter().map(|request| run(&*model, request).unwrap().0).collect();
    // Ten requests for eight sequences: two wait for one to free up.
    let together = all_at_once(&*model, &requests);
    for (alone, together) in alone.iter().zip(&together) {
        assert_eq!(opening(together), opening(alone), "alone: {alone:?}, together: {together:?}");
    }
}

#[test]
fn cancelling_one_of_several_generations_at_once_leaves_the_others_to_finish() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    in_a_child("cancel_one", "4");
}

#[test]
#[ignore = "run by the test above in a child process with HEARTH_LLAMACPP_PARALLEL=4"]
fn cancel_one() {
    let model = load(SMOLLM2, 1024);
    let long = chat("Write a long story about a dragon.", 48);
    let (expected, _) = run(&*model, &long).unwrap();
    std::thread::scope(|scope| {
        let cancelled = scope.spawn(|| {
            let mut recorder = Recorder { stop_after: Some(2), ..Recorder::default() };
            model.generate(&long, &mut recorder).unwrap()
        });
        let others: Vec<_> = (0..2).map(|_| scope.spawn(|| run(&*model, &long).unwrap())).collect();
        assert_eq!(cancelled.join().unwrap().finish_reason, FinishReason::Cancelled);
        for other in others {
            let (text, stats) = other.join().unwrap();
            assert_eq!(opening(&text), opening(&expected));
            assert_eq!(stats.completion_tokens, 48);
        }
    });
}

#[test]
fn an_unusable_parallel_setting_is_refused_at_load_naming_the_variable() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    in_a_child("bad_setting", "0");
}

#[test]
#[ignore = "run by the test above in a child process with HEARTH_LLAMACPP_PARALLEL=0"]
fn bad_setting() {
    let path = model_path(SMOLLM2);
    let error = LlamaCppBackend::new()
        .unwrap()
        .load(&load_request(path.to_str().unwrap(), 256))
        .err()
        .expect("the load is refused");
    assert!(error.message.contains("HEARTH_LLAMACPP_PARALLEL=\"0\""), "{error}");
}
