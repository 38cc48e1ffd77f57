//! Constrained decoding with llguidance, the grammar engine llama.cpp, vLLM and
//! mistral.rs use: a [`GrammarCompiler`] is built once per model from its vocabulary, and
//! compiles a request's grammar ([`crate::GenerateRequest::grammar`], llguidance's Lark
//! dialect, in which `%json { … }` embeds a JSON schema) into a [`Constraint`] that masks
//! the logits before each token is sampled.

use std::fmt;
use std::sync::{Arc, OnceLock};

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, SimpleVob, TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};

use super::Tokenizer;
use crate::PluginError;

/// A grammar that does not compile, or a token it does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrammarError(pub String);

impl fmt::Display for GrammarError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for GrammarError {}

fn error(context: &str, cause: impl fmt::Display) -> GrammarError {
    GrammarError(format!("{context}: {cause}"))
}

/// One vocabulary entry as the grammar engine sees it.
pub struct VocabToken {
    /// The bytes the token prints; for a control token, its text (e.g. `<|im_end|>`).
    pub bytes: Vec<u8>,
    /// Control tokens are matched only where a grammar names them (`<|im_end|>` in Lark),
    /// never as the text they spell.
    pub control: bool,
}

/// A model's vocabulary, ready to compile grammars against. Building one walks the whole
/// vocabulary, so a model builds it once, on its first constrained request.
pub struct GrammarCompiler {
    factory: ParserFactory,
    end_of_generation: Vec<u32>,
}

impl GrammarCompiler {
    /// `vocab` in id order; `end_of_generation` are the tokens that end a generation (the
    /// first stands for all of them in the grammar engine).
    pub fn new(vocab: Vec<VocabToken>, end_of_generation: Vec<u32>) -> Result<Self, GrammarError> {
        let eos = *end_of_generation
            .first()
            .ok_or_else(|| GrammarError("the model has no end-of-generation token".into()))?;
        let words: Vec<Vec<u8>> = vocab
            .into_iter()
            .map(|token| {
                if token.control {
                    let mut marked = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    marked.extend_from_slice(&token.bytes);
                    marked
                } else {
                    token.bytes
                }
            })
            .collect();
        let vocab_size = u32::try_from(words.len())
            .map_err(|_| GrammarError("the vocabulary is too large".into()))?;
        let info = TokRxInfo::new(vocab_size, eos);
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(TokTrie::from(&info, &words)));
        let mut factory =
            ParserFactory::new_simple(&env).map_err(|cause| error("grammar engine", cause))?;
        // Warnings go into the error of a failed compile, not to the host's stderr.
        factory.set_stderr_log_level(0);
        Ok(Self { factory, end_of_generation })
    }

    /// The vocabulary of one of the SDK's tokenizers: a token that prints nothing but
    /// has a text is a control token.
    pub fn for_tokenizer(tokenizer: &Tokenizer) -> Result<Self, GrammarError> {
        let vocab = (0..tokenizer.vocab_size() as u32)
            .map(|id| {
                let bytes = tokenizer.token_bytes(id);
                let text = tokenizer.token_text(id).unwrap_or_default();
                if bytes.is_empty() && !text.is_empty() {
                    VocabToken { bytes: text.as_bytes().to_vec(), control: true }
                } else {
                    VocabToken { bytes: bytes.to_vec(), control: false }
                }
            })
            .collect();
        Self::new(vocab, tokenizer.end_of_generation().to_vec())
    }

    /// Compile a grammar in llguidance's Lark dialect.
    pub fn compile(&self, grammar: &str) -> Result<Constraint, GrammarError> {
        let parser = self
            .factory
            .create_parser(TopLevelGrammar::from_lark(grammar.to_string()))
            .map_err(|cause| error("invalid grammar (llguidance's Lark syntax)", cause))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(cause) = matcher.get_error() {
            return Err(error("invalid grammar (llguidance's Lark syntax)", cause));
        }
        Ok(Constraint { matcher, end_of_generation: self.end_of_generation.clone() })
    }
}

/// A model's [`GrammarCompiler`], built on its first constrained request (or why it
/// could not be) and kept for the next.
#[derive(Default)]
pub struct Grammars(OnceLock<Result<GrammarCompiler, GrammarError>>);

impl Grammars {
    /// `grammar` compiled for the model's vocabulary, which `vocabulary` builds the first
    /// time; none for an empty grammar. A grammar that does not compile is the request's
    /// fault; a vocabulary the engine cannot take is the backend's.
    pub fn constraint(
        &self,
        grammar: &str,
        vocabulary: impl FnOnce() -> Result<GrammarCompiler, GrammarError>,
    ) -> Result<Option<Constraint>, PluginError> {
        if grammar.is_empty() {
            return Ok(None);
        }
        let compiler =
            self.0.get_or_init(vocabulary).as_ref().map_err(|error| {
                PluginError::unsupported(format!("constrained decoding: {error}"))
            })?;
        compiler.compile(grammar).map(Some).map_err(|error| PluginError::invalid_request(error.0))
    }
}

