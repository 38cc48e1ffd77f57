//! MLX-format safetensors folders (the mlx-community layout), made from SmolLM2's GGUF
//! by [`crate::fixture`]: answers, first-step logits and greedy tokens against the same
//! model loaded from the GGUF, and refusals of malformed or unsupported folders.

use hearth_backend_check::agreement::{
    argmax, chatml, relative_error, same_first_16_tokens, PROMPTS,
};
use hearth_mlx::model::MlxModel;
use hearth_mlx::MlxBackend;
use hearth_sdk::abi_stable::std_types::{ROption, RVec};
use hearth_sdk::helpers::{Gguf, Tokenizer};
use hearth_sdk::{Backend, ErrorKind, LoadRequest, Model, PluginError};

use crate::common::{chat, smollm2_path, Collect};
use crate::fixture::{scratch, smollm2_mlx, write_folder};

fn answer(model: &MlxModel, question: &str) -> String {
    let mut sink = Collect::default();
    model.generate(&chat(question, 12), &mut sink).unwrap();
    sink.pieces.concat()
}

/// The largest `max |folder - gguf| / max |gguf|` of first-step logits over the five prompts.
fn logit_error(folder: &MlxModel) -> f32 {
    let gguf = Gguf::open(smollm2_path()).unwrap();
    let tokenizer = Tokenizer::from_gguf(&gguf).unwrap();
    let reference = MlxModel::load(&smollm2_path(), 256).unwrap();
    PROMPTS
        .iter()
        .map(|prompt| {
            let tokens = tokenizer.encode(&chatml(prompt)).unwrap();
            let (ours, theirs) =
                (folder.logits(&tokens).unwrap(), reference.logits(&tokens).unwrap());
            let error = relative_error(&ours, &theirs);
            println!("{prompt:?}: max |folder - gguf| / max |gguf| = {error:e}");
            assert_eq!(argmax(&ours), argmax(&theirs), "{prompt:?}: the next token differs");
            error
        })
        .fold(0.0, f32::max)
}

#[test]
fn smollm2_from_a_quantized_mlx_folder_answers_the_capital_of_france_with_paris() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = MlxModel::load_mlx(&smollm2_mlx(true), 512).unwrap();
    let answer = answer(&model, "What is the capital of France?");
    println!("answer: {answer:?}");
    assert!(answer.contains("Paris"), "answer was {answer:?}");
}

/// The re-pack is lossless, so the weights are the GGUF's exactly; what is left is the
/// order of additions in attention (Q and K heads in another row order, RoPE on halves
/// instead of pairs), a rounding-level difference.
#[test]
fn first_step_logits_of_the_quantized_folder_match_the_gguf_within_1e_5() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let error = logit_error(&MlxModel::load_mlx(&smollm2_mlx(true), 256).unwrap());
    assert!(error < 1e-5, "relative error {error}");
}

#[test]
fn greedy_16_tokens_of_the_quantized_folder_match_the_gguf_on_all_five_prompts() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let folder = MlxModel::load_mlx(&smollm2_mlx(true), 256).unwrap();
    let gguf = MlxModel::load(&smollm2_path(), 256).unwrap();
    let same = same_first_16_tokens(&folder, "mlx folder", &gguf);
    assert_eq!(same, 5, "only {same} of 5 greedy answers agree with the GGUF-loaded model");
}

/// Dense weights are the Q4_1 values rounded to f16 (norms to bf16): a slightly
/// different model.
#[test]
fn an_unquantized_f16_and_bf16_folder_answers_paris_with_logits_within_1e_2_of_the_gguf() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = MlxModel::load_mlx(&smollm2_mlx(false), 512).unwrap();
    let answer = answer(&model, "What is the capital of France?");
    println!("answer: {answer:?}");
    assert!(answer.contains("Paris"), "answer was {answer:?}");
    let error = logit_error(&model);
    assert!(error < 1e-2, "relative error {error}");
}

fn load_request(path: &str) -> LoadRequest {
    LoadRequest {
        model_id: "test".into(),
        paths: RVec::from(vec![path.into()]),
        format: "safetensors".into(),
        context_size: 256,
        threads: 0,
        device: ROption::RNone,
        ..Default::default()
    }
}

