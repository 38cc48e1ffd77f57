//! SentencePiece tokenization from GGUF metadata (`tokenizer.ggml.model = "llama"`:
//! Llama 2, Mistral, Gemma), giving exactly the tokens of llama.cpp's `llm_tokenizer_spm`
//! with special tokens parsed: control, user-defined and unknown tokens are cut out of
//! the text first (longest text first, as `tokenizer_st_partition` does), then each
//! remaining fragment has its spaces escaped to U+2581, optionally a space prefixed, and
//! its characters merged pairwise by score; pieces that are no token fall back to
//! `<0xXX>` byte tokens.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::gguf::{Gguf, Value};
use super::tokenizer::{
    TokenizerError, TOKEN_BYTE, TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_USER_DEFINED,
};

/// SentencePiece's visible space, which the vocabulary spells spaces as.
const ESCAPED_SPACE: &str = "\u{2581}";

/// A SentencePiece vocabulary and the options llama.cpp reads beside it.
pub(super) struct SentencePiece {
    ids: HashMap<String, u32>,
    scores: Vec<f32>,
    /// Control, user-defined and unknown tokens with their texts, longest text first:
    /// the order in which they are cut out of the input.
    specials: Vec<(String, u32)>,
    /// The token for each byte (256 of them), for pieces that are no token of their own.
    byte_tokens: Vec<Option<u32>>,
    add_space_prefix: bool,
    /// EOS when the file asks for it after every encoding (`add_eos_token`).
    appended_eos: Option<u32>,
}

/// The SentencePiece options of a GGUF file, with llama.cpp's defaults for `llama`
/// vocabularies when a key is absent.
pub(super) struct Options {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
}

fn flag(gguf: &Gguf, key: &str, default: bool) -> bool {
    match gguf.get(key) {
        Some(Value::Bool(value)) => *value,
        _ => default,
    }
}

impl Options {
    pub fn from_gguf(gguf: &Gguf, vocab_size: usize) -> Self {
        // An id from the file when it lies in the vocabulary, else llama.cpp's default
        // (BOS 1, EOS 2), when that does.
        let id = |key: &str, default: u32| {
            [gguf.get(key).and_then(Value::as_u64), Some(u64::from(default))]
                .into_iter()
                .flatten()
                .find(|&id| id < vocab_size as u64)
                .map(|id| id as u32)
        };
        Self {
            bos: id("tokenizer.ggml.bos_token_id", 1),
            eos: id("tokenizer.ggml.eos_token_id", 2),
            add_bos: flag(gguf, "tokenizer.ggml.add_bos_token", true),
            add_eos: flag(gguf, "tokenizer.ggml.add_eos_token", false),
            add_space_prefix: flag(gguf, "tokenizer.ggml.add_space_prefix", true),
        }
    }
}

/// Each token's `tokenizer.ggml.scores` (all 0 when the file has none, as llama.cpp
/// takes them), the merge priority of the pieces.
pub(super) fn scores(gguf: &Gguf, vocab_size: usize) -> Result<Vec<f32>, TokenizerError> {
    let scores: Vec<f32> = match gguf.get("tokenizer.ggml.scores") {
        Some(_) => gguf
            .array("tokenizer.ggml.scores")?
            .iter()
            .map(|score| score.as_f64().unwrap_or(0.0) as f32)
            .collect(),
        None => vec![0.0; vocab_size],
    };
    if scores.len() < vocab_size {
        return Err(TokenizerError::Build(format!(
            "{} scores for {vocab_size} tokens",
            scores.len()
        )));
    }
    Ok(scores)
}

/// The text llama.cpp gives a token the file leaves empty (an empty special text would
/// match everywhere).
pub(super) fn nonempty_text(id: usize, text: &str) -> String {
    if text.is_empty() {
        format!("[EMPTY_{id}]")
    } else {
        text.to_string()
    }
}

