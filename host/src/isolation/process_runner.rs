//! A model served by a worker process, as the scheduler sees it: a [`Runner`] like any
//! other.
//!
//! The runner owns one worker at a time. When that worker dies (a crash, or a kill for
//! hanging) only the calls in flight on it fail; the next call starts a fresh worker and
//! loads the model again — unless the backend keeps crashing, in which case the
//! [`CrashLog`] makes it wait, longer after each crash in a row, instead of looping.
//! Dropping the runner (the hard idle timeout, eviction, unload) ends the worker, so
//! everything the backend held, host and device memory alike, goes back to the system.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hearth_sdk::{
    Embedding, GenerateRequest, GenerateStats, LoadRequest, MemoryUsage, PluginError, SinkControl,
    TokenSink,
};

use super::protocol::{Call, Event, PROTOCOL_VERSION};
use super::supervisor::{Next, WorkerProcess};
use crate::lifecycle::Runner;
use crate::plugin::KeptLibrary;

/// The first wait after repeated crashes; it doubles with each further crash in a row.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The longest wait between two workers of a crashing backend.
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// How often a load in progress looks whether its worker is still there.
const LOAD_POLL: Duration = Duration::from_secs(1);

/// How long to wait before the next worker of a backend whose workers crashed `crashes`
/// times in a row: not at all after one crash (a request that crashed a backend is
/// usually to blame, not the backend), then 1 s, 2 s, 4 s … up to a minute.
pub fn backoff(crashes: u32) -> Duration {
    match crashes {
        0 | 1 => Duration::ZERO,
        n => BACKOFF_BASE.saturating_mul(1 << (n - 2).min(16)).min(BACKOFF_CAP),
    }
}

/// Crashes in a row of each backend's workers, shared by all its models.
#[derive(Debug, Default)]
pub struct CrashLog {
    backends: Mutex<HashMap<String, Crashes>>,
}

#[derive(Debug)]
struct Crashes {
    count: u32,
    last: Instant,
    cause: String,
}

impl CrashLog {
    pub fn record(&self, backend: &str, cause: &PluginError, at: Instant) {
        let mut backends = self.backends.lock().unwrap_or_else(PoisonError::into_inner);
        let crashes = backends.entry(backend.to_string()).or_insert(Crashes {
            count: 0,
            last: at,
            cause: String::new(),
        });
        crashes.count += 1;
        crashes.last = at;
        crashes.cause = cause.message.to_string();
    }

    /// A generation finished: the backend works again.
    pub fn clear(&self, backend: &str) {
        self.backends.lock().unwrap_or_else(PoisonError::into_inner).remove(backend);
    }

    /// Whether a new worker of `backend` may start at `now`; if not, why and when.
    pub fn check(&self, backend: &str, now: Instant) -> Result<(), PluginError> {
        let backends = self.backends.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(crashes) = backends.get(backend) else { return Ok(()) };
        let ready = crashes.last + backoff(crashes.count);
        if now >= ready {
            return Ok(());
        }
        Err(PluginError::internal(format!(
            "the `{backend}` backend crashed {} times in a row, so its next worker starts in {:.1} s; last crash: {}",
            crashes.count,
            (ready - now).as_secs_f64(),
            crashes.cause
        )))
    }
}

/// What a worker for one model needs.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// The `hearth` binary to run in worker mode.
    pub program: PathBuf,
    /// The plugin library: the registry's kept copy of the build that loads the model,
    /// held so that a fresh worker after a crash still finds it.
    pub plugin: Arc<KeptLibrary>,
    pub backend: String,
    pub load: LoadRequest,
    pub stall_timeout: Duration,
}

/// One model in a worker process; see the module docs.
pub struct ProcessRunner {
    spec: WorkerSpec,
    crashes: Arc<CrashLog>,
    /// The current worker: a dead one stays until the next call sees it (and counts
    /// the crash); none while a crashing backend waits out its backoff.
    worker: Mutex<Option<Arc<WorkerProcess>>>,
}

impl ProcessRunner {
    /// Start a worker and load the model in it.
    pub fn start(spec: WorkerSpec, crashes: Arc<CrashLog>) -> Result<Self, PluginError> {
        let worker = start_worker(&spec, &crashes)?;
        Ok(Self { spec, crashes, worker: Mutex::new(Some(Arc::new(worker))) })
    }

