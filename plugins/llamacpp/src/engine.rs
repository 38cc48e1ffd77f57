//! The one thread that runs a model's llama.cpp computation, and how it runs several
//! generations at once.
//!
//! ggml's CPU backend parallelises each graph with OpenMP, and an OpenMP thread team
//! belongs to the thread that starts it. Were generations run on whichever host thread
//! calls (a tokio blocking thread, a worker's job thread), every new caller would start
//! a team of its own; once libgomp manages more threads than the machine has cores it
//! stops spinning at barriers and sleeps on a futex instead, and ggml puts a barrier
//! between every operation of the graph, about a thousand per token. Measured in
//! `hearth bench` on a 2-core machine: up to 100 000 voluntary context switches for
//! six short generations, and decoding at half of llama.cpp's own speed. So each model
//! computes on one thread of its own, as llama-server does with its main loop, and the
//! caller relays the pieces to its sink.
//!
//! That thread runs up to `HEARTH_LLAMACPP_PARALLEL` generations together (1 unless
//! set; see [`crate::session::parallel_from_env`]), as llama-server's slots do: a new
//! request's prompt is evaluated as soon as a sequence is free, then every step
//! decodes the next token of all running generations in one batch, so eight streams
//! cost little more than one. Generations share the context's adapters, so a
//! request with other adapters waits until the running ones finish; requests start in
//! the order they came.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use hearth_sdk::{FinishReason, GenerateStats, PluginError, TokenLogprob, TokenLogprobs};

use crate::ffi::{RawAdapter, RawModel, Token};
use crate::model::{Adapters, Loaded, Prepared};
use crate::sampler::Sampler;
use crate::session::{Refusal, Session};
use crate::stream::{Filtered, StopFilter, Utf8Buffer};

/// What the model's thread is asked to do.
pub enum Work {
    Generate(Job),
    /// Free the context if no generation runs; answered when done.
    Trim(Sender<()>),
}

/// What a generation hands its caller, in order.
pub enum Output {
    Text(String),
    /// The next token's log-probabilities, before the text it completes.
    Logprobs(TokenLogprobs),
}

/// One generation: the prepared request, where its pieces go, and where its outcome.
pub struct Job {
    pub request: Prepared,
    /// Closed by the caller to cancel.
    pub pieces: Sender<Output>,
    pub outcome: Sender<Result<GenerateStats, PluginError>>,
}

/// The model's thread.
pub struct Engine {
    // Dropped before the join in `drop`, which ends the thread's loop.
    work: Option<Mutex<Sender<Work>>>,
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    pub fn new(loaded: Arc<Loaded>) -> Result<Self, PluginError> {
        let (work, queue) = mpsc::channel::<Work>();
        let scheduler = Scheduler {
            loaded: loaded.clone(),
            session: None,
            adapters: Adapters::default(),
            waiting: VecDeque::new(),
            running: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("llama.cpp {}", loaded.id))
            .spawn(move || scheduler.run(&queue))
            .map_err(|error| {
                PluginError::internal(format!("could not start the model's thread: {error}"))
            })?;
        Ok(Self { work: Some(Mutex::new(work)), thread: Some(thread) })
    }

    /// Hand work to the thread. A send fails only once the thread is gone; the work's
    /// reply channels then close, which the caller reads as [`engine_gone`].
    pub fn submit(&self, work: Work) {
        if let Some(sender) = &self.work {
            let _ = sender.lock().unwrap_or_else(std::sync::PoisonError::into_inner).send(work);
        }
    }
}