/// The bytes a token prints, as llama.cpp's `token_to_piece` without special tokens:
/// normal tokens with U+2581 as a space, user-defined ones verbatim, byte tokens their
/// byte, and nothing for control, unknown and unused tokens.
pub(super) fn piece_bytes(text: &str, token_type: i64) -> Vec<u8> {
    match token_type {
        TOKEN_NORMAL => text.replace(ESCAPED_SPACE, " ").into_bytes(),
        TOKEN_USER_DEFINED => text.as_bytes().to_vec(),
        TOKEN_BYTE => byte_of_token(text).map(|byte| vec![byte]).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The byte `<0xXX>` stands for.
fn byte_of_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

impl SentencePiece {
    /// `texts` as [`nonempty_text`] gives them; `types` and `scores` one per token.
    pub fn new(texts: &[String], types: &[i64], scores: Vec<f32>, options: &Options) -> Self {
        let ids: HashMap<String, u32> =
            texts.iter().enumerate().map(|(id, text)| (text.clone(), id as u32)).collect();
        let mut specials: Vec<(String, u32)> = texts
            .iter()
            .zip(types)
            .enumerate()
            .filter(|(_, (_, &token_type))| {
                matches!(token_type, TOKEN_CONTROL | TOKEN_USER_DEFINED | TOKEN_UNKNOWN)
            })
            .map(|(id, (text, _))| (text.clone(), id as u32))
            .collect();
        specials.sort_by(|(a, a_id), (b, b_id)| b.len().cmp(&a.len()).then(a_id.cmp(b_id)));
        let byte_tokens = (0..=u8::MAX)
            .map(|byte| {
                ids.get(&format!("<0x{byte:02X}>"))
                    .or_else(|| ids.get(std::str::from_utf8(&[byte]).ok()?))
                    .copied()
            })
            .collect();
        Self {
            ids,
            scores,
            specials,
            byte_tokens,
            add_space_prefix: options.add_space_prefix,
            appended_eos: options.eos.filter(|_| options.add_eos),
        }
    }

    /// Append the tokens of `text` (BOS aside) to `ids`.
    pub fn encode_into(&self, text: &str, ids: &mut Vec<u32>) -> Result<(), TokenizerError> {
        // llama.cpp prefixes the space to the first fragment and to every fragment that
        // follows a special token.
        let mut follows_special = true;
        for fragment in self.partition(text) {
            match fragment {
                Fragment::Text(text) => {
                    let prefix = if self.add_space_prefix && follows_special { " " } else { "" };
                    let escaped = format!("{prefix}{text}").replace(' ', ESCAPED_SPACE);
                    self.encode_fragment(&escaped, ids)?;
                    follows_special = false;
                }
                Fragment::Special(id) => {
                    ids.push(id);
                    follows_special = true;
                }
            }
        }
        ids.extend(self.appended_eos);
        Ok(())
    }

    /// `text` cut at every occurrence of each special token's text in turn, longest
    /// first, so a longer special text wins over one it contains.
    fn partition<'text>(&self, text: &'text str) -> Vec<Fragment<'text>> {
        let mut fragments = Vec::new();
        if !text.is_empty() {
            fragments.push(Fragment::Text(text));
        }
        for (special, id) in &self.specials {
            if !fragments
                .iter()
                .any(|f| matches!(f, Fragment::Text(t) if t.contains(special.as_str())))
            {
                continue;
            }
            let mut cut = Vec::with_capacity(fragments.len() + 2);
            for fragment in fragments {
                let Fragment::Text(mut rest) = fragment else {
                    cut.push(fragment);
                    continue;
                };
                while let Some(start) = rest.find(special.as_str()) {
                    if start > 0 {
                        cut.push(Fragment::Text(&rest[..start]));
                    }
                    cut.push(Fragment::Special(*id));
                    rest = &rest[start + special.len()..];
                }
                if !rest.is_empty() {
                    cut.push(Fragment::Text(rest));
                }
            }
            fragments = cut;
        }
        fragments
    }

    /// llama.cpp's `llm_tokenizer_spm_session::tokenize` on one escaped fragment.
    fn encode_fragment(&self, text: &str, ids: &mut Vec<u32>) -> Result<(), TokenizerError> {
        let mut symbols: Vec<Symbol> = text
            .char_indices()
            .enumerate()
            .map(|(index, (start, c))| Symbol {
                start,
                len: c.len_utf8(),
                prev: index.checked_sub(1),
                next: Some(index + 1).filter(|_| start + c.len_utf8() < text.len()),
            })
            .collect();
        let mut queue = BinaryHeap::new();
        for right in 1..symbols.len() {
            self.push_bigram(text, &symbols, right - 1, right, &mut queue);
        }
        while let Some(bigram) = queue.pop() {
            let (left, right) = (&symbols[bigram.left], &symbols[bigram.right]);
            // Skip pairs one of whose symbols has since been merged into another.
            if left.len == 0 || right.len == 0 || left.len + right.len != bigram.len {
                continue;
            }
            let next = right.next;
            symbols[bigram.left].len += symbols[bigram.right].len;
            symbols[bigram.right].len = 0;
            symbols[bigram.left].next = next;
            if let Some(next) = next {
                symbols[next].prev = Some(bigram.left);
            }
            if let Some(prev) = symbols[bigram.left].prev {
                self.push_bigram(text, &symbols, prev, bigram.left, &mut queue);
            }
            if let Some(next) = next {
                self.push_bigram(text, &symbols, bigram.left, next, &mut queue);
            }
        }
        let mut index = (!symbols.is_empty()).then_some(0);
        while let Some(current) = index {
            let symbol = &symbols[current];
            // Merged symbols are tokens by construction; only a single character can be
            // missing from the vocabulary (llama.cpp's `resegment` therefore never finds
            // a merge to undo), and it is spelled as bytes.
            let piece = &text[symbol.start..symbol.start + symbol.len];
            match self.ids.get(piece) {
                Some(&id) => ids.push(id),
                None => {
                    for &byte in piece.as_bytes() {
                        ids.push(self.byte_tokens[usize::from(byte)].ok_or_else(|| {
                            TokenizerError::Encode(format!(
                                "`{piece}` needs byte 0x{byte:02X}, which has no token"
                            ))
                        })?);
                    }
                }
            }
            index = symbol.next;
        }
        Ok(())
    }

    fn push_bigram(
        &self,
        text: &str,
        symbols: &[Symbol],
        left: usize,
        right: usize,
        queue: &mut BinaryHeap<Bigram>,
    ) {
        let start = symbols[left].start;
        let len = symbols[left].len + symbols[right].len;
        if let Some(&id) = self.ids.get(&text[start..start + len]) {
            queue.push(Bigram { score: self.scores[id as usize], left, right, len });
        }
    }
}

enum Fragment<'text> {
    Text(&'text str),
    Special(u32),
}

/// A run of the fragment's bytes, linked to its neighbours; merged away when `len` is 0.
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// Two neighbouring symbols whose text together is a token of `score`.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

/// The highest score first; among equal scores the leftmost pair (llama.cpp's
/// `llm_bigram_spm::comparator`).
impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}
