use serde_json::json;

use super::options::Options;
use super::*;

fn options(value: Value) -> Options {
    serde_json::from_value(value).unwrap()
}

fn applied(value: Value, context_window: u32) -> Result<CommonParams, ApiError> {
    let mut params = CommonParams::default();
    options(value).apply(&mut params, context_window).map(|()| params)
}

#[test]
fn options_map_onto_the_shared_parameters() {
    let params = applied(
        json!({ "temperature": 0.2, "top_k": 5, "top_p": 0.5, "min_p": 0.1, "seed": 9,
                "num_predict": 7, "stop": ["\n"], "repeat_penalty": 1.1, "repeat_last_n": 32 }),
        2048,
    )
    .unwrap();
    let sampling = params.sampling().unwrap();
    assert_eq!(sampling.temperature, 0.2);
    assert_eq!(sampling.top_k, 5);
    assert_eq!(sampling.min_p, 0.1);
    assert_eq!(sampling.seed, 9);
    assert_eq!(sampling.repeat_last_n, 32);
    assert_eq!(params.max_tokens().unwrap(), 7);
    assert_eq!(params.stop().unwrap().len(), 1);
}

#[test]
fn num_predict_minus_one_asks_for_as_many_tokens_as_hearth_allows() {
    let params = applied(json!({ "num_predict": -1 }), 0).unwrap();
    assert_eq!(params.max_tokens().unwrap(), crate::api::params::MAX_TOKENS_LIMIT);
    assert!(applied(json!({ "num_predict": -2 }), 0).unwrap_err().message.contains("num_predict"));
}

#[test]
fn num_ctx_is_honoured_up_to_the_window_hearth_loads_and_refused_past_it() {
    assert!(applied(json!({ "num_ctx": 2048 }), 2048).is_ok());
    let refused = applied(json!({ "num_ctx": 4096 }), 2048).unwrap_err();
    assert!(refused.message.contains("`options.num_ctx`") && refused.message.contains("2048"));
}

#[test]
fn options_hearth_does_not_implement_are_refused_by_name_unless_they_ask_for_nothing() {
    let refused = applied(json!({ "mirostat": 1 }), 0).unwrap_err();
    assert!(refused.message.contains("`options.mirostat`"), "{}", refused.message);
    let refused = applied(json!({ "num_gpu": 99 }), 0).unwrap_err();
    assert!(refused.message.contains("`options.num_gpu`"));
    assert!(applied(json!({ "presence_penalty": 0.0 }), 0).is_ok());
    let unknown = applied(json!({ "warp_speed": 9 }), 0).unwrap_err();
    assert!(unknown.message.contains("unknown field `options.warp_speed`"));
    assert!(applied(json!({ "repeat_last_n": -1 }), 0)
        .unwrap_err()
        .message
        .contains("repeat_last_n"));
}

#[test]
fn a_model_name_with_the_latest_tag_is_the_catalog_id() {
    assert_eq!(model_id("smollm2-135m:latest"), "smollm2-135m");
    assert_eq!(model_id("smollm2-135m"), "smollm2-135m");
    assert_eq!(model_id("llama3:8b"), "llama3:8b");
}

#[test]
fn the_last_line_carries_the_reason_counts_and_durations_in_nanoseconds() {
    let completion = Completion {
        model_id: "m".into(),
        backend: "b".into(),
        tier: None,
        prompt_tokens: 4,
        completion_tokens: 2,
        finish_reason: "length",
        prompt_ms: 1.5,
        decode_ms: 2.0,
        time_to_first_token_ms: Some(3.0),
        total_ms: 10.0,
        reason: String::new(),
        fallbacks: Vec::new(),
    };
    let last = line(Shape::Chat, "m:latest", &Emitted::default(), Some(&completion));
    assert_eq!(last["model"], "m:latest");
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "length");
    assert_eq!(last["prompt_eval_count"], 4);
    assert_eq!(last["eval_count"], 2);
    assert_eq!(last["prompt_eval_duration"], 1_500_000);
    assert_eq!(last["eval_duration"], 2_000_000);
    assert_eq!(last["total_duration"], 10_000_000);
    assert_eq!(last["load_duration"], 6_500_000);
    let hi = Emitted { text: "hi".into(), logprobs: Vec::new() };
    let piece = line(Shape::Generate, "m", &hi, None);
    assert_eq!((piece["response"].as_str(), piece["done"].as_bool()), (Some("hi"), Some(false)));
    assert!(piece.get("done_reason").is_none() && piece.get("logprobs").is_none());
    let chosen = hearth_sdk::TokenLogprob { token: 7, bytes: b"hi".to_vec().into(), logprob: -0.5 };
    let hi = Emitted {
        text: "hi".into(),
        logprobs: vec![hearth_sdk::TokenLogprobs {
            chosen: chosen.clone(),
            top: vec![chosen].into(),
        }],
    };
    let piece = line(Shape::Chat, "m", &hi, None);
    assert_eq!(piece["logprobs"][0]["token"], "hi");
    assert_eq!(piece["logprobs"][0]["logprob"], -0.5);
    assert_eq!(piece["logprobs"][0]["top_logprobs"][0]["bytes"], json!([104, 105]));
}
