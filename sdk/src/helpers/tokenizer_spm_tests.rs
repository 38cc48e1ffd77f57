//! SentencePiece encoding on a small made-up vocabulary, each expectation worked
//! through llama.cpp's `llm_tokenizer_spm` by hand; the real vocabulary is checked
//! against llama.cpp itself in backend-check's `tokenizer` test.

use super::tokenizer::{
    TOKEN_BYTE, TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_USER_DEFINED,
};
use super::tokenizer_spm::{piece_bytes, Options, SentencePiece};

/// (text, type, score), the id being the position.
const VOCABULARY: &[(&str, i64, f32)] = &[
    ("<unk>", TOKEN_UNKNOWN, 0.0),
    ("<s>", TOKEN_CONTROL, 0.0),
    ("</s>", TOKEN_CONTROL, 0.0),
    ("<0xC3>", TOKEN_BYTE, 0.0),
    ("<0xA9>", TOKEN_BYTE, 0.0),
    ("\u{2581}", TOKEN_NORMAL, -1.0),
    ("a", TOKEN_NORMAL, -1.0),
    ("b", TOKEN_NORMAL, -1.0),
    ("c", TOKEN_NORMAL, -1.0),
    ("ab", TOKEN_NORMAL, -2.0),
    ("bc", TOKEN_NORMAL, -1.5),
    ("abc", TOKEN_NORMAL, -3.0),
    ("aa", TOKEN_NORMAL, -2.0),
    ("\u{2581}a", TOKEN_NORMAL, -2.5),
    ("<turn>", TOKEN_CONTROL, 0.0),
    ("<turn>x", TOKEN_USER_DEFINED, 0.0),
];

fn sentence_piece(add_space_prefix: bool, add_eos: bool) -> SentencePiece {
    let texts: Vec<String> = VOCABULARY.iter().map(|(text, ..)| text.to_string()).collect();
    let types: Vec<i64> = VOCABULARY.iter().map(|&(_, token_type, _)| token_type).collect();
    let scores = VOCABULARY.iter().map(|&(.., score)| score).collect();
    let options = Options { bos: Some(1), eos: Some(2), add_bos: true, add_eos, add_space_prefix };
    SentencePiece::new(&texts, &types, scores, &options)
}

/// The texts of the tokens `text` encodes to.
fn pieces(sentence_piece: &SentencePiece, text: &str) -> Vec<&'static str> {
    let mut ids = Vec::new();
    sentence_piece.encode_into(text, &mut ids).unwrap();
    ids.iter().map(|&id| VOCABULARY[id as usize].0).collect()
}

#[test]
fn the_highest_scoring_pair_merges_first_and_stale_pairs_are_skipped() {
    // bc (-1.5) beats ab (-2); the first ab then overlaps it, a+bc makes abc.
    assert_eq!(pieces(&sentence_piece(false, false), "abcab"), ["abc", "ab"]);
}

#[test]
fn among_pairs_of_equal_score_the_leftmost_merges_first() {
    assert_eq!(pieces(&sentence_piece(false, false), "aaa"), ["aa", "a"]);
}

#[test]
fn characters_outside_the_vocabulary_fall_back_to_byte_tokens() {
    assert_eq!(pieces(&sentence_piece(false, false), "a\u{e9}"), ["a", "<0xC3>", "<0xA9>"]);
}

#[test]
fn a_byte_without_a_token_is_an_encoding_error_naming_it() {
    let mut ids = Vec::new();
    let error = sentence_piece(false, false).encode_into("\u{fc}", &mut ids).unwrap_err();
    assert!(error.to_string().contains("0xBC"), "{error}");
}

#[test]
fn spaces_are_escaped_and_the_space_prefix_is_added_only_when_asked() {
    assert_eq!(pieces(&sentence_piece(false, false), "a a"), ["a", "\u{2581}a"]);
    assert_eq!(pieces(&sentence_piece(true, false), "a a"), ["\u{2581}a", "\u{2581}a"]);
}

#[test]
fn special_tokens_are_cut_out_longest_first_and_each_following_fragment_gets_the_prefix() {
    assert_eq!(
        pieces(&sentence_piece(true, false), "a<turn>xb<turn>c"),
        ["\u{2581}a", "<turn>x", "\u{2581}", "b", "<turn>", "\u{2581}", "c"]
    );
}

#[test]
fn eos_is_appended_when_the_file_asks_for_it_and_empty_text_has_no_tokens() {
    assert_eq!(pieces(&sentence_piece(false, true), "a"), ["a", "</s>"]);
    assert!(pieces(&sentence_piece(true, false), "").is_empty());
}

#[test]
fn tokens_print_spaces_for_the_escape_their_byte_or_nothing_when_control() {
    assert_eq!(piece_bytes("\u{2581}a\u{2581}", TOKEN_NORMAL), b" a ");
    assert_eq!(piece_bytes("<0xC3>", TOKEN_BYTE), [0xc3]);
    assert_eq!(piece_bytes("<turn>x", TOKEN_USER_DEFINED), b"<turn>x");
    assert!(piece_bytes("<turn>", TOKEN_CONTROL).is_empty());
    assert!(piece_bytes("<unk>", TOKEN_UNKNOWN).is_empty());
}
