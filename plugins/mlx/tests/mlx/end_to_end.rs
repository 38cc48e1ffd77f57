//! The plugin end to end on the real SmolLM2 model on MLX's default device (the CPU
//! here): chat answers, raw prompts, stop strings, cancellation, the prompt cache,
//! lifecycle, and use from several threads.

use hearth_mlx::model::MlxModel;
use hearth_sdk::{FinishReason, Model};

use crate::common::{chat, raw, smollm2_path, Collect};

#[test]
fn smollm2_answers_the_capital_of_france_with_paris() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = MlxModel::load(&smollm2_path(), 512).unwrap();
    let mut sink = Collect::default();
    let stats = model.generate(&chat("What is the capital of France?", 12), &mut sink).unwrap();
    let answer = sink.pieces.concat();
    println!("answer: {answer:?}");
    println!(
        "prompt: {} tokens in {:.0} ms; decode: {} tokens in {:.0} ms = {:.1} tok/s",
        stats.prompt_tokens,
        stats.prompt_ms,
        stats.completion_tokens,
        stats.decode_ms,
        stats.completion_tokens as f64 / (stats.decode_ms / 1e3)
    );
    assert!(answer.contains("Paris"), "answer was {answer:?}");
}

#[test]
fn raw_prompts_stop_strings_cancellation_and_trim_behave_as_the_sdk_says() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = MlxModel::load(&smollm2_path(), 256).unwrap();
    let prompt = "<|im_start|>user\nCount from 1 to 9, separated by commas.<|im_end|>\n<|im_start|>assistant\n";

    let mut sink = Collect::default();
    let stats = model.generate(&raw(prompt, 6, &[]), &mut sink).unwrap();
    let text = sink.pieces.concat();
    println!("raw: {text:?}");
    assert_eq!((stats.completion_tokens, stats.finish_reason), (6, FinishReason::Length));
    assert!(text.contains('1') && text.contains('2'), "{text:?}");

    // The same greedy request with a stop string cuts the same text before it.
    let mut stopped = Collect::default();
    let stats = model.generate(&raw(prompt, 6, &["2"]), &mut stopped).unwrap();
    assert_eq!(stats.finish_reason, FinishReason::Stop);
    assert_eq!(stopped.pieces.concat(), text[..text.find('2').unwrap()]);

    let mut cancelling = Collect { limit: Some(2), ..Collect::default() };
    let stats = model.generate(&raw(prompt, 6, &[]), &mut cancelling).unwrap();
    assert_eq!((stats.finish_reason, cancelling.pieces.len()), (FinishReason::Cancelled, 2));

    let loaded = model.memory().host_bytes;
    model.trim();
    let trimmed = model.memory().host_bytes;
    assert!(
        trimmed < loaded,
        "trim frees the KV cache and MLX's buffer cache: {loaded} -> {trimmed}"
    );
    let file = std::fs::metadata(smollm2_path()).unwrap().len();
    assert!(
        trimmed <= file * 13 / 10,
        "trimmed, the weights stay within 1.3x the file: {trimmed} vs {file}"
    );
    let mut again = Collect::default();
    model.generate(&raw(prompt, 6, &[]), &mut again).unwrap();
    assert_eq!(
        again.pieces.concat(),
        text,
        "a trimmed model rebuilds its cache and answers the same"
    );
}

#[test]
fn a_follow_up_prompt_reuses_the_cached_prefix_and_answers_as_a_fresh_model_would() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = MlxModel::load(&smollm2_path(), 256).unwrap();
    let first = "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n";
    let second = format!("{first}Blue.<|im_end|>\n<|im_start|>user\nName an animal.<|im_end|>\n<|im_start|>assistant\n");
    model.generate(&raw(first, 4, &[]), &mut Collect::default()).unwrap();
    let mut cached = Collect::default();
    let stats = model.generate(&raw(&second, 8, &[]), &mut cached).unwrap();

    let fresh_model = MlxModel::load(&smollm2_path(), 256).unwrap();
    let mut fresh = Collect::default();
    let fresh_stats = fresh_model.generate(&raw(&second, 8, &[]), &mut fresh).unwrap();
    println!(
        "cached prompt {:.0} ms, fresh {:.0} ms: {:?}",
        stats.prompt_ms,
        fresh_stats.prompt_ms,
        cached.pieces.concat()
    );
    assert_eq!(cached.pieces.concat(), fresh.pieces.concat());
}

#[test]
fn a_model_loaded_on_one_thread_generates_on_others() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = std::sync::Arc::new(MlxModel::load(&smollm2_path(), 256).unwrap());
    let answers: Vec<String> = (0..2)
        .map(|_| {
            let model = model.clone();
            std::thread::spawn(move || {
                let mut sink = Collect::default();
                model.generate(&chat("What is the capital of France?", 8), &mut sink).unwrap();
                sink.pieces.concat()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|handle| handle.join().unwrap())
        .collect();
    assert_eq!(answers[0], answers[1]);
    assert!(answers[0].contains("Paris"), "{answers:?}");
}
