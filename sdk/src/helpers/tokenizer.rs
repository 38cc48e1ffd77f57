//! A tokenizer built from a GGUF file's `tokenizer.ggml.*` metadata, or from a Hugging
//! Face `tokenizer.json` (MLX-format models).
//!
//! Byte-level BPE vocabularies (`gpt2`) encode through the `tokenizers` crate: a BPE
//! model from the vocabulary and merges, with the pre-tokenizer llama.cpp uses for the
//! file's `tokenizer.ggml.pre`, and the control and user-defined tokens registered as
//! special so a rendered chat template's `<|im_start|>` becomes one token. SentencePiece
//! vocabularies (`llama`) encode as llama.cpp does, in the `tokenizer_spm` module.
//! Decoding is done here, token by token into bytes, so streamed text can be cut at
//! character boundaries by [`StreamDecoder`].

use std::collections::HashMap;

use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::models::ModelWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::gguf::{Gguf, GgufError, Value};
use super::tokenizer_spm::{self, SentencePiece};

/// Why a tokenizer could not be built or could not encode.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Metadata(#[from] GgufError),
    #[error("tokenizer {0} is not supported")]
    Unsupported(String),
    #[error("cannot build the tokenizer: {0}")]
    Build(String),
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
pub(super) const TOKEN_NORMAL: i64 = 1;
pub(super) const TOKEN_UNKNOWN: i64 = 2;
pub(super) const TOKEN_CONTROL: i64 = 3;
pub(super) const TOKEN_USER_DEFINED: i64 = 4;
pub(super) const TOKEN_BYTE: i64 = 6;

/// Token texts that end a turn in common chat formats, honoured when the file marks
/// them as control tokens (llama.cpp does the same when the metadata omits `eot`).
const END_OF_TURN_TEXTS: &[&str] =
    &["<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|endoftext|>", "<end_of_turn>", "<|end|>"];

/// Pre-tokenizer regexes of llama.cpp's `llm_tokenizer_bpe`, by `tokenizer.ggml.pre`.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A byte-level BPE or SentencePiece tokenizer with the model's special tokens.
pub struct Tokenizer {
    encoder: Encoder,
    /// Each token's output bytes; control tokens print nothing.
    pieces: Vec<Vec<u8>>,
    texts: Vec<String>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    end_of_generation: Vec<u32>,
}

/// What turns text into ids, by the vocabulary's kind.
enum Encoder {
    BytePairs(Box<tokenizers::Tokenizer>),
    SentencePiece(SentencePiece),
}