    /// The worker to call, started afresh if the last one died. Each death is counted
    /// once, here, when it is first seen.
    fn worker(&self) -> Result<Arc<WorkerProcess>, PluginError> {
        let mut current = self.worker.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(death) = current.as_ref().and_then(|worker| worker.death()) {
            if !death.expected {
                self.crashes.record(&self.spec.backend, &death.error, Instant::now());
            }
            *current = None;
        }
        if let Some(worker) = current.as_ref() {
            return Ok(worker.clone());
        }
        let worker = Arc::new(start_worker(&self.spec, &self.crashes)?);
        tracing::info!(backend = %self.spec.backend, model = %self.spec.load.model_id, pid = worker.pid(), "a fresh worker took over");
        *current = Some(worker.clone());
        Ok(worker)
    }

    /// The current worker if it is alive; a dead one holds nothing and needs nothing.
    fn live_worker(&self) -> Option<Arc<WorkerProcess>> {
        let current = self.worker.lock().unwrap_or_else(PoisonError::into_inner);
        current.as_ref().filter(|worker| worker.death().is_none()).cloned()
    }

    /// Ask the live worker `call`; its failure comes back as the error.
    fn call_live(&self, call: Call, what: &str) -> Result<Event, PluginError> {
        let worker = self.live_worker().ok_or_else(|| {
            PluginError::internal(format!(
                "the `{}` worker is not running; the next generation starts a new one",
                self.spec.backend
            ))
        })?;
        match worker.call(call, what)? {
            Event::Failed { error } => Err(error),
            event => Ok(event),
        }
    }
}

fn unexpected(event: Event, what: &str) -> PluginError {
    PluginError::internal(format!("the worker answered {what} with {event:?}"))
}

/// Spawn a worker and load the model in it; a worker that dies on the way counts as a
/// crash of its backend.
fn start_worker(spec: &WorkerSpec, crashes: &CrashLog) -> Result<WorkerProcess, PluginError> {
    crashes.check(&spec.backend, Instant::now())?;
    let worker =
        WorkerProcess::spawn(&spec.program, spec.plugin.path(), &spec.backend, spec.stall_timeout)?;
    let pending =
        worker.start(Call::Load { protocol: PROTOCOL_VERSION, request: spec.load.clone() })?;
    // No stall timeout: a large model may take minutes to read. The health checks
    // still end a worker that stops answering altogether.
    loop {
        match pending.next(LOAD_POLL) {
            Next::Silent => {}
            Next::Event(Event::Loaded { .. }) => return Ok(worker),
            Next::Event(Event::Failed { error }) => return Err(error),
            Next::Event(other) => worker.kill(&format!("it answered a load with {other:?}")),
            Next::Died(error) => {
                crashes.record(&spec.backend, &error, Instant::now());
                return Err(error);
            }
        }
    }
}

