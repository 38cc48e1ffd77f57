//! The SDK's tokenizer against llama.cpp's on the real models: Gemma 3's SentencePiece
//! vocabulary (262144 tokens with byte fallback) and SmolLM2's byte-level BPE. Skipped,
//! with a `skipped:` line, when the models are not installed.

use std::path::PathBuf;

use hearth_backend_check::llamacpp;
use hearth_sdk::helpers::{Gguf, StreamDecoder, Tokenizer};

/// Texts that exercise every step of tokenization: spaces where SentencePiece escapes
/// them, characters only byte tokens spell, and special tokens inside text.
const CORPUS: &[&str] = &[
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "trailing space ",
    "multiple   spaces   between    words",
    "     ",
    "line one\nline two\n\nline four",
    "\ttabbed\tcolumns\t",
    "\r\n windows line end",
    "x = 12345 + 0.678 * 2024;",
    "Hello, world! (yes?) [no] {maybe} -- \"quoted\" 'single' ...",
    "naïve café, señor Müller, Ångström, Œuvre",
    "東京は日本の首都です。中文测试，한국어",
    "emoji 🙂🚀👩‍👩‍👧 and 🦀 ferris",
    "a\u{0}b control \u{7} bytes \u{1b}[0m",
    "fn main() {\n    println!(\"hi\");\n}\n",
    "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n",
    "<start_of_turn>user\n  spaced  <end_of_turn>\n<start_of_turn>model\nParis.<end_of_turn>\n",
    "<bos>text after a literal bos",
    "half a <start_of_turn without its end",
    "",
];

fn model_path(relative: &str) -> Option<String> {
    let Some(root) = std::env::var_os("HEARTH_TEST_MODELS") else {
        println!("skipped: HEARTH_TEST_MODELS is not set (scripts/test.sh sets it)");
        return None;
    };
    let path = PathBuf::from(root).join(relative);
    if !path.is_file() {
        println!("skipped: {} is not installed (scripts/setup.sh installs it)", path.display());
        return None;
    }
    Some(path.to_string_lossy().into_owned())
}

fn gemma3_path() -> Option<String> {
    model_path("gemma3-270m/gemma-3-270m-q4_k_m.gguf")
}

fn decode(tokenizer: &Tokenizer, ids: &[u32]) -> String {
    let mut decoder = StreamDecoder::new();
    let mut text: String = ids.iter().map(|&id| decoder.push(tokenizer.token_bytes(id))).collect();
    text.push_str(&decoder.finish());
    text
}

/// Every corpus text whose tokens differ from llama.cpp's, with both token lists.
fn disagreements(model_path: &str) -> Vec<String> {
    let tokenizer = Tokenizer::from_gguf(&Gguf::open(model_path).unwrap()).unwrap();
    CORPUS
        .iter()
        .filter_map(|text| {
            let ours = tokenizer.encode(text).unwrap();
            let reference = llamacpp::tokens(model_path, text);
            (ours != reference).then(|| format!("{text:?}: ours {ours:?}, llama.cpp {reference:?}"))
        })
        .collect()
}

#[test]
fn gemma3_tokens_equal_llama_cpps_for_every_corpus_text() {
    let Some(path) = gemma3_path() else { return };
    let disagreements = disagreements(&path);
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[test]
fn smollm2_tokens_equal_llama_cpps_for_every_corpus_text() {
    let Some(path) = model_path("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf") else { return };
    let disagreements = disagreements(&path);
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[test]
fn gemma3_text_without_special_tokens_survives_an_encode_decode_round_trip() {
    let Some(path) = gemma3_path() else { return };
    let tokenizer = Tokenizer::from_gguf(&Gguf::open(path).unwrap()).unwrap();
    for text in CORPUS.iter().filter(|text| !text.contains("<bos>") && !text.contains("_of_turn>"))
    {
        let ids = tokenizer.encode(text).unwrap();
        assert_eq!(&decode(&tokenizer, &ids), text, "ids {ids:?}");
    }
}

#[test]
fn gemma3_chat_turn_prints_only_its_text_and_end_of_turn_ends_generation() {
    let Some(path) = gemma3_path() else { return };
    let tokenizer = Tokenizer::from_gguf(&Gguf::open(path).unwrap()).unwrap();
    let ids = tokenizer.encode("<start_of_turn>user\nHi<end_of_turn>\n").unwrap();
    assert_eq!(ids.first().copied(), tokenizer.bos(), "the model adds BOS");
    assert_eq!(decode(&tokenizer, &ids), "user\nHi\n", "control tokens print nothing");
    let end_of_turn = ids[ids.len() - 2];
    assert_eq!(tokenizer.token_text(end_of_turn), Some("<end_of_turn>"));
    assert!(tokenizer.is_end_of_generation(end_of_turn));
    assert!(tokenizer.is_end_of_generation(tokenizer.eos().expect("an EOS token")));
    assert_eq!(tokenizer.vocab_size(), 262144);
}
