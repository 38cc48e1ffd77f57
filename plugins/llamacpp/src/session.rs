//! One model's inference context, shared by up to `parallel` generations at once (see
//! [`parallel_from_env`]), and what each sequence's part of the KV cache holds:
//! evaluating a new generation's prompt in a free sequence, and one decode step that
//! advances every running generation by a token in a single batch.

use hearth_sdk::PluginError;

use crate::device_greedy::DeviceGreedy;
use crate::ffi::{DecodeError, RawAdapter, RawBatch, RawContext, Token};
use crate::sampler::Sampler;

/// The variable that sets how many generations of one model run at once.
pub const PARALLEL_VARIABLE: &str = "HEARTH_LLAMACPP_PARALLEL";

/// How many generations of one model run at once: `HEARTH_LLAMACPP_PARALLEL`, 1 to
/// 64, else 1, as Ollama's `OLLAMA_NUM_PARALLEL` and llama-server's `--parallel`. With
/// more than one, the KV cache is one for all of them, so more sequences cost no more
/// memory, and a step decodes one token of each, which on a CPU costs little more than
/// decoding one. The price, as with llama-server: an answer given beside others may
/// differ late from the one given alone where two tokens nearly tie, because where a
/// sequence's cells sit in the shared cache changes the rounding of attention. With one
/// (the default), the same request always gives the same answer.
pub fn parallel_from_env() -> Result<usize, PluginError> {
    match std::env::var(PARALLEL_VARIABLE) {
        Err(_) => Ok(1),
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(count @ 1..=64) => Ok(count),
            _ => Err(PluginError::invalid_request(format!(
                "{PARALLEL_VARIABLE}={text:?}: expected a number of generations from 1 to 64"
            ))),
        },
    }
}

/// A context and, per sequence, the tokens its cells hold.
pub struct Session {
    /// Declared before `sequences` so that it is freed first: llama.cpp uses their
    /// attached [`DeviceGreedy`] chains until then.
    context: RawContext,
    sequences: Vec<Sequence>,
    /// The device refused greedy sampling once (it is the CPU, or lacks an operation);
    /// not asked again.
    device_greedy_refused: bool,
    /// The adapters (path, scale) every cached token was evaluated with.
    adapters: Vec<(String, f32)>,
    batch: RawBatch,
}

#[derive(Default)]
struct Sequence {
    /// The tokens whose keys and values the cache holds for this sequence, so a later
    /// request sharing a prefix with them (a chat's earlier turns) reuses them.
    cached: Vec<Token>,
    busy: bool,
    /// Attached while this sequence's generations decode greedily on the device.
    device_greedy: Option<DeviceGreedy>,
}

/// Why a prompt or a step could not be evaluated.
pub enum Refusal {
    /// The shared cache is full; finishing another generation makes room.
    NoRoom,
    Failed(PluginError),
}

fn decode_failed(code: i32) -> PluginError {
    PluginError::internal(format!("llama_decode failed ({code})"))
}

impl Session {
    /// A session of `parallel` sequences on a context made for that many.
    pub fn new(context: RawContext, parallel: usize) -> Self {
        let batch = RawBatch::new(context.batch_size().max(parallel));
        Self {
            context,
            sequences: (0..parallel).map(|_| Sequence::default()).collect(),
            device_greedy_refused: false,
            adapters: Vec::new(),
            batch,
        }
    }

    /// The context's real size (llama.cpp rounds the requested one up).
    pub fn size(&self) -> u32 {
        self.context.size()
    }

    /// The adapters the cache was computed with.
    pub fn adapters(&self) -> &[(String, f32)] {
        &self.adapters
    }

    /// Make exactly these adapters active; only while no generation runs. The cache
    /// stays valid only when they are the ones it was computed with.
    pub fn use_adapters(
        &mut self,
        adapters: &[(&RawAdapter, f32, String)],
    ) -> Result<(), PluginError> {
        let pairs: Vec<(&RawAdapter, f32)> =
            adapters.iter().map(|(raw, scale, _)| (*raw, *scale)).collect();
        let active: Vec<(String, f32)> =
            adapters.iter().map(|(_, scale, path)| (path.clone(), *scale)).collect();
        if active != self.adapters {
            self.forget_all();
            self.adapters = active;
        }
        if !self.context.set_adapters(&pairs) {
            // Whatever llama.cpp kept, the cache no longer says which adapters made it.
            self.forget_all();
            self.adapters.clear();
            return Err(PluginError::invalid_request("llama.cpp refused the request's adapters"));
        }
        Ok(())
    }

    /// Forget every sequence's cache.
    fn forget_all(&mut self) {
        self.context.clear();
        for sequence in &mut self.sequences {
            sequence.cached.clear();
        }
    }

    /// Forget what one sequence holds (after a failure, its cache may be anything).
    pub fn forget(&mut self, id: usize) {
        if !self.context.truncate(seq(id), 0) {
            self.forget_all();
        }
        self.sequences[id].cached.clear();
    }

    /// Drop the caches of the sequences no generation uses, to make room.
    fn evict_idle(&mut self) -> bool {
        let idle: Vec<usize> = (0..self.sequences.len())
            .filter(|&id| !self.sequences[id].busy && !self.sequences[id].cached.is_empty())
            .collect();
        for &id in &idle {
            self.forget(id);
        }
        !idle.is_empty()
    }