impl Runner for ProcessRunner {
    fn generate(
        &self,
        request: &GenerateRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<GenerateStats, PluginError> {
        let worker = self.worker()?;
        let handed_over = Instant::now();
        let pending = worker.start(Call::Generate { request: request.clone() })?;
        let stall = worker.stall_timeout();
        let mut cancelled = false;
        let mut killed = false;
        loop {
            // Until the rest of the stall timeout; once killed, until the death is told.
            let wait = match killed {
                false => stall.saturating_sub(worker.generation_silence(handed_over)),
                true => stall,
            };
            match pending.next(wait.max(Duration::from_millis(1))) {
                Next::Event(Event::Token { piece }) => {
                    // After a cancel the pieces already on their way are dropped.
                    if !cancelled && sink.on_token(&piece) == SinkControl::Stop {
                        cancelled = true;
                        worker.notify(Call::Cancel { generation: pending.id });
                    }
                }
                Next::Event(Event::Logprobs { logprobs }) => {
                    if !cancelled {
                        sink.on_logprobs(&logprobs);
                    }
                }
                Next::Event(Event::Done { stats }) => {
                    self.crashes.clear(&self.spec.backend);
                    return Ok(stats);
                }
                Next::Event(Event::Failed { error }) => return Err(error),
                Next::Event(other) => {
                    worker.kill(&format!("it answered a generation with {other:?}"));
                }
                // Silent for this wait, but the worker may have produced for another
                // generation meanwhile (this one waits its turn): only a worker silent
                // for the whole stall timeout is hung.
                Next::Silent if killed || worker.generation_silence(handed_over) < stall => {}
                Next::Silent => {
                    killed = true;
                    worker.kill(&format!(
                        "it produced nothing for {stall:?} while generating (the stall timeout)"
                    ));
                }
                // The crash is counted when the next call finds the worker dead.
                Next::Died(error) => return Err(error),
            }
        }
    }

    fn trim(&self) -> Result<(), PluginError> {
        let Some(worker) = self.live_worker() else { return Ok(()) };
        match worker.call(Call::Trim, "a trim")? {
            Event::Trimmed => Ok(()),
            Event::Failed { error } => Err(error),
            other => {
                Err(PluginError::internal(format!("the worker answered a trim with {other:?}")))
            }
        }
    }

    fn memory(&self) -> MemoryUsage {
        let Some(worker) = self.live_worker() else { return MemoryUsage::default() };
        match worker.call(Call::Memory, "a memory query") {
            Ok(Event::Memory { host_bytes, device_bytes }) => {
                MemoryUsage { host_bytes, device_bytes }
            }
            _ => MemoryUsage::default(),
        }
    }

    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>, PluginError> {
        let call = Call::Tokenize { text: text.to_string(), add_special };
        match self.call_live(call, "a tokenize call")? {
            Event::Tokens { tokens } => Ok(tokens),
            other => Err(unexpected(other, "a tokenize call")),
        }
    }

    fn detokenize(&self, tokens: &[u32]) -> Result<String, PluginError> {
        let call = Call::Detokenize { tokens: tokens.to_vec() };
        match self.call_live(call, "a detokenize call")? {
            Event::Text { text } => Ok(text),
            other => Err(unexpected(other, "a detokenize call")),
        }
    }

    fn count_prompt_tokens(&self, request: &GenerateRequest) -> Result<u32, PluginError> {
        let call = Call::CountPromptTokens { request: request.clone() };
        match self.call_live(call, "a count_prompt_tokens call")? {
            Event::Count { tokens } => Ok(tokens),
            other => Err(unexpected(other, "a count_prompt_tokens call")),
        }
    }

    fn embed(&self, text: &str, truncate: bool) -> Result<Embedding, PluginError> {
        let call = Call::Embed { text: text.to_string(), truncate };
        match self.call_live(call, "an embed call")? {
            Event::Embedding { embedding } => Ok(embedding),
            other => Err(unexpected(other, "an embed call")),
        }
    }

    /// Called under the scheduler's lock, so it never waits: while a fresh worker is
    /// being started (the lock below is held for the whole load) the model counts as
    /// running.
    fn running(&self) -> bool {
        match self.worker.try_lock() {
            Ok(current) => current.as_ref().is_some_and(|worker| worker.death().is_none()),
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_after_crashes_starts_at_nothing_then_doubles_up_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|crashes| backoff(crashes).as_secs()).collect();
        assert_eq!(waits, [0, 1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff(u32::MAX), BACKOFF_CAP);
    }

    #[test]
    fn a_crashing_backend_waits_out_its_backoff_and_a_success_clears_it() {
        let log = CrashLog::default();
        let start = Instant::now();
        let crash = PluginError::internal("killed by signal 11");
        log.record("llamacpp", &crash, start);
        assert!(log.check("llamacpp", start).is_ok(), "one crash does not delay the next worker");
        log.record("llamacpp", &crash, start);
        log.record("llamacpp", &crash, start);
        let refused = log.check("llamacpp", start + Duration::from_millis(500)).unwrap_err();
        assert!(refused.message.contains("crashed 3 times in a row"), "{refused}");
        assert!(refused.message.contains("signal 11"), "{refused}");
        assert!(log.check("webgpu", start).is_ok(), "other backends are not held back");
        assert!(log.check("llamacpp", start + backoff(3)).is_ok());
        log.clear("llamacpp");
        log.record("llamacpp", &crash, start);
        assert!(log.check("llamacpp", start).is_ok());
    }
}