/// One generation's grammar state.
pub struct Constraint {
    matcher: Matcher,
    end_of_generation: Vec<u32>,
}

impl Constraint {
    /// The tokens the grammar allows next. Where it may end, every end-of-generation
    /// token is allowed.
    pub fn allowed(&mut self) -> Result<AllowedTokens<'_>, GrammarError> {
        let set = self.matcher.compute_mask_or_eos().map_err(|cause| error("grammar", cause))?;
        let may_end = set.is_allowed(self.end_of_generation[0]);
        Ok(AllowedTokens { set, may_end, end_of_generation: &self.end_of_generation })
    }

    /// Set the logit of every token the grammar does not allow next to −∞. Logits past
    /// the vocabulary (padding) are never allowed.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<(), GrammarError> {
        let allowed = self.allowed()?;
        for (token, logit) in logits.iter_mut().enumerate() {
            if !allowed.contains(token as u32) {
                *logit = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    /// Advance past the chosen token. An end-of-generation token ends the grammar, which
    /// it was allowed to only where the grammar may end.
    pub fn accept(&mut self, token: u32) -> Result<(), GrammarError> {
        if self.end_of_generation.contains(&token) {
            return if self.matcher.is_stopped() || self.is_accepting() {
                Ok(())
            } else {
                Err(GrammarError("the generation ended where the grammar may not".into()))
            };
        }
        self.matcher.consume_token(token).map_err(|cause| error("grammar", cause))
    }

    /// True once the grammar has matched a whole sentence it can end on.
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false)
    }
}

/// The tokens a [`Constraint`] allows at one step.
pub struct AllowedTokens<'a> {
    set: SimpleVob,
    may_end: bool,
    end_of_generation: &'a [u32],
}

impl AllowedTokens<'_> {
    pub fn contains(&self, token: u32) -> bool {
        if self.end_of_generation.contains(&token) {
            return self.may_end;
        }
        (token as usize) < self.set.len() && self.set.is_allowed(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte as a token, a few multi-byte tokens, and one control token at the end.
    fn compiler() -> GrammarCompiler {
        let mut vocab: Vec<VocabToken> =
            (0..=255u8).map(|byte| VocabToken { bytes: vec![byte], control: false }).collect();
        for word in ["{\"", "\":", "true", "false", "name"] {
            vocab.push(VocabToken { bytes: word.as_bytes().to_vec(), control: false });
        }
        vocab.push(VocabToken { bytes: b"<|end|>".to_vec(), control: true });
        let end = vocab.len() as u32 - 1;
        GrammarCompiler::new(vocab, vec![end]).unwrap()
    }

    fn allowed(constraint: &mut Constraint, vocab_size: usize) -> Vec<u32> {
        let mut logits = vec![0.0; vocab_size];
        constraint.mask(&mut logits).unwrap();
        (0..vocab_size as u32).filter(|&token| logits[token as usize].is_finite()).collect()
    }

    #[test]
    fn a_literal_grammar_allows_only_its_next_byte_and_then_the_end() {
        let compiler = compiler();
        let mut constraint = compiler.compile("start: \"ok\"").unwrap();
        assert_eq!(allowed(&mut constraint, 262), vec![u32::from(b'o')]);
        constraint.accept(u32::from(b'o')).unwrap();
        constraint.accept(u32::from(b'k')).unwrap();
        assert!(constraint.is_accepting());
        assert_eq!(allowed(&mut constraint, 262), vec![261]);
        constraint.accept(261).unwrap();
    }

    #[test]
    fn a_json_schema_grammar_allows_the_multi_byte_tokens_that_fit_it() {
        let compiler = compiler();
        let grammar = r#"start: %json {"type": "object", "properties": {"name": {"type": "boolean"}}, "required": ["name"], "additionalProperties": false}"#;
        let mut constraint = compiler.compile(grammar).unwrap();
        let first = allowed(&mut constraint, 262);
        assert!(first.contains(&256), "the {{\" token fits: {first:?}");
        assert!(!first.contains(&u32::from(b'[')));
        // Padding past the vocabulary is never allowed.
        assert!(!allowed(&mut constraint, 300).iter().any(|&token| token >= 262));
    }

    #[test]
    fn a_grammar_that_does_not_parse_is_refused_with_the_engines_reason() {
        let error = compiler().compile("start: (").err().unwrap();
        assert!(error.0.starts_with("invalid grammar"), "{error}");
    }
}