/// What the caller reads when the model's thread went away without answering.
pub fn engine_gone() -> PluginError {
    PluginError::internal("the model's llama.cpp thread ended without an answer")
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.work = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The model's thread's state: the context, the loaded adapters, and the generations
/// waiting and running.
struct Scheduler {
    loaded: Arc<Loaded>,
    /// Created on first use and freed by a trim.
    session: Option<Session>,
    adapters: Adapters,
    waiting: VecDeque<Job>,
    running: Vec<Running>,
}

/// A generation in progress on one sequence.
struct Running {
    pieces: Sender<Output>,
    outcome: Sender<Result<GenerateStats, PluginError>>,
    sequence: usize,
    sampler: Sampler,
    utf8: Utf8Buffer,
    stops: StopFilter,
    /// The last token's bytes; kept so each token reuses the allocation.
    bytes: Vec<u8>,
    /// 0 means "no limit but the context".
    max_tokens: u32,
    /// Alternatives reported with each token's log-probability; none reports nothing.
    logprobs: Option<u32>,
    /// Prompt and answer together must fit in this many tokens.
    window: usize,
    prompt_tokens: u32,
    generated: u32,
    /// The token sampled last, decoded at the next step.
    next: Token,
    prompt_ms: f64,
    decode_started: Instant,
}

impl Running {
    /// Send non-empty text to the caller; true when the caller stopped listening.
    fn emit(&self, text: &str) -> bool {
        !text.is_empty() && self.pieces.send(Output::Text(text.to_string())).is_err()
    }

    /// Take a sampled token, with its log-probabilities when the request asked for
    /// them: hand out both, unless it ends the generation; why the generation ends,
    /// if it does.
    fn take(
        &mut self,
        model: &RawModel,
        token: Token,
        logprobs: Option<(f32, Vec<(u32, f32)>)>,
    ) -> Option<FinishReason> {
        if model.is_end_of_generation(token) {
            return Some(FinishReason::Stop);
        }
        self.generated += 1;
        if let Some((logprob, top)) = logprobs {
            let entry = |token: u32, logprob: f32| {
                let mut bytes = Vec::new();
                model.token_bytes(Token::try_from(token).unwrap_or(0), &mut bytes);
                TokenLogprob { token, bytes: bytes.into(), logprob }
            };
            let logprobs = TokenLogprobs {
                chosen: entry(u32::try_from(token).unwrap_or(0), logprob),
                top: top.into_iter().map(|(token, logprob)| entry(token, logprob)).collect(),
            };
            if self.pieces.send(Output::Logprobs(logprobs)).is_err() {
                return Some(FinishReason::Cancelled);
            }
        }
        self.bytes.clear();
        model.token_bytes(token, &mut self.bytes);
        let text = self.utf8.push(&self.bytes);
        match self.stops.push(&text) {
            Filtered::Stopped(text) => {
                return Some(if self.emit(&text) {
                    FinishReason::Cancelled
                } else {
                    FinishReason::Stop
                })
            }
            Filtered::Emit(text) if self.emit(&text) => return Some(FinishReason::Cancelled),
            Filtered::Emit(_) => {}
        }
        if self.max_tokens != 0 && self.generated >= self.max_tokens {
            return Some(FinishReason::Length);
        }
        self.next = token;
        None
    }
}

impl Scheduler {
    fn run(mut self, queue: &Receiver<Work>) {
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
                match queue.recv() {
                    Ok(work) => self.take(work),
                    // The model is gone, and nothing is left to finish.
                    Err(_) => return,
                }
            }
            while let Ok(work) = queue.try_recv() {
                self.take(work);
            }
            self.guarded(Self::admit);
            self.guarded(Self::step);
        }
    }

    fn take(&mut self, work: Work) {
        match work {
            Work::Generate(job) => self.waiting.push_back(job),
            Work::Trim(done) => {
                // The host trims only idle models; a busy one keeps its context.
                if self.running.is_empty() && self.waiting.is_empty() {
                    self.session = None;
                    self.loaded.set_context_bytes(0);
                }
                let _ = done.send(());
            }
        }
    }

    /// Run `phase`, turning a panic into an error for every running generation and a
    /// fresh context for the next ones, so the thread lives on.
    fn guarded(&mut self, phase: fn(&mut Self)) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| phase(self))) {
            let what = panic
                .downcast_ref::<&str>()
                .map(std::string::ToString::to_string)
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string());
            let error = PluginError::internal(format!("the llama.cpp plugin panicked: {what}"));
            for running in self.running.drain(..) {
                let _ = running.outcome.send(Err(error.clone()));
            }
            self.session = None;
            self.loaded.set_context_bytes(0);
        }
    }

    fn fail_first_waiting(&mut self, error: PluginError) {
        if let Some(job) = self.waiting.pop_front() {
            let _ = job.outcome.send(Err(error));
        }
    }

    /// Start waiting generations, in order, while a sequence is free and their
    /// adapters are the running ones'.
    fn admit(&mut self) {
        let loaded = self.loaded.clone();
        while self.running.len() < loaded.parallel {
            let Some(job) = self.waiting.front() else {
                return;
            };
            let adapters = match loaded.resolve_adapters(&mut self.adapters, &job.request.adapters)
            {
                Ok(adapters) => adapters,
                Err(error) => {
                    self.fail_first_waiting(error);
                    continue;
                }
            };
            let session = match &mut self.session {
                Some(session) => session,
                empty => match loaded.new_session() {
                    Ok(session) => empty.insert(session),
                    Err(error) => {
                        self.fail_first_waiting(error);
                        continue;
                    }
                },
            };
            if self.running.is_empty() {
                if let Err(error) = session.use_adapters(&adapters) {
                    self.fail_first_waiting(error);
                    continue;
                }
            } else if !same_adapters(&adapters, session.adapters()) {
                return;
            }
            // llama.cpp rounds the context up (to 256); the requested size is the limit.
            let window = loaded.context_size.min(session.size()) as usize;
            let prompt_tokens = job.request.prompt.len();
            if prompt_tokens >= window {
                let error = PluginError::invalid_request(format!(
                    "the prompt has {prompt_tokens} tokens; the context holds {window}"
                ));
                self.fail_first_waiting(error);
                continue;
            }
            let started = Instant::now();
            let greedy_on_device =
                job.request.sampler.is_plain_greedy() && job.request.logprobs.is_none();
            let (sequence, index) = match session.start(&job.request.prompt, greedy_on_device) {
                Ok(started) => started,
                // Others hold the cache; it frees up as they finish.
                Err(Refusal::NoRoom) if !self.running.is_empty() => return,
                Err(Refusal::NoRoom) => {
                    let error = PluginError::invalid_request("the prompt does not fit the context");
                    self.fail_first_waiting(error);
                    continue;
                }
                Err(Refusal::Failed(error)) => {
                    self.fail_first_waiting(error);
                    continue;
                }
            };
            let prompt_ms = elapsed_ms(started);
            let Some(Job { request, pieces, outcome }) = self.waiting.pop_front() else {
                return;
            };
            let Prepared { mut sampler, stop, max_tokens, logprobs, .. } = request;
            let decode_started = Instant::now();
            let first = match session.sample(&mut sampler, sequence, index) {
                Ok(first) => first,
                Err(error) => {
                    session.release(sequence);
                    let _ = outcome.send(Err(error));
                    continue;
                }
            };
            let mut running = Running {
                pieces,
                outcome,
                sequence,
                sampler,
                utf8: Utf8Buffer::default(),
                stops: StopFilter::new(stop),
                bytes: Vec::new(),
                max_tokens,
                logprobs,
                window,
                prompt_tokens: u32::try_from(prompt_tokens).unwrap_or(u32::MAX),
                generated: 0,
                next: first,
                prompt_ms,
                decode_started,
            };
            let first_logprobs = logprobs.and_then(|top| session.logprobs(index, first, top));
            match running.take(&loaded.weights, first, first_logprobs) {
                Some(finish) => self.finish(running, finish),
                None => self.running.push(running),
            }
        }
    }

    /// Decode the next token of every running generation in one batch, then sample
    /// and hand out the one after it; generations that end leave.
    fn step(&mut self) {
        loop {
            let Some(session) = self.session.as_mut() else {
                return;
            };
            if self.running.is_empty() {
                return;
            }
            let next: Vec<(usize, Token)> =
                self.running.iter().map(|running| (running.sequence, running.next)).collect();
            match session.step(&next) {
                Ok(()) => break,
                // The shared cache is full: the longest generation ends, as it would
                // at the end of its window, and the others go on.
                Err(Refusal::NoRoom) => {
                    let longest = (0..self.running.len())
                        .max_by_key(|&at| session.cached(self.running[at].sequence))
                        .unwrap_or(0);
                    let running = self.running.remove(longest);
                    self.finish(running, FinishReason::Length);
                }
                Err(Refusal::Failed(error)) => {
                    for running in self.running.drain(..) {
                        session.forget(running.sequence);
                        session.release(running.sequence);
                        let _ = running.outcome.send(Err(error.clone()));
                    }
                    return;
                }
            }
        }
        self.hand_out();
    }

    /// After a step: sample each running generation's next token from its logits.
    fn hand_out(&mut self) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let mut ended = Vec::new();
        for (index, running) in self.running.iter_mut().enumerate() {
            if session.cached(running.sequence) >= running.window {
                ended.push((index, Ok(FinishReason::Length)));
                continue;
            }
            match session.sample(&mut running.sampler, running.sequence, index) {
                Ok(token) => {
                    let logprobs =
                        running.logprobs.and_then(|top| session.logprobs(index, token, top));
                    if let Some(finish) = running.take(&self.loaded.weights, token, logprobs) {
                        ended.push((index, Ok(finish)));
                    }
                }
                Err(error) => ended.push((index, Err(error))),
            }
        }
        for (index, end) in ended.into_iter().rev() {
            let running = self.running.remove(index);
            match end {
                Ok(finish) => self.finish(running, finish),
                Err(error) => {
                    if let Some(session) = self.session.as_mut() {
                        session.release(running.sequence);
                    }
                    let _ = running.outcome.send(Err(error));
                }
            }
        }
    }

    /// End a generation: the text held back, the figures, its sequence freed.
    fn finish(&mut self, mut running: Running, finish: FinishReason) {
        if finish != FinishReason::Cancelled {
            // Text held back was no stop string after all: it belongs to the answer.
            // Bytes of a character the model never finished are dropped, not shown
            // as U+FFFD. The generation is over either way.
            let held = running.stops.finish();
            running.emit(&held);
        }
        if let Some(session) = self.session.as_mut() {
            session.release(running.sequence);
        }
        let stats = GenerateStats {
            prompt_tokens: running.prompt_tokens,
            completion_tokens: running.generated,
            prompt_ms: running.prompt_ms,
            decode_ms: elapsed_ms(running.decode_started),
            finish_reason: finish,
        };
        let _ = running.outcome.send(Ok(stats));
    }
}

/// Whether the resolved adapters are the ones `(path, scale)` lists.
fn same_adapters(adapters: &[(&RawAdapter, f32, String)], active: &[(String, f32)]) -> bool {
    adapters.len() == active.len()
        && adapters.iter().zip(active).all(|((_, scale, path), (active_path, active_scale))| {
            path == active_path && scale == active_scale
        })
}

fn elapsed_ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}
