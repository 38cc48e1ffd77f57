//! What a generation produces: answers, determinism, limits, stop strings, cancelling.

use hearth_sdk::abi_stable::std_types::{RString, RVec};
use hearth_sdk::{FinishReason, Sampling};

use crate::common::{chat, load, raw, run, Recorder, GEMMA3, SMOLLM2};

#[test]
fn a_greedy_answer_to_the_capital_of_france_names_paris() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = load(SMOLLM2, 512);
    let (text, stats) =
        run(&*model, &chat("What is the capital of France? Answer in one word.", 24)).unwrap();
    assert!(text.contains("Paris"), "answer: {text:?}");
    assert!(stats.prompt_tokens > 5, "{stats:?}");
    assert!(stats.completion_tokens > 0 && stats.completion_tokens <= 24, "{stats:?}");
    assert!(stats.prompt_ms > 0.0 && stats.decode_ms > 0.0, "{stats:?}");
}

#[test]
fn gemma_3_completes_a_raw_prompt_and_chats_without_a_template_in_its_gguf() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    // The packaged Gemma 3 270M is the base model: its GGUF carries no chat template.
    let model = load(GEMMA3, 512);
    let (text, _) =
        run(&*model, &raw("Question: What is the capital of France?\nAnswer:", 4)).unwrap();
    assert!(text.contains("Paris"), "completion: {text:?}");
    let (text, stats) = run(&*model, &chat("Hello! Who are you?", 8)).unwrap();
    assert!(!text.contains("<start_of_turn>") && !text.contains("<end_of_turn>"), "{text:?}");
    assert!(stats.completion_tokens > 0, "{stats:?}");
}

#[test]
fn the_same_seed_gives_the_same_text_and_another_seed_may_not() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = load(SMOLLM2, 512);
    let mut request = raw("Once upon a time, in a land far away,", 24);
    request.sampling = Sampling { temperature: 1.0, seed: 42, ..Sampling::default() };
    let (first, _) = run(&*model, &request).unwrap();
    let (second, _) = run(&*model, &request).unwrap();
    assert_eq!(first, second);
    let texts: Vec<String> = (1..4)
        .map(|seed| {
            request.sampling.seed = seed;
            run(&*model, &request).unwrap().0
        })
        .collect();
    assert!(texts.iter().any(|text| *text != first), "every seed gave {first:?}");
}

#[test]
fn max_tokens_is_respected_with_finish_reason_length() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = load(SMOLLM2, 512);
    let (text, stats) = run(&*model, &raw("The list of numbers: 1, 2, 3, 4,", 5)).unwrap();
    assert_eq!(stats.completion_tokens, 5, "{text:?}");
    assert_eq!(stats.finish_reason, FinishReason::Length);
}

#[test]
fn a_stop_string_ends_generation_and_is_not_emitted() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = load(SMOLLM2, 512);
    let mut request = raw("The list of numbers: 1, 2, 3, 4,", 16);
    let (free, _) = run(&*model, &request).unwrap();
    // A stop string taken from the middle of the free answer must cut it right there.
    let stop = free
        .trim()
        .split(' ')
        .nth(2)
        .unwrap_or_else(|| panic!("short answer {free:?}"))
        .to_string();
    let expected = &free[..free.find(&stop).unwrap()];
    request.stop = RVec::from(vec![RString::from(stop.clone())]);
    let (text, stats) = run(&*model, &request).unwrap();
    assert_eq!(text, expected, "stop {stop:?} in {free:?}");
    assert!(!text.contains(&stop));
    assert_eq!(stats.finish_reason, FinishReason::Stop);
}

#[test]
fn cancelling_through_the_sink_stops_within_one_token() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = load(SMOLLM2, 512);
    let mut recorder = Recorder { stop_after: Some(1), ..Recorder::default() };
    let stats =
        model.generate(&chat("Write a long story about a dragon.", 64), &mut recorder).unwrap();
    assert_eq!(recorder.pieces.len(), 1, "{stats:?}");
    assert_eq!(stats.finish_reason, FinishReason::Cancelled);
    // The piece that was refused may have needed a second token to become whole text.
    assert!(stats.completion_tokens <= 2, "{stats:?}");
}

#[test]
fn a_full_context_ends_generation_with_finish_reason_length() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = load(SMOLLM2, 48);
    let (_, stats) = run(&*model, &raw("Count: 1 2 3 4 5 6 7 8 9 10", 0)).unwrap();
    assert_eq!(stats.finish_reason, FinishReason::Length);
    assert_eq!(stats.prompt_tokens + stats.completion_tokens, 48, "{stats:?}");
}

#[test]
fn generations_from_several_threads_all_complete_and_agree() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = load(SMOLLM2, 512);
    let request = chat("What is the capital of France?", 12);
    let texts: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            (0..3).map(|_| scope.spawn(|| run(&*model, &request).unwrap().0)).collect();
        handles.into_iter().map(|handle| handle.join().unwrap()).collect()
    });
    assert!(texts.iter().all(|text| *text == texts[0] && !text.is_empty()), "{texts:?}");
}

#[test]
fn a_repeat_penalty_steers_greedy_decoding_away_from_repeating() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = load(SMOLLM2, 256);
    let mut request = raw("1, 1, 1, 1, 1, 1, 1, 1,", 6);
    let (plain, _) = run(&*model, &request).unwrap();
    request.sampling.repeat_penalty = 3.0;
    let (penalised, _) = run(&*model, &request).unwrap();
    assert_ne!(plain, penalised);
    assert!(
        penalised.matches('1').count() < plain.matches('1').count(),
        "{plain:?} vs {penalised:?}"
    );
}

#[test]
fn multi_byte_characters_split_across_tokens_arrive_whole() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    // SmolLM2 spells most CJK characters and emoji as several byte tokens.
    let model = load(SMOLLM2, 256);
    let mut recorder = Recorder::default();
    let request = raw("Japanese greetings: こんにちは、おはよう、こんばんは、", 16);
    let stats = model.generate(&request, &mut recorder).unwrap();
    let text = recorder.text();
    assert!(!text.is_ascii(), "no multi-byte output to check: {text:?}");
    assert!(!text.contains('\u{fffd}'), "{text:?}");
    assert!(
        (recorder.pieces.len() as u32) < stats.completion_tokens,
        "some tokens should have been partial characters: {:?}",
        recorder.pieces
    );
}
