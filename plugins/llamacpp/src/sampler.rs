//! llama.cpp's sampler chain, built in llama-server's order from a request's settings,
//! with a request's grammar as the chain's first sampler (as llama.cpp's own llguidance
//! sampler is).

use std::ffi::{c_char, c_void};
use std::ptr::NonNull;

use hearth_sdk::helpers::{Constraint, GrammarError};
use hearth_sdk::PluginError;
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
    /// The request's grammar, compiled for the model's vocabulary.
    pub constraint: Option<Constraint>,
}

/// How a generation picks its tokens: a llama.cpp sampler chain, or none for greedy
/// decoding without penalties or bias, which [`crate::ffi::greedy`] does on the logits in place.
pub struct Sampler {
    /// Read by [`crate::ffi::RawContext::sample`].
    pub(crate) chain: Option<NonNull<sys::llama_sampler>>,
    /// The state of the chain's grammar sampler, which the chain owns and frees.
    grammar: Option<NonNull<GrammarState>>,
}

// SAFETY: a chain is plain state owned by its wrapper; it is built on the caller's
// thread and then used by the model's thread alone.
unsafe impl Send for Sampler {}

impl Sampler {
    pub fn new(spec: SamplerSpec) -> Option<Self> {
        let penalised = (spec.repeat_penalty != 1.0
            || spec.frequency_penalty != 0.0
            || spec.presence_penalty != 0.0)
            && spec.repeat_last_n != 0;
        if spec.temperature <= 0.0
            && !penalised
            && spec.logit_bias.is_empty()
            && spec.constraint.is_none()
        {
            return Some(Self { chain: None, grammar: None });
        }
        // SAFETY: plain constructors; the chain takes ownership of every added sampler.
        unsafe {
            let mut params = sys::llama_sampler_chain_default_params();
            params.no_perf = true;
            let chain = NonNull::new(sys::llama_sampler_chain_init(params))?;
            // Owned from here, so an early return frees it.
            let mut sampler = Self { chain: Some(chain), grammar: None };
            let add = |added: *mut sys::llama_sampler| {
                sys::llama_sampler_chain_add(chain.as_ptr(), added);
            };
            if let Some(constraint) = spec.constraint {
                let state = Box::into_raw(Box::new(GrammarState {
                    constraint,
                    following: false,
                    failure: None,
                }));
                // `GRAMMAR_SAMPLER` is static, and `state` is freed by its `free`.
                let added = sys::llama_sampler_init(
                    std::ptr::addr_of!(GRAMMAR_SAMPLER).cast_mut(),
                    state.cast::<c_void>(),
                );
                add(added);
                sampler.grammar = NonNull::new(state);
            }
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

    /// Greedy decoding with nothing else: the token is the largest logit's, which the
    /// device computing the logits can pick itself (see [`crate::device_greedy`]).
    pub fn is_plain_greedy(&self) -> bool {
        self.chain.is_none()
    }

    /// Record prompt tokens as seen, so the repeat penalty covers them too; the grammar
    /// follows only the tokens sampled after them.
    pub fn accept_prompt(&mut self, tokens: &[Token]) {
        let Some(chain) = self.chain else { return };
        for &token in tokens {
            // SAFETY: the chain is alive.
            unsafe { sys::llama_sampler_accept(chain.as_ptr(), token) }
        }
        if let Some(mut grammar) = self.grammar {
            // SAFETY: the chain that owns the state is alive, and only this thread uses it.
            unsafe { grammar.as_mut().following = true };
        }
    }

    /// Why the grammar could not go on, once; checked after each sampled token.
    pub fn grammar_failure(&mut self) -> Result<(), PluginError> {
        let Some(mut grammar) = self.grammar else { return Ok(()) };
        // SAFETY: as in `accept_prompt`.
        match unsafe { grammar.as_mut().failure.take() } {
            Some(error) => {
                Err(PluginError::internal(format!("constrained decoding failed: {error}")))
            }
            None => Ok(()),
        }
    }
}

/// What the grammar sampler holds: the constraint, and the first error it met (the C
/// interface has no way to return one).
struct GrammarState {
    constraint: Constraint,
    /// False while the prompt's tokens are accepted.
    following: bool,
    failure: Option<GrammarError>,
}

/// llama.cpp's interface for a sampler written outside it.
static GRAMMAR_SAMPLER: sys::llama_sampler_i = sys::llama_sampler_i {
    name: Some(grammar_name),
    accept: Some(grammar_accept),
    apply: Some(grammar_apply),
    reset: None,
    clone: None,
    free: Some(grammar_free),
    backend_init: None,
    backend_accept: None,
    backend_apply: None,
    backend_set_input: None,
    backend_reset: None,
    copy_state: None,
};

/// The state behind a grammar sampler.
///
/// # Safety
/// `sampler` must be one made with [`GRAMMAR_SAMPLER`], used on one thread at a time.
unsafe fn grammar_state<'a>(sampler: *const sys::llama_sampler) -> &'a mut GrammarState {
    // SAFETY: per the contract, `ctx` is the boxed state, alive until `free`.
    unsafe { &mut *(*sampler).ctx.cast::<GrammarState>() }
}

unsafe extern "C" fn grammar_name(_: *const sys::llama_sampler) -> *const c_char {
    c"hearth-grammar".as_ptr()
}

unsafe extern "C" fn grammar_accept(sampler: *mut sys::llama_sampler, token: Token) {
    // SAFETY: llama.cpp calls this only on the sampler it was made for.
    let state = unsafe { grammar_state(sampler) };
    if !state.following || state.failure.is_some() {
        return;
    }
    if let Err(error) = state.constraint.accept(token.unsigned_abs()) {
        state.failure = Some(error);
    }
}

unsafe extern "C" fn grammar_apply(
    sampler: *mut sys::llama_sampler,
    candidates: *mut sys::llama_token_data_array,
) {
    // SAFETY: llama.cpp calls this only on the sampler it was made for, with a valid
    // array of `size` candidates.
    let (state, candidates) = unsafe {
        let candidates = &mut *candidates;
        (grammar_state(sampler), std::slice::from_raw_parts_mut(candidates.data, candidates.size))
    };
    let allowed = match state.constraint.allowed() {
        Ok(allowed) => allowed,
        Err(error) => {
            state.failure = Some(error);
            return;
        }
    };
    for candidate in candidates {
        if !allowed.contains(candidate.id.unsigned_abs()) {
            candidate.logit = f32::NEG_INFINITY;
        }
    }
}

unsafe extern "C" fn grammar_free(sampler: *mut sys::llama_sampler) {
    // SAFETY: the state was boxed by `Sampler::new`, and llama.cpp frees a sampler once.
    drop(unsafe { Box::from_raw((*sampler).ctx.cast::<GrammarState>()) });
}

impl Drop for Sampler {
    fn drop(&mut self) {
        if let Some(chain) = self.chain {
            // SAFETY: owned chain; freeing it frees the samplers it holds.
            unsafe { sys::llama_sampler_free(chain.as_ptr()) }
        }
    }
}
