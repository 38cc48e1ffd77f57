//! The generation loop every engine shares: chat template, tokenizer, prompt-prefix
//! reuse, sampling, stop strings, UTF-8-safe streaming, cancellation and stats. An
//! engine supplies only an [`Executor`], which evaluates tokens at positions and
//! returns the last one's logits.

use std::time::Instant;

use hearth_sdk::abi_stable::std_types::RString;
use hearth_sdk::helpers::{
    chat_template_source, CandidateSampling, ChatTemplate, Constraint, Gguf, GrammarCompiler,
    GrammarError, Grammars, LogitAdjustments, Sampler, StopMatcher, StreamDecoder, Tokenizer,
};
use hearth_sdk::{
    feature, FinishReason, GenerateRequest, GenerateStats, PluginError, SinkControl, TokenLogprob,
    TokenLogprobs, TokenSink,
};

use crate::Config;

/// The features an engine gets from this loop, [`Text`] and [`crate::embed()`]: the
/// chat template, the sampling fields beyond llama-server's defaults,
/// log-probabilities, tokenizing, tools handed to the template, and embeddings.
pub const FEATURES: &[&str] = &[
    feature::EMBEDDINGS,
    feature::CHAT_TEMPLATE,
    feature::LOGPROBS,
    feature::PRESENCE_FREQUENCY_PENALTIES,
    feature::LOGIT_BIAS,
    feature::TOKENIZE,
    feature::GRAMMAR,
    feature::TOOLS,
];

/// Context used when the request leaves it to the backend.
pub const DEFAULT_CONTEXT: u32 = 4096;

/// The context a model runs with: the request's, else [`DEFAULT_CONTEXT`], never more
/// than the model was trained for.
pub fn context_size(requested: u32, config: &Config) -> u32 {
    let requested = if requested == 0 { DEFAULT_CONTEXT } else { requested };
    requested.min(config.context_length)
}

/// An engine's forward pass over its KV cache.
pub trait Executor {
    /// Evaluate `tokens` at positions `pos..`, after the first `pos` tokens already in
    /// the cache (anything cached beyond them is stale and overwritten), and return the
    /// last token's logits.
    fn forward(&mut self, tokens: &[u32], pos: u32) -> Result<Vec<f32>, PluginError>;

    /// Evaluate like [`Executor::forward`] and return the last token's most likely
    /// next token (the first of equal logits), picked where the logits are, for plain
    /// greedy decoding ([`Sampler::is_plain_greedy`]); `None`, evaluating nothing,
    /// where the engine does not pick tokens itself.
    fn forward_greedy(&mut self, tokens: &[u32], pos: u32) -> Result<Option<u32>, PluginError> {
        let _ = (tokens, pos);
        Ok(None)
    }

    /// Evaluate like [`Executor::forward`] and return the token top-k sampling picks
    /// from the last token's logits, sampled where the logits are as
    /// [`CandidateSampling::pick`] samples, with the draws `draw` gives, one a step in
    /// the order the steps are evaluated ([`Sampler::top_k_only`]); `None`, evaluating
    /// and drawing nothing, where the engine does not sample itself.
    fn forward_sampled(
        &mut self,
        tokens: &[u32],
        pos: u32,
        sampling: &CandidateSampling,
        draw: &mut dyn FnMut() -> f32,
    ) -> Result<Option<u32>, PluginError> {
        let _ = (tokens, pos, sampling, draw);
        Ok(None)
    }

    /// Evaluate like [`Executor::forward`] and return the last token's `k` largest
    /// logits with their token ids, largest first (the first of equal logits first),
    /// found where the logits are, for top-k sampling ([`Sampler::top_k_only`]); with
    /// `adjustments`, of the logits adjusted as [`LogitAdjustments::apply`] adjusts them
    /// ([`Sampler::adjusted_top_k`]). `None`, evaluating nothing, where the engine does
    /// not find them itself.
    fn forward_top_k(
        &mut self,
        tokens: &[u32],
        pos: u32,
        k: u32,
        adjustments: Option<&LogitAdjustments>,
    ) -> Result<Option<Vec<(u32, f32)>>, PluginError> {
        let _ = (tokens, pos, k, adjustments);
        Ok(None)
    }
}

/// What a step leaves for picking the next token: the logits, the token itself where
/// the engine picked it ([`Executor::forward_greedy`], [`Executor::forward_sampled`]),
/// or the candidates of top-k sampling (of the adjusted logits, with a bias or
/// penalties) where the engine found them ([`Executor::forward_top_k`]).
enum Next {
    Logits(Vec<f32>),
    Token(u32),
    Candidates(Vec<(u32, f32)>),
}

/// A model's text side: its tokenizer and chat template, and the grammar engine's view
/// of its vocabulary, built on the first constrained request.
pub struct Text {
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    grammars: Grammars,
}

impl Text {
    pub fn new(tokenizer: Tokenizer, template: ChatTemplate) -> Self {
        Self { tokenizer, template, grammars: Grammars::default() }
    }

