//! Tokenizer, chat-template and stream-decoding tests on the real SmolLM2 GGUF, found
//! through `HEARTH_TEST_MODELS` (`<model-id>/<file>` below it).

use std::path::PathBuf;

use super::chat::ChatTemplate;
use super::gguf::Gguf;
use super::tokenizer::{StreamDecoder, Tokenizer};
use crate::types::ChatMessage;

fn smollm2() -> Gguf {
    let root = std::env::var("HEARTH_TEST_MODELS")
        .expect("HEARTH_TEST_MODELS must point at the test models folder (<model-id>/<file>)");
    let path = PathBuf::from(root).join("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.is_file(), "test model missing: {}", path.display());
    Gguf::open(&path).unwrap()
}

fn decode(tokenizer: &Tokenizer, ids: &[u32]) -> String {
    let mut decoder = StreamDecoder::new();
    let mut text: String = ids.iter().map(|&id| decoder.push(tokenizer.token_bytes(id))).collect();
    text.push_str(&decoder.finish());
    text
}

#[test]
fn smollm2_text_survives_an_encode_decode_round_trip() {
    if crate::testing::real_models().is_none() {
        return;
    }
    let tokenizer = Tokenizer::from_gguf(&smollm2()).unwrap();
    for text in [
        "What is the capital of France?",
        "  spaces\tand\nnewlines ",
        "naïve café — 東京 🙂",
        "x=12345;",
    ] {
        let ids = tokenizer.encode(text).unwrap();
        assert_eq!(decode(&tokenizer, &ids), text);
    }
}

#[test]
fn smollm2_splits_digits_and_keeps_common_words_whole() {
    if crate::testing::real_models().is_none() {
        return;
    }
    let tokenizer = Tokenizer::from_gguf(&smollm2()).unwrap();
    assert_eq!(tokenizer.encode("2024").unwrap().len(), 4);
    let ids = tokenizer.encode(" Paris").unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(tokenizer.token_text(ids[0]), Some("ĠParis"));
}

#[test]
fn smollm2_special_tokens_encode_as_one_id_and_end_generation() {
    if crate::testing::real_models().is_none() {
        return;
    }
    let tokenizer = Tokenizer::from_gguf(&smollm2()).unwrap();
    let ids = tokenizer.encode("<|im_start|>user\nHi<|im_end|>").unwrap();
    assert_eq!(ids.first(), Some(&1));
    assert_eq!(ids.last(), Some(&2));
    assert_eq!(tokenizer.eos(), Some(2));
    assert!(tokenizer.is_end_of_generation(2));
    assert!(tokenizer.token_bytes(2).is_empty(), "control tokens print nothing");
    assert_eq!(tokenizer.vocab_size(), 49152);
}

#[test]
fn smollm2_chat_template_renders_chatml_with_the_default_system_prompt() {
    if crate::testing::real_models().is_none() {
        return;
    }
    let gguf = smollm2();
    let template = ChatTemplate::new(
        gguf.str("tokenizer.chat_template").unwrap(),
        "<|im_start|>",
        "<|im_end|>",
    )
    .unwrap();
    let messages = [ChatMessage { role: "user".into(), content: "Hi".into() }];
    let text = template.render(&messages, true).unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn stream_decoding_never_emits_half_a_character() {
    if crate::testing::real_models().is_none() {
        return;
    }
    let mut decoder = StreamDecoder::new();
    let bytes = "é東".as_bytes();
    assert_eq!(decoder.push(&bytes[..1]), "");
    assert_eq!(decoder.push(&bytes[1..3]), "é");
    assert_eq!(decoder.push(&bytes[3..4]), "");
    assert_eq!(decoder.push(&bytes[4..]), "東");
    assert_eq!(decoder.push(&[0xff, b'a']), "\u{fffd}a");
    assert_eq!(decoder.push(&[0xe6]), "");
    assert_eq!(decoder.finish(), "\u{fffd}");
}

#[test]
fn smollm2_saved_as_tokenizer_json_and_read_back_encodes_and_decodes_the_same() {
    if crate::testing::real_models().is_none() {
        return;
    }
    let gguf = smollm2();
    let original = Tokenizer::from_gguf(&gguf).unwrap();
    let text = |id: Option<u32>| id.and_then(|id| original.token_text(id));
    let json = original.to_json().unwrap();
    let copy =
        Tokenizer::from_json(&json, text(original.bos()), text(original.eos()), false).unwrap();
    assert_eq!(
        (copy.bos(), copy.eos(), copy.vocab_size()),
        (original.bos(), original.eos(), original.vocab_size())
    );
    let prompt =
        "<|im_start|>user\nnaïve café — 東京 🙂 x=12345;<|im_end|>\n<|im_start|>assistant\n";
    let ids = original.encode(prompt).unwrap();
    assert_eq!(copy.encode(prompt).unwrap(), ids);
    assert_eq!(decode(&copy, &ids), decode(&original, &ids));
    let im_end = *original.encode("<|im_end|>").unwrap().last().unwrap();
    assert!(copy.is_end_of_generation(im_end) && original.is_end_of_generation(im_end));
}
