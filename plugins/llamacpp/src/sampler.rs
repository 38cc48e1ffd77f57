//! llama.cpp's sampler chain, built in llama-server's order from a request's settings.

use std::ptr::NonNull;

use llama_cpp_sys_2 as sys;

use crate::ffi::Token;

/// The parts of a sampler chain, in llama-server's order.
pub struct SamplerSpec {
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub repeat_last_n: i32,
    /// OpenAI's, over the same window as the repeat penalty.
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    /// `(token, bias)` added to the logits first.
    pub logit_bias: Vec<(Token, f32)>,
    pub seed: u32,
    /// The model's vocabulary size, which the penalties and the bias need.
    pub vocab_size: i32,
}

/// How a generation picks its tokens: a llama.cpp sampler chain, or none for greedy
/// decoding without penalties or bias, which [`crate::ffi::greedy`] does on the logits in place.
pub struct Sampler {
    /// Read by [`crate::ffi::RawContext::sample`].
    pub(crate) chain: Option<NonNull<sys::llama_sampler>>,
}

// SAFETY: a chain is plain state owned by its wrapper; it is built on the caller's
// thread and then used by the model's thread alone.
unsafe impl Send for Sampler {}

impl Sampler {
    pub fn new(spec: &SamplerSpec) -> Option<Self> {
        let penalised = (spec.repeat_penalty != 1.0
            || spec.frequency_penalty != 0.0
            || spec.presence_penalty != 0.0)
            && spec.repeat_last_n != 0;
        if spec.temperature <= 0.0 && !penalised && spec.logit_bias.is_empty() {
            return Some(Self { chain: None });
        }
        // SAFETY: plain constructors; the chain takes ownership of every added sampler.
        unsafe {
            let mut params = sys::llama_sampler_chain_default_params();
            params.no_perf = true;
            let chain = NonNull::new(sys::llama_sampler_chain_init(params))?;
            // Owned from here, so an early return frees it.
            let sampler = Self { chain: Some(chain) };
            let add = |added: *mut sys::llama_sampler| {
                sys::llama_sampler_chain_add(chain.as_ptr(), added);
            };
            if !spec.logit_bias.is_empty() {
                let bias: Vec<sys::llama_logit_bias> = spec
                    .logit_bias
                    .iter()
                    .map(|&(token, bias)| sys::llama_logit_bias { token, bias })
                    .collect();
                // llama.cpp copies the list.
                add(sys::llama_sampler_init_logit_bias(
                    spec.vocab_size,
                    i32::try_from(bias.len()).unwrap_or(i32::MAX),
                    bias.as_ptr(),
                ));
            }
            if penalised {
                add(sys::llama_sampler_init_penalties(
                    spec.vocab_size,
                    spec.repeat_last_n,
                    spec.repeat_penalty,
                    spec.frequency_penalty,
                    spec.presence_penalty,
                ));
            }
            if spec.temperature <= 0.0 {
                add(sys::llama_sampler_init_greedy());
                return Some(sampler);
            }
            if spec.top_k > 0 {
                add(sys::llama_sampler_init_top_k(spec.top_k));
            }
            if spec.top_p < 1.0 {
                add(sys::llama_sampler_init_top_p(spec.top_p, 1));
            }
            if spec.min_p > 0.0 {
                add(sys::llama_sampler_init_min_p(spec.min_p, 1));
            }
            add(sys::llama_sampler_init_temp(spec.temperature));
            add(sys::llama_sampler_init_dist(spec.seed));
            Some(sampler)
        }
    }

    /// Record tokens as seen, so the repeat penalty covers them too.
    pub fn accept(&mut self, tokens: &[Token]) {
        let Some(chain) = self.chain else { return };
        for &token in tokens {
            // SAFETY: the chain is alive.
            unsafe { sys::llama_sampler_accept(chain.as_ptr(), token) }
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        if let Some(chain) = self.chain {
            // SAFETY: owned chain; freeing it frees the samplers it holds.
            unsafe { sys::llama_sampler_free(chain.as_ptr()) }
        }
    }
}