#[test]
fn the_backend_loads_a_folder_given_its_weight_file_as_a_catalog_artifact_names_it() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let file = format!("{}/model.safetensors", smollm2_mlx(true));
    let model = MlxBackend.load(&load_request(&file)).unwrap();
    let mut sink = Collect::default();
    model.generate(&chat("What is the capital of France?", 12), &mut sink).unwrap();
    assert!(sink.pieces.concat().contains("Paris"), "{:?}", sink.pieces.concat());
}

#[test]
fn a_folder_sharded_in_three_files_gives_the_same_logits_as_one_file() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let dir = scratch("sharded");
    write_folder(&dir, true, 3, |_, _| {});
    // By one shard's path, as a catalog artifact would name a sharded model.
    let shard = dir.join("model-00002-of-00003.safetensors");
    let sharded = MlxModel::load_mlx(shard.to_str().unwrap(), 256).unwrap();
    let single = MlxModel::load_mlx(&smollm2_mlx(true), 256).unwrap();
    let tokens = [1, 2, 3, 4, 5];
    assert_eq!(sharded.logits(&tokens).unwrap(), single.logits(&tokens).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Write a folder with `edit` applied (and `remove` deleted), load it, clean up.
fn refusal(
    label: &str,
    remove: Option<&str>,
    edit: impl FnOnce(&mut Vec<crate::fixture::Tensor>, &mut serde_json::Value),
) -> PluginError {
    let dir = scratch(label);
    write_folder(&dir, true, 1, edit);
    if let Some(file) = remove {
        std::fs::remove_file(dir.join(file)).unwrap();
    }
    let error = MlxBackend.load(&load_request(dir.to_str().unwrap())).err().expect("refused");
    std::fs::remove_dir_all(&dir).unwrap();
    println!("{label}: {:?}: {}", error.kind, error.message);
    error
}

#[test]
fn malformed_folders_are_refused_as_model_file_errors_naming_the_problem() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let error = refusal("no-config", Some("config.json"), |_, _| {});
    assert_eq!(error.kind, ErrorKind::ModelFile);
    assert!(error.message.contains("config.json is missing"), "{error}");

    let error = refusal("no-tokenizer", Some("tokenizer.json"), |_, _| {});
    assert_eq!(error.kind, ErrorKind::ModelFile);
    assert!(error.message.contains("tokenizer.json is missing"), "{error}");

    for missing in
        ["model.layers.7.mlp.up_proj.scales", "model.layers.5.post_attention_layernorm.weight"]
    {
        let error =
            refusal("missing-tensor", None, |tensors, _| tensors.retain(|t| t.name != missing));
        assert_eq!(error.kind, ErrorKind::ModelFile);
        assert!(error.message.contains(&format!("`{missing}` is missing")), "{error}");
    }

    let norm = "model.layers.2.input_layernorm.weight";
    let error = refusal("wrong-shape", None, |tensors, _| {
        let tensor = tensors.iter_mut().find(|t| t.name == norm).unwrap();
        tensor.shape[0] /= 2;
        tensor.data.truncate(tensor.data.len() / 2);
    });
    assert_eq!(error.kind, ErrorKind::ModelFile);
    assert!(
        error.message.contains(norm)
            && error.message.contains("[288]")
            && error.message.contains("[576]"),
        "{error}"
    );

    let error = refusal("no-quantization", None, |_, config| {
        config.as_object_mut().unwrap().remove("quantization");
    });
    assert_eq!(error.kind, ErrorKind::ModelFile);
    assert!(error.message.contains("no `quantization`"), "{error}");
}

#[test]
fn folders_outside_what_the_forward_pass_runs_are_refused_as_unsupported() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let error = refusal("gemma", None, |_, config| config["model_type"] = "gemma3".into());
    assert_eq!(error.kind, ErrorKind::Unsupported);
    assert!(error.message.contains("gemma3"), "{error}");

    let error = refusal("rope-scaling", None, |_, config| {
        config["rope_scaling"] = serde_json::json!({"rope_type": "llama3"});
    });
    assert_eq!(error.kind, ErrorKind::Unsupported);
    assert!(error.message.contains("rope scaling"), "{error}");
}