    /// Take a free sequence for `prompt` — the one whose cache shares the longest
    /// prefix with it — and evaluate the prompt after that prefix, always evaluating
    /// its last token so there are fresh logits. Returns the sequence and the batch
    /// index of those logits, for [`Session::sample`]. `greedy_on_device`: the
    /// generation decodes greedily and needs no logits on the host (no log-probabilities),
    /// so the device may pick its tokens.
    pub fn start(
        &mut self,
        prompt: &[Token],
        greedy_on_device: bool,
    ) -> Result<(usize, usize), Refusal> {
        let shared_with = |sequence: &Sequence| {
            sequence.cached.iter().zip(prompt).take_while(|(a, b)| a == b).count()
        };
        let id = (0..self.sequences.len())
            .filter(|&id| !self.sequences[id].busy)
            .max_by_key(|&id| shared_with(&self.sequences[id]))
            .ok_or(Refusal::NoRoom)?;
        let mut reuse = shared_with(&self.sequences[id]).min(prompt.len().saturating_sub(1));
        if !self.context.truncate(seq(id), reuse) {
            self.forget_all();
            reuse = 0;
        }
        self.sequences[id].cached.truncate(reuse);
        self.sequences[id].busy = true;
        self.sample_on_device(id, greedy_on_device);
        match self.evaluate(id, &prompt[reuse..]) {
            Ok(index) => Ok((id, index)),
            Err(refusal) => {
                self.forget(id);
                self.sequences[id].busy = false;
                Err(refusal)
            }
        }
    }

    /// Attach or detach sequence `id`'s device greedy sampler. An attached one stays
    /// while the sequence's generations keep wanting it: each change makes llama.cpp
    /// plan its graph again.
    fn sample_on_device(&mut self, id: usize, wanted: bool) {
        let attached = self.sequences[id].device_greedy.is_some();
        if wanted == attached || (wanted && self.device_greedy_refused) {
            return;
        }
        if attached {
            self.context.detach(seq(id));
            self.sequences[id].device_greedy = None;
            return;
        }
        self.sequences[id].device_greedy = self.context.attach(seq(id));
        self.device_greedy_refused = self.sequences[id].device_greedy.is_none();
    }

    /// Evaluate `tokens` after what sequence `id` holds, in batches; the index of the
    /// last token's logits in the last batch.
    fn evaluate(&mut self, id: usize, tokens: &[Token]) -> Result<usize, Refusal> {
        let mut retried = false;
        let chunk_size = self.context.batch_size();
        let mut done = 0;
        while done < tokens.len() {
            let chunk = &tokens[done..tokens.len().min(done + chunk_size)];
            let last = done + chunk.len() == tokens.len();
            self.batch.clear();
            let start = self.sequences[id].cached.len();
            for (offset, &token) in chunk.iter().enumerate() {
                let wants_logits = last && offset + 1 == chunk.len();
                self.batch.push(token, start + offset, seq(id), wants_logits);
            }
            match self.context.decode(&self.batch) {
                Ok(()) => {
                    self.sequences[id].cached.extend_from_slice(chunk);
                    done += chunk.len();
                }
                Err(DecodeError::NoSpace) if !retried && self.evict_idle() => retried = true,
                Err(DecodeError::NoSpace) => return Err(Refusal::NoRoom),
                Err(DecodeError::Failed(code)) => return Err(Refusal::Failed(decode_failed(code))),
            }
        }
        Ok(self.batch.len() - 1)
    }

    /// Decode the next token of each running generation, `(sequence, token)`, in one
    /// batch; item `i`'s logits are at batch index `i`.
    pub fn step(&mut self, next: &[(usize, Token)]) -> Result<(), Refusal> {
        let mut retried = false;
        loop {
            self.batch.clear();
            for &(id, token) in next {
                self.batch.push(token, self.sequences[id].cached.len(), seq(id), true);
            }
            match self.context.decode(&self.batch) {
                Ok(()) => break,
                Err(DecodeError::NoSpace) if !retried && self.evict_idle() => retried = true,
                Err(DecodeError::NoSpace) => return Err(Refusal::NoRoom),
                Err(DecodeError::Failed(code)) => return Err(Refusal::Failed(decode_failed(code))),
            }
        }
        for &(id, token) in next {
            self.sequences[id].cached.push(token);
        }
        Ok(())
    }

    /// Sample sequence `id`'s next token from the logits at `index` of the last batch
    /// (or take the one its device greedy sampler picked); logits that are not finite
    /// numbers are an error, not a token.
    pub fn sample(
        &mut self,
        sampler: &mut Sampler,
        id: usize,
        index: usize,
    ) -> Result<Token, PluginError> {
        let token = if self.sequences[id].device_greedy.is_some() {
            self.context.device_sample(index)
        } else {
            self.context.sample(sampler, index)
        };
        let token = token.ok_or_else(PluginError::non_finite_logits)?;
        sampler.grammar_failure()?;
        Ok(token)
    }

    /// The log-probabilities of `chosen` and the `top` likeliest tokens at `index` of
    /// the last batch (see [`RawContext::logprobs`]).
    pub fn logprobs(
        &self,
        index: usize,
        chosen: Token,
        top: u32,
    ) -> Option<(f32, Vec<(u32, f32)>)> {
        self.context.logprobs(index, chosen, top)
    }

    /// How many tokens sequence `id` holds.
    pub fn cached(&self, id: usize) -> usize {
        self.sequences[id].cached.len()
    }

    /// The generation on sequence `id` ended; its cache stays for a later prefix.
    pub fn release(&mut self, id: usize) {
        self.sequences[id].busy = false;
    }
}

/// llama.cpp's id of sequence `id`.
fn seq(id: usize) -> i32 {
    i32::try_from(id).unwrap_or(i32::MAX)
}