    /// The request's grammar, compiled for this vocabulary; none when it has none.
    pub fn constraint(&self, grammar: &str) -> Result<Option<Constraint>, PluginError> {
        self.grammars.constraint(grammar, || GrammarCompiler::for_tokenizer(&self.tokenizer))
    }

    /// The tokenizer and chat template a GGUF file carries; without a template, its
    /// family's turn format or ChatML, as every engine renders it.
    pub fn from_gguf(gguf: &Gguf, config: &Config) -> Result<Self, PluginError> {
        let tokenizer = Tokenizer::from_gguf(gguf)
            .map_err(|error| PluginError::unsupported(error.to_string()))?;
        let source =
            chat_template_source(gguf.str("tokenizer.chat_template").ok(), config.arch.gguf_name);
        let text =
            |id: Option<u32>| id.and_then(|id| tokenizer.token_text(id)).unwrap_or("").to_string();
        let template = ChatTemplate::new(source, &text(tokenizer.bos()), &text(tokenizer.eos()))
            .map_err(|error| PluginError::unsupported(error.to_string()))?;
        Ok(Self::new(tokenizer, template))
    }

    /// The token ids of `text`, with the beginning-of-sequence token the model adds
    /// itself only when `add_special`.
    pub fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>, PluginError> {
        let mut tokens = self
            .tokenizer
            .encode(text)
            .map_err(|error| PluginError::invalid_request(error.to_string()))?;
        if !add_special && tokens.first().is_some_and(|&first| Some(first) == self.tokenizer.bos())
        {
            tokens.remove(0);
        }
        Ok(tokens)
    }

