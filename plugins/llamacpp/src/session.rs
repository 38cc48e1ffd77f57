//! One model's inference context together with what its KV cache holds, and the two
//! halves of a generation on it: evaluating the prompt and streaming the answer.

use hearth_sdk::{FinishReason, PluginError, SinkControl, TokenSink};

use crate::ffi::{DecodeError, RawAdapter, RawContext, RawModel, Sampler, Token};
use crate::stream::{Filtered, StopFilter, Utf8Buffer};

/// A context and the bookkeeping that lets the next request reuse its cache.
pub struct Session {
    context: RawContext,
    /// The tokens whose keys and values the context holds, so the next request can
    /// reuse a shared prefix (a chat's earlier turns) instead of evaluating it again.
    cached: Vec<Token>,
    /// The adapters (path, scale) the cached tokens were evaluated with.
    cached_adapters: Vec<(String, f32)>,
}

/// How the answer is to be produced and where it goes.
pub struct Answer<'a> {
    pub sampler: &'a mut Sampler,
    pub stop: Vec<String>,
    /// 0 means "no limit but the context".
    pub max_tokens: u32,
    /// Prompt and answer together must fit in this many tokens.
    pub window: usize,
    pub sink: &'a mut dyn TokenSink,
}

fn decode_failed(code: i32) -> PluginError {
    PluginError::internal(format!("llama_decode failed ({code})"))
}

impl Session {
    pub fn new(context: RawContext) -> Self {
        Self {
            context,
            cached: Vec::new(),
            cached_adapters: Vec::new(),
        }
    }

    /// The context's real size (llama.cpp rounds the requested one up).
    pub fn size(&self) -> u32 {
        self.context.size()
    }

    /// Make exactly these adapters active. The cache stays valid only when they are
    /// the ones it was computed with.
    pub fn use_adapters(
        &mut self,
        adapters: &[(&RawAdapter, f32, String)],
    ) -> Result<(), PluginError> {
        let pairs: Vec<(&RawAdapter, f32)> = adapters
            .iter()
            .map(|(raw, scale, _)| (*raw, *scale))
            .collect();
        let active: Vec<(String, f32)> = adapters
            .iter()
            .map(|(_, scale, path)| (path.clone(), *scale))
            .collect();
        if active != self.cached_adapters {
            self.cached.clear();
            self.cached_adapters = active;
        }
        if !self.context.set_adapters(&pairs) {
            // Whatever llama.cpp kept, the cache no longer says which adapters made it.
            self.cached.clear();
            self.cached_adapters.clear();
            return Err(PluginError::invalid_request(
                "llama.cpp refused the request's adapters",
            ));
        }
        Ok(())
    }

    /// Evaluate the prompt after the longest cached prefix it shares, always evaluating
    /// its last token so there are fresh logits to sample from.
    pub fn evaluate_prompt(&mut self, prompt: &[Token]) -> Result<(), PluginError> {
        let shared = self
            .cached
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        let mut reuse = shared.min(prompt.len().saturating_sub(1));
        if reuse == 0 || !self.context.truncate(reuse) {
            self.context.clear();
            reuse = 0;
        }
        self.cached.truncate(reuse);
        for chunk in prompt[reuse..].chunks(self.context.batch_size()) {
            if let Err(error) = self.context.decode(chunk) {
                self.cached.clear();
                self.context.clear();
                return Err(match error {
                    DecodeError::NoSpace => {
                        PluginError::invalid_request("the prompt does not fit the context")
                    }
                    DecodeError::Failed(code) => decode_failed(code),
                });
            }
            self.cached.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// Sample, filter and stream the answer; returns the tokens generated and why it
    /// ended. The sink is asked between tokens whether to go on.
    pub fn answer(
        &mut self,
        model: &RawModel,
        answer: Answer<'_>,
    ) -> Result<(u32, FinishReason), PluginError> {
        let Answer {
            sampler,
            stop,
            max_tokens,
            window,
            sink,
        } = answer;
        // Send non-empty text; true when the sink wants no more.
        let mut emit = |text: &str| !text.is_empty() && sink.on_token(text) == SinkControl::Stop;
        let mut utf8 = Utf8Buffer::default();
        let mut stops = StopFilter::new(stop);
        let mut bytes = Vec::new();
        let mut generated = 0u32;
        let finish = loop {
            if self.cached.len() >= window {
                break FinishReason::Length;
            }
            let token = self.context.sample(sampler);
            if model.is_end_of_generation(token) {
                break FinishReason::Stop;
            }
            generated += 1;
            bytes.clear();
            model.token_bytes(token, &mut bytes);
            match stops.push(&utf8.push(&bytes)) {
                Filtered::Stopped(text) => {
                    break if emit(&text) {
                        FinishReason::Cancelled
                    } else {
                        FinishReason::Stop
                    }
                }
                Filtered::Emit(text) if emit(&text) => break FinishReason::Cancelled,
                Filtered::Emit(_) => {}
            }
            if max_tokens != 0 && generated >= max_tokens {
                break FinishReason::Length;
            }
            match self.context.decode(&[token]) {
                Ok(()) => self.cached.push(token),
                Err(DecodeError::NoSpace) => break FinishReason::Length,
                Err(DecodeError::Failed(code)) => {
                    self.cached.clear();
                    return Err(decode_failed(code));
                }
            }
        };
        if finish != FinishReason::Cancelled {
            // Text held back was no stop string after all: it belongs to the answer.
            // Bytes of a character the model never finished are dropped, not shown
            // as U+FFFD.
            // The generation is over either way; a Stop here changes nothing.
            emit(&stops.finish());
        }
        Ok((generated, finish))
    }
}