fn split(regex: &str) -> Result<PreTokenizerWrapper, TokenizerError> {
    let split =
        Split::new(SplitPattern::Regex(regex.to_string()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|error| TokenizerError::Build(error.to_string()))?;
    Ok(split.into())
}

fn pre_tokenizer(pre: &str) -> Result<Sequence, TokenizerError> {
    let byte_level = |use_regex| PreTokenizerWrapper::from(ByteLevel::new(false, false, use_regex));
    Ok(Sequence::new(match pre {
        "gpt2" | "default" | "gpt-2" => vec![byte_level(true)],
        // SmolLM splits every digit apart, then applies GPT-2's regex.
        "smollm" => vec![Digits::new(true).into(), byte_level(true)],
        "llama3" | "llama-bpe" | "smaug-bpe" => vec![split(LLAMA3_REGEX)?, byte_level(false)],
        "qwen2" => vec![split(QWEN2_REGEX)?, byte_level(false)],
        other => return Err(TokenizerError::Unsupported(format!("pre-tokenizer `{other}`"))),
    }))
}

/// GPT-2's byte-to-character table, inverted: BPE vocabularies spell bytes as these
/// printable characters.
fn unicode_to_byte() -> HashMap<char, u8> {
    let mut map = HashMap::with_capacity(256);
    let mut next = 256u32;
    for byte in 0..=255u8 {
        let printable = matches!(byte, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
        let code = if printable {
            u32::from(byte)
        } else {
            next += 1;
            next - 1
        };
        map.insert(char::from_u32(code).expect("valid scalar"), byte);
    }
    map
}

fn optional_id(gguf: &Gguf, key: &str) -> Option<u32> {
    gguf.get(key).and_then(Value::as_u64).and_then(|id| u32::try_from(id).ok())
}

/// Each token's `tokenizer.ggml.token_type`, all normal when the file has none.
fn token_types(gguf: &Gguf, vocab_size: usize) -> Result<Vec<i64>, TokenizerError> {
    let types: Vec<i64> = match gguf.get("tokenizer.ggml.token_type") {
        Some(_) => gguf
            .array("tokenizer.ggml.token_type")?
            .iter()
            .map(|v| v.as_f64().unwrap_or(1.0) as i64)
            .collect(),
        None => vec![TOKEN_NORMAL; vocab_size],
    };
    if types.len() < vocab_size {
        return Err(TokenizerError::Build(format!(
            "{} token types for {vocab_size} tokens",
            types.len()
        )));
    }
    Ok(types)
}

/// EOS, the file's end-of-turn and end-of-message tokens, and the control tokens whose
/// text ends a turn in a common chat format.
fn end_of_generation(gguf: &Gguf, eos: Option<u32>, texts: &[String], types: &[i64]) -> Vec<u32> {
    let mut ids: Vec<u32> = [
        eos,
        optional_id(gguf, "tokenizer.ggml.eot_token_id"),
        optional_id(gguf, "tokenizer.ggml.eom_token_id"),
    ]
    .into_iter()
    .flatten()
    .collect();
    for (id, text) in texts.iter().enumerate() {
        if types.get(id) == Some(&TOKEN_CONTROL) && END_OF_TURN_TEXTS.contains(&text.as_str()) {
            ids.push(id as u32);
        }
    }
    ids
}

impl Tokenizer {
    /// Build the tokenizer a GGUF file describes: byte-level BPE (`gpt2`) or
    /// SentencePiece (`llama`).
    pub fn from_gguf(gguf: &Gguf) -> Result<Self, TokenizerError> {
        match gguf.str("tokenizer.ggml.model")? {
            "gpt2" => Self::byte_pairs_from_gguf(gguf),
            "llama" => Self::sentence_piece_from_gguf(gguf),
            other => Err(TokenizerError::Unsupported(format!(
                "model `{other}` (byte-level BPE, `gpt2`, and SentencePiece, `llama`, are)"
            ))),
        }
    }

    fn byte_pairs_from_gguf(gguf: &Gguf) -> Result<Self, TokenizerError> {
        let pre = gguf.get("tokenizer.ggml.pre").and_then(|v| {
            if let Value::String(s) = v {
                Some(s.as_str())
            } else {
                None
            }
        });
        let texts: Vec<String> =
            gguf.strings("tokenizer.ggml.tokens")?.into_iter().map(str::to_string).collect();
        let types = token_types(gguf, texts.len())?;
        let merges = gguf
            .strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|merge| {
                let (left, right) = merge.split_once(' ').ok_or_else(|| {
                    TokenizerError::Build(format!("merge `{merge}` has no space"))
                })?;
                Ok((left.to_string(), right.to_string()))
            })
            .collect::<Result<Vec<_>, TokenizerError>>()?;
        let vocab: Vocab =
            texts.iter().enumerate().map(|(id, text)| (text.clone(), id as u32)).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|error| TokenizerError::Build(error.to_string()))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer(pre.unwrap_or("default"))?));

        let special =
            |id: usize| matches!(types.get(id), Some(&TOKEN_CONTROL | &TOKEN_USER_DEFINED));
        let added: Vec<AddedToken> = texts
            .iter()
            .enumerate()
            .filter(|(id, _)| special(*id))
            .map(|(_, text)| AddedToken::from(text.clone(), true))
            .collect();
        inner.add_special_tokens(&added);

        let bytes_of = unicode_to_byte();
        let pieces = texts
            .iter()
            .enumerate()
            .map(|(id, text)| match types.get(id) {
                Some(&TOKEN_CONTROL) => Vec::new(),
                Some(&TOKEN_USER_DEFINED) => text.as_bytes().to_vec(),
                // A character outside the byte table cannot come from byte-level BPE;
                // it is kept as its UTF-8 rather than dropped.
                _ => text
                    .chars()
                    .flat_map(|c| {
                        bytes_of
                            .get(&c)
                            .map(|&b| vec![b])
                            .unwrap_or_else(|| c.to_string().into_bytes())
                    })
                    .collect(),
            })
            .collect();

        let eos = optional_id(gguf, "tokenizer.ggml.eos_token_id");
        let end_of_generation = end_of_generation(gguf, eos, &texts, &types);
        let add_bos = matches!(gguf.get("tokenizer.ggml.add_bos_token"), Some(Value::Bool(true)));
        Ok(Self {
            encoder: Encoder::BytePairs(Box::new(inner)),
            pieces,
            texts,
            bos: optional_id(gguf, "tokenizer.ggml.bos_token_id"),
            eos,
            add_bos,
            end_of_generation,
        })
    }

    fn sentence_piece_from_gguf(gguf: &Gguf) -> Result<Self, TokenizerError> {
        // Empty texts are renamed as llama.cpp renames them, so token_text agrees with it.
        let texts: Vec<String> = gguf
            .strings("tokenizer.ggml.tokens")?
            .into_iter()
            .enumerate()
            .map(|(id, text)| tokenizer_spm::nonempty_text(id, text))
            .collect();
        let types = token_types(gguf, texts.len())?;
        let options = tokenizer_spm::Options::from_gguf(gguf, texts.len());
        let scores = tokenizer_spm::scores(gguf, texts.len())?;
        let sentence_piece = SentencePiece::new(&texts, &types, scores, &options);
        let pieces = texts
            .iter()
            .zip(&types)
            .map(|(text, &token_type)| tokenizer_spm::piece_bytes(text, token_type))
            .collect();
        let end_of_generation = end_of_generation(gguf, options.eos, &texts, &types);
        Ok(Self {
            encoder: Encoder::SentencePiece(sentence_piece),
            pieces,
            texts,
            bos: options.bos,
            eos: options.eos,
            add_bos: options.add_bos,
            end_of_generation,
        })
    }

    /// Build the tokenizer a Hugging Face `tokenizer.json` describes: byte-level BPE
    /// only, as [`Tokenizer::from_gguf`]. `bos` and `eos` are token texts, as
    /// `tokenizer_config.json` names them. Its special added tokens print nothing, as
    /// GGUF's control tokens; the post-processor is not applied (BOS is `add_bos`'s).
    pub fn from_json(
        json: &str,
        bos: Option<&str>,
        eos: Option<&str>,
        add_bos: bool,
    ) -> Result<Self, TokenizerError> {
        let inner: tokenizers::Tokenizer = json
            .parse()
            .map_err(|error| TokenizerError::Build(format!("tokenizer.json: {error}")))?;
        match inner.get_model() {
            // SentencePiece-style vocabularies (Llama 2, Mistral) spell bytes as <0x..> tokens.
            ModelWrapper::BPE(bpe) if !bpe.byte_fallback => {}
            ModelWrapper::BPE(_) => {
                return Err(TokenizerError::Unsupported(
                    "BPE with byte fallback (SentencePiece style)".into(),
                ))
            }
            _ => {
                return Err(TokenizerError::Unsupported(
                    "model other than BPE in tokenizer.json".into(),
                ))
            }
        }
        let added = inner.get_added_tokens_decoder();
        let texts: Vec<String> = (0..inner.get_vocab_size(true) as u32)
            .map(|id| inner.id_to_token(id).unwrap_or_default())
            .collect();
        let bytes_of = unicode_to_byte();
        let pieces = texts
            .iter()
            .enumerate()
            .map(|(id, text)| match added.get(&(id as u32)) {
                Some(token) if token.special => Vec::new(),
                Some(_) => text.as_bytes().to_vec(),
                None => text
                    .chars()
                    .flat_map(|c| {
                        bytes_of
                            .get(&c)
                            .map(|&b| vec![b])
                            .unwrap_or_else(|| c.to_string().into_bytes())
                    })
                    .collect(),
            })
            .collect();
        let id = |text: Option<&str>| text.and_then(|text| inner.token_to_id(text));
        let (bos, eos) = (id(bos), id(eos));
        let mut end_of_generation: Vec<u32> = eos.into_iter().collect();
        end_of_generation.extend(
            added
                .iter()
                .filter(|(_, token)| {
                    token.special && END_OF_TURN_TEXTS.contains(&token.content.as_str())
                })
                .map(|(&id, _)| id),
        );
        Ok(Self {
            encoder: Encoder::BytePairs(Box::new(inner)),
            pieces,
            texts,
            bos,
            eos,
            add_bos,
            end_of_generation,
        })
    }

    /// The tokenizer as Hugging Face `tokenizer.json` text (what [`Tokenizer::from_json`]
    /// reads): byte-level BPE only, as that is all `from_json` takes.
    pub fn to_json(&self) -> Result<String, TokenizerError> {
        match &self.encoder {
            Encoder::BytePairs(inner) => {
                inner.to_string(true).map_err(|error| TokenizerError::Build(error.to_string()))
            }
            Encoder::SentencePiece(_) => Err(TokenizerError::Unsupported(
                "tokenizer.json for a SentencePiece vocabulary".into(),
            )),
        }
    }

    /// Encode `text`, turning special-token texts into their ids and prepending BOS
    /// when the model asks for it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = Vec::new();
        if let (true, Some(bos)) = (self.add_bos, self.bos) {
            ids.push(bos);
        }
        match &self.encoder {
            Encoder::BytePairs(inner) => {
                let encoding = inner
                    .encode_fast(text, false)
                    .map_err(|error| TokenizerError::Encode(error.to_string()))?;
                ids.extend_from_slice(encoding.get_ids());
            }
            Encoder::SentencePiece(sentence_piece) => sentence_piece.encode_into(text, &mut ids)?,
        }
        Ok(ids)
    }

    /// The bytes a token stands for in output (empty for control tokens).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.pieces.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// The token's vocabulary text, as the file spells it.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }

    pub fn vocab_size(&self) -> usize {
        self.texts.len()
    }
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// The tokens that end generation: EOS, end-of-turn and end-of-message.
    pub fn end_of_generation(&self) -> &[u32] {
        &self.end_of_generation
    }

    /// True for tokens that end generation: EOS, end-of-turn and end-of-message.
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.end_of_generation.contains(&id)
    }
}

/// Turns a stream of token bytes into text that never splits a UTF-8 character.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a token's bytes; returns the text that is now complete. Invalid sequences
    /// become U+FFFD; an incomplete one at the end waits for the next token.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return out;
                }
                Err(error) => {
                    let valid = error.valid_up_to();
                    out.push_str(
                        std::str::from_utf8(&self.pending[..valid]).expect("checked prefix"),
                    );
                    match error.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                    }
                }
            }
        }
    }

    /// Flush at the end of generation: a dangling partial character becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = if self.pending.is_empty() {
            String::new()
        } else {
            String::from_utf8_lossy(&self.pending).into_owned()
        };
        self.pending.clear();
        out
    }
}