    /// The text of `tokens`; an id outside the vocabulary is refused by name.
    pub fn detokenize(&self, tokens: &[u32]) -> Result<String, PluginError> {
        let mut bytes = Vec::new();
        for &token in tokens {
            if self.tokenizer.token_text(token).is_none() {
                return Err(PluginError::invalid_request(format!(
                    "token {token} is not in the model's vocabulary"
                )));
            }
            bytes.extend_from_slice(self.tokenizer.token_bytes(token));
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The request's prompt tokens: its raw prompt, or its messages through the template.
    pub fn prompt(&self, request: &GenerateRequest) -> Result<Vec<u32>, PluginError> {
        let text = match request.prompt.as_ref().into_option() {
            Some(prompt) => prompt.to_string(),
            None => self
                .template
                .render_request(request)
                .map_err(|error| PluginError::invalid_request(error.to_string()))?,
        };
        self.tokenizer
            .encode(&text)
            .map_err(|error| PluginError::invalid_request(error.to_string()))
    }
}

/// What the KV cache holds after a generation: the tokens evaluated, and the adapters
/// they were evaluated with (a prefix is reusable only under the same ones).
#[derive(Default)]
pub struct Session {
    tokens: Vec<u32>,
    adapters: Vec<(String, f32)>,
}

impl Session {
    /// Tokens in the cache.
    pub fn len(&self) -> u32 {
        self.tokens.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Evaluate `prompt`, reusing the cached prefix it shares with the last one; at least
    /// the last prompt token is evaluated again, as its logits are needed.
    fn evaluate_prompt(
        &mut self,
        executor: &mut dyn Executor,
        prompt: &[u32],
        adapters: Vec<(String, f32)>,
    ) -> Result<Vec<f32>, PluginError> {
        if self.adapters != adapters {
            *self = Session { adapters, ..Session::default() };
        }
        let shared = self
            .tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len() - 1);
        self.tokens.truncate(shared);
        let logits = executor.forward(&prompt[shared..], shared as u32)?;
        self.tokens.extend_from_slice(&prompt[shared..]);
        Ok(logits)
    }
}

/// Run one generation of `request` on a model of context `ctx`, streaming text to
/// `sink`. On an error the session is reset, since a failed step may have left the
/// cache half written.
pub fn generate(
    text: &Text,
    ctx: u32,
    session: &mut Session,
    executor: &mut dyn Executor,
    request: &GenerateRequest,
    sink: &mut dyn TokenSink,
) -> Result<GenerateStats, PluginError> {
    let result = generate_in(text, ctx, session, executor, request, sink);
    if result.is_err() {
        *session = Session::default();
    }
    result
}

fn generate_in(
    text: &Text,
    ctx: u32,
    session: &mut Session,
    executor: &mut dyn Executor,
    request: &GenerateRequest,
    sink: &mut dyn TokenSink,
) -> Result<GenerateStats, PluginError> {
    let started = Instant::now();
    let prompt = text.prompt(request)?;
    if prompt.is_empty() || prompt.len() >= ctx as usize {
        return Err(PluginError::invalid_request(format!(
            "the prompt is {} tokens; it must be between 1 and {} for this context",
            prompt.len(),
            ctx - 1
        )));
    }
    let signature = request
        .adapters
        .iter()
        .filter(|a| a.scale != 0.0)
        .map(|a| (a.path.to_string(), a.scale))
        .collect();
    let mut next = Next::Logits(session.evaluate_prompt(executor, &prompt, signature)?);
    let prompt_ms = started.elapsed().as_secs_f64() * 1e3;

    let tokenizer = &text.tokenizer;
    let mut constraint = text.constraint(&request.grammar)?;
    let mut sampler = Sampler::for_request(request);
    prompt.iter().for_each(|&token| sampler.accept(token));
    // The engine may pick the token itself only where nothing needs the logits.
    let nothing_else_reads_logits = constraint.is_none() && request.logprobs.is_none();
    let engine_picks = sampler.is_plain_greedy() && nothing_else_reads_logits;
    let engine_ranks = sampler.top_k_only().filter(|_| nothing_else_reads_logits);
    let mut decoder = StreamDecoder::new();
    let mut stops = StopMatcher::new(request.stop.iter().map(RString::as_str));
    let max_tokens = if request.max_tokens == 0 { u32::MAX } else { request.max_tokens };
    let mut generated = 0u32;
    let mut stopped_by_string = false;
    let stats = |generated, finish_reason| GenerateStats {
        prompt_tokens: prompt.len() as u32,
        completion_tokens: generated,
        prompt_ms,
        decode_ms: started.elapsed().as_secs_f64() * 1e3 - prompt_ms,
        finish_reason,
    };
    let finish_reason = loop {
        let token = match (&next, constraint.as_mut()) {
            (Next::Token(token), _) => *token,
            (Next::Candidates(candidates), _) => sampler.sample_candidates(candidates),
            (Next::Logits(logits), Some(constraint)) => {
                // Log-probabilities stay those of the model's own distribution.
                let mut allowed = logits.clone();
                constraint.mask(&mut allowed).map_err(grammar_failed)?;
                let token = sampler.sample(&allowed);
                constraint.accept(token).map_err(grammar_failed)?;
                token
            }
            (Next::Logits(logits), None) => sampler.sample(logits),
        };
        if tokenizer.is_end_of_generation(token) {
            break FinishReason::Stop;
        }
        generated += 1;
        sampler.accept(token);
        if let (Some(top), Next::Logits(logits)) = (request.logprobs.into_option(), &next) {
            sink.on_logprobs(&token_logprobs(tokenizer, logits, token, top)?);
        }
        let released = stops.push(&decoder.push(tokenizer.token_bytes(token)));
        if !released.text.is_empty() && sink.on_token(&released.text) == SinkControl::Stop {
            break FinishReason::Cancelled;
        }
        if released.stopped {
            stopped_by_string = true;
            break FinishReason::Stop;
        }
        if generated >= max_tokens || session.len() + 1 >= ctx {
            break FinishReason::Length;
        }
        let pos = session.len();
        let picked = if engine_picks {
            executor.forward_greedy(&[token], pos)?
        } else if let Some(sampling) = engine_ranks {
            executor.forward_sampled(&[token], pos, &sampling, &mut || sampler.next_draw())?
        } else {
            None
        };
        let ranked = match engine_ranks {
            Some(sampling) if picked.is_none() => {
                executor.forward_top_k(&[token], pos, sampling.top_k, None)?
            }
            // Bias and penalties: the engine may adjust the logits where they are and
            // rank them there, as they stand after this step's token.
            None if nothing_else_reads_logits && !engine_picks => match sampler.adjusted_top_k() {
                Some((adjustments, k)) => {
                    executor.forward_top_k(&[token], pos, k, Some(&adjustments))?
                }
                None => None,
            },
            _ => None,
        };
        next = match (picked, ranked) {
            (Some(token), _) => Next::Token(token),
            (None, Some(candidates)) => Next::Candidates(candidates),
            (None, None) => Next::Logits(executor.forward(&[token], pos)?),
        };
        session.tokens.push(token);
    };
    if finish_reason != FinishReason::Cancelled && !stopped_by_string {
        // Text held back for a stop string that never came, and a cut character.
        let released = stops.push(&decoder.finish());
        let rest = if released.stopped { released.text } else { released.text + &stops.finish() };
        if !rest.is_empty() && sink.on_token(&rest) == SinkControl::Stop {
            return Ok(stats(generated, FinishReason::Cancelled));
        }
    }
    Ok(stats(generated, finish_reason))
}

/// A grammar that reached a state no token can leave: the engine's fault, not the
/// request's (a grammar that compiled always allows some token or the end).
fn grammar_failed(error: GrammarError) -> PluginError {
    PluginError::internal(format!("constrained decoding failed: {error}"))
}

/// The chosen token's log-probability and the `top` likeliest tokens', with their bytes.
fn token_logprobs(
    tokenizer: &Tokenizer,
    logits: &[f32],
    chosen: u32,
    top: u32,
) -> Result<TokenLogprobs, PluginError> {
    let (logprob, alternatives) =
        hearth_sdk::logprobs::token_logprobs(logits, chosen, top as usize)
            .ok_or_else(PluginError::non_finite_logits)?;
    let entry = |token: u32, logprob: f32| TokenLogprob {
        token,
        bytes: tokenizer.token_bytes(token).to_vec().into(),
        logprob,
    };
    Ok(TokenLogprobs {
        chosen: entry(chosen, logprob),
        top: alternatives.into_iter().map(|(token, logprob)| entry(token, logprob)).collect(),
    })
}
