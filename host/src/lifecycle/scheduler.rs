//! The table of resident models and the decisions made under its lock: acquire, load,
//! evict, unload, snapshot.
//!
//! One `std::sync::Mutex` guards the table and is never held across an `.await` or a
//! call into a plugin; everything slow (load, trim, drop) runs on a blocking thread
//! inside a spawned task, so a cancelled request can never leave an entry half-changed.

use super::{
    runner::{Claim, RunnerRef},
    timers, IdleTimeouts, KeepAlive, LoadSpec, LoadedModelSnapshot, Loader, MemorySnapshot,
    ModelKey, ModelState, Runner, SchedulerError, SchedulerPolicy,
};
use hearth_sdk::{ErrorKind, MemoryUsage, PluginError};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{SystemTime, UNIX_EPOCH},
};
use tokio::{
    runtime::Handle,
    sync::watch,
    task::JoinHandle,
    time::{timeout_at, Instant},
};

/// Hands out [`RunnerRef`]s and keeps the set of loaded models within the policy.
/// Cheap to clone: every clone is the same scheduler.
#[derive(Clone)]
pub struct Scheduler {
    shared: Arc<Shared>,
}

/// How a load ended, as seen by the requests waiting for it; `None` while it runs.
pub(super) type LoadOutcome = Option<Result<(), PluginError>>;

pub(super) struct Shared {
    loader: Arc<dyn Loader>,
    policy: SchedulerPolicy,
    models: Mutex<Models>,
    /// Bumped whenever a model becomes idle or leaves the table, so an acquire waiting
    /// for room re-checks. A watch channel rather than `Notify` because a receiver
    /// subscribed under the lock cannot miss a change made after it.
    changed: watch::Sender<()>,
}

#[derive(Default)]
pub(super) struct Models {
    pub(super) entries: HashMap<ModelKey, Entry>,
    next_id: u64,
}

impl Models {
    /// The entry for `key` if it is still the incarnation `id` (a model unloaded and
    /// loaded again is a new entry with a new id).
    pub(super) fn get(&mut self, key: &ModelKey, id: u64) -> Option<&mut Entry> {
        self.entries.get_mut(key).filter(|entry| entry.id == id)
    }
}

pub(super) struct Entry {
    pub(super) id: u64,
    pub(super) phase: Phase,
    /// Requests holding the model, including those waiting for its load.
    pub(super) refs: usize,
    pub(super) idle: IdleTimeouts,
    /// The latest request's keep-alive; it shapes the next idle period.
    pub(super) keep_alive: KeepAlive,
    /// `unload` was asked while requests were in flight: unload when the last ends.
    pub(super) unload_on_release: bool,
    estimated_bytes: u64,
    pub(super) memory: MemoryUsage,
    loaded_at: Option<Instant>,
    pub(super) last_used: Instant,
    /// Bumped whenever an idle period starts or ends; a timer task only acts while the
    /// epoch it was started with is current, which is how timers are cancelled.
    pub(super) epoch: u64,
    pub(super) trim_at: Option<Instant>,
    pub(super) unload_at: Option<Instant>,
}

pub(super) enum Phase {
    Loading(watch::Receiver<LoadOutcome>),
    Loaded {
        runner: Arc<dyn Runner>,
        trimmed: bool,
    },
    /// The runner is being dropped; the sender side is dropped once it is gone.
    Unloading(watch::Receiver<()>),
}

impl Entry {
    /// What the model counts against the memory budget.
    fn bytes(&self) -> u64 {
        match self.phase {
            Phase::Loading(_) => self.estimated_bytes,
            // A plugin's figures are not trusted to be sane: saturate, never overflow.
            _ => self.memory.host_bytes.saturating_add(self.memory.device_bytes),
        }
    }

    fn state(&self) -> ModelState {
        match self.phase {
            Phase::Loading(_) => ModelState::Loading,
            Phase::Unloading(_) => ModelState::Unloaded,
            Phase::Loaded { .. } if self.refs > 0 => ModelState::Busy,
            Phase::Loaded { trimmed: true, .. } => ModelState::Trimmed,
            Phase::Loaded { trimmed: false, .. } => ModelState::Ready,
        }
    }
}

/// What an acquire does next, decided under the lock and carried out without it.
enum Step {
    Ready(RunnerRef),
    AwaitLoad(Claim, watch::Receiver<LoadOutcome>),
    AwaitUnload(watch::Receiver<()>),
    AwaitEviction(JoinHandle<()>),
    AwaitIdle(watch::Receiver<()>),
}

impl Scheduler {
    pub fn new(loader: Arc<dyn Loader>, policy: SchedulerPolicy) -> Scheduler {
        let (changed, _) = watch::channel(());
        Scheduler { shared: Arc::new(Shared { loader, policy, models: Mutex::default(), changed }) }
    }

    /// A reference to the model `spec` names, loading it first if it is not resident.
    ///
    /// Concurrent first requests share one load; a failed load is reported to each of
    /// them and the next request tries again. When the model does not fit, idle models
    /// are evicted, least recently used first; when every resident model is busy this
    /// waits up to [`SchedulerPolicy::evict_wait`] for one to become idle.
    pub async fn acquire(
        &self,
        spec: LoadSpec,
        keep_alive: KeepAlive,
    ) -> Result<RunnerRef, SchedulerError> {
        let handle = Handle::current();
        let give_up_at = Instant::now() + self.shared.policy.evict_wait;
        loop {
            match self.shared.step(&spec, keep_alive, &handle) {
                Step::Ready(runner) => return Ok(runner),
                Step::AwaitLoad(claim, mut outcome) => {
                    // An error here means the load task vanished; handled below.
                    let _ = outcome.wait_for(Option::is_some).await;
                    if let Some(runner) = self.shared.claim_loaded(claim) {
                        return Ok(runner);
                    }
                    // The claim kept the model from being unloaded, so a missing
                    // runner means the load failed, or its task vanished at shutdown.
                    let source = match outcome.borrow().clone() {
                        Some(Err(error)) => error,
                        _ => PluginError::internal("the load was abandoned"),
                    };
                    return Err(SchedulerError::Load { model: spec.key, source });
                }
                // The unload ends by dropping the sender, which is all we wait for.
                Step::AwaitUnload(mut gone) => {
                    let _ = gone.changed().await;
                }
                Step::AwaitEviction(job) => {
                    let _ = job.await;
                }
                Step::AwaitIdle(mut changed) => {
                    if timeout_at(give_up_at, changed.changed()).await.is_err() {
                        let waited = self.shared.policy.evict_wait;
                        return Err(SchedulerError::Busy { model: spec.key, waited });
                    }
                }
            }
        }
    }

    /// Unload `key`. An idle model is dropped before this returns; a busy or loading
    /// one is marked and unloaded as soon as its last request ends, so in-flight
    /// requests finish normally.
    pub async fn unload(&self, key: &ModelKey) -> Result<(), SchedulerError> {
        let wait = {
            let mut models = self.shared.lock();
            let Some(entry) = models.entries.get_mut(key) else {
                return Err(SchedulerError::NotLoaded(key.clone()));
            };
            match &entry.phase {
                Phase::Unloading(gone) => Some(Wait::Unload(gone.clone())),
                Phase::Loaded { .. } if entry.refs == 0 => {
                    self.shared.begin_unload(&mut models, key).map(Wait::Job)
                }
                _ => {
                    entry.unload_on_release = true;
                    None
                }
            }
        };
        if let Some(wait) = wait {
            wait.finish().await;
        }
        Ok(())
    }

    /// Trim an idle model now, as its soft timeout would: caches go, weights stay, and
    /// its unload timer keeps running. A busy model is left alone (`false`).
    pub async fn trim(&self, key: &ModelKey) -> Result<bool, SchedulerError> {
        let (id, epoch) = {
            let mut models = self.shared.lock();
            let Some(entry) = models.entries.get_mut(key) else {
                return Err(SchedulerError::NotLoaded(key.clone()));
            };
            if entry.refs > 0 || !matches!(entry.phase, Phase::Loaded { .. }) {
                return Ok(false);
            }
            (entry.id, entry.epoch)
        };
        timers::trim(&self.shared, key, id, epoch).await;
        Ok(true)
    }

    /// Unload every model, for shutdown: idle ones now (this waits for them), busy and
    /// loading ones as soon as their last request ends.
    pub async fn unload_all(&self) {
        let waits: Vec<Wait> = {
            let mut models = self.shared.lock();
            let keys: Vec<ModelKey> = models.entries.keys().cloned().collect();
            let mut waits = Vec::new();
            for key in keys {
                let Some(entry) = models.entries.get_mut(&key) else {
                    continue;
                };
                match &entry.phase {
                    Phase::Unloading(gone) => waits.push(Wait::Unload(gone.clone())),
                    Phase::Loaded { .. } if entry.refs == 0 => {
                        waits.extend(self.shared.begin_unload(&mut models, &key).map(Wait::Job));
                    }
                    _ => entry.unload_on_release = true,
                }
            }
            waits
        };
        for wait in waits {
            wait.finish().await;
        }
    }

    /// Every resident model, sorted by key, for `hearth ps` and `GET /api/ps`.
    pub fn snapshot(&self) -> Vec<LoadedModelSnapshot> {
        let models = self.shared.lock();
        let clock = WallClock::now();
        let mut out: Vec<LoadedModelSnapshot> = models
            .entries
            .iter()
            .map(|(key, entry)| {
                let memory = match entry.phase {
                    Phase::Loading(_) => {
                        MemorySnapshot { host_bytes: entry.estimated_bytes, device_bytes: 0 }
                    }
                    _ => MemorySnapshot {
                        host_bytes: entry.memory.host_bytes,
                        device_bytes: entry.memory.device_bytes,
                    },
                };
                LoadedModelSnapshot {
                    key: key.clone(),
                    state: entry.state(),
                    refs: entry.refs,
                    memory,
                    loaded_at_ms: entry.loaded_at.map(|at| clock.unix_ms(at)),
                    last_used_ms: clock.unix_ms(entry.last_used),
                    trim_at_ms: entry.trim_at.map(|at| clock.unix_ms(at)),
                    unload_at_ms: entry.unload_at.map(|at| clock.unix_ms(at)),
                }
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }
}

/// Something `unload` or `unload_all` waits for outside the lock.
enum Wait {
    Job(JoinHandle<()>),
    Unload(watch::Receiver<()>),
}

impl Wait {
    async fn finish(self) {
        match self {
            Wait::Job(job) => {
                let _ = job.await;
            }
            Wait::Unload(mut gone) => {
                let _ = gone.changed().await;
            }
        }
    }
}

impl Shared {
    /// The table, even if a thread panicked while holding it: every change under the
    /// lock is a few plain assignments, so the table is never left inconsistent.
    pub(super) fn lock(&self) -> MutexGuard<'_, Models> {
        self.models.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wake every acquire waiting for room.
    pub(super) fn notify_changed(&self) {
        self.changed.send_replace(());
    }

    fn step(self: &Arc<Self>, spec: &LoadSpec, keep_alive: KeepAlive, handle: &Handle) -> Step {
        let mut models = self.lock();
        let now = Instant::now();
        let idle = spec.idle.unwrap_or(self.policy.default_idle);
        if let Some(entry) = models.entries.get_mut(&spec.key) {
            let claim = |entry: &mut Entry| {
                entry.refs += 1;
                entry.idle = idle;
                entry.keep_alive = keep_alive;
                entry.unload_on_release = false;
                Claim::new(self.clone(), spec.key.clone(), entry.id, handle.clone())
            };
            return match &mut entry.phase {
                Phase::Loaded { runner, trimmed } => {
                    // A trimmed model still has its weights: using it again is instant.
                    *trimmed = false;
                    let runner = runner.clone();
                    entry.last_used = now;
                    timers::cancel(entry);
                    Step::Ready(RunnerRef::new(runner, claim(entry)))
                }
                Phase::Loading(outcome) => {
                    let outcome = outcome.clone();
                    Step::AwaitLoad(claim(entry), outcome)
                }
                Phase::Unloading(gone) => Step::AwaitUnload(gone.clone()),
            };
        }
        if self.over_limits(&models, spec.estimated_bytes) {
            return match find_runner_to_unload(&models) {
                Some(victim) => match self.begin_unload(&mut models, &victim) {
                    Some(job) => Step::AwaitEviction(job),
                    None => Step::AwaitIdle(self.changed.subscribe()),
                },
                None => Step::AwaitIdle(self.changed.subscribe()),
            };
        }
        models.next_id += 1;
        let id = models.next_id;
        let (outcome_tx, outcome_rx) = watch::channel(None);
        models.entries.insert(
            spec.key.clone(),
            Entry {
                id,
                phase: Phase::Loading(outcome_rx.clone()),
                refs: 1,
                idle,
                keep_alive,
                unload_on_release: false,
                estimated_bytes: spec.estimated_bytes,
                memory: MemoryUsage::default(),
                loaded_at: None,
                last_used: now,
                epoch: 0,
                trim_at: None,
                unload_at: None,
            },
        );
        self.spawn_load(spec.clone(), id, outcome_tx);
        Step::AwaitLoad(Claim::new(self.clone(), spec.key.clone(), id, handle.clone()), outcome_rx)
    }

    /// Whether loading one more model of `estimated_bytes` would break the policy. A
    /// model that does not fit the budget even alone is loaded once the table is empty.
    fn over_limits(&self, models: &Models, estimated_bytes: u64) -> bool {
        let count = models.entries.len();
        let max = self.policy.max_resident_models;
        let too_many = max > 0 && count >= max;
        let used = models.entries.values().map(Entry::bytes).fold(0u64, u64::saturating_add);
        let too_big = self
            .policy
            .memory_budget_bytes
            .is_some_and(|budget| count > 0 && used.saturating_add(estimated_bytes) > budget);
        too_many || too_big
    }

    /// Run the loader on a blocking thread inside its own task, so the load finishes
    /// and the table is updated even if every request waiting for it is cancelled.
    fn spawn_load(self: &Arc<Self>, spec: LoadSpec, id: u64, outcome: watch::Sender<LoadOutcome>) {
        let shared = self.clone();
        tokio::spawn(async move {
            let key = spec.key.clone();
            let loader = shared.loader.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                let runner = loader.load(&spec)?;
                let memory = runner.memory();
                Ok((runner, memory))
            })
            .await
            .unwrap_or_else(|panic| {
                Err(PluginError::new(ErrorKind::Panicked, format!("the loader panicked: {panic}")))
            });
            let mut models = shared.lock();
            let result = match loaded {
                Ok((runner, memory)) => {
                    if let Some(entry) = models.get(&key, id) {
                        tracing::info!(model = %key, ?memory, "model loaded");
                        let now = Instant::now();
                        entry.phase = Phase::Loaded { runner, trimmed: false };
                        entry.memory = memory;
                        entry.loaded_at = Some(now);
                        entry.last_used = now;
                        // Every waiting request was cancelled: start the idle period.
                        if entry.refs == 0 {
                            timers::start_idle(&shared, &key, entry, &Handle::current());
                        }
                    }
                    Ok(())
                }
                Err(error) => {
                    tracing::warn!(model = %key, %error, "model load failed");
                    if models.get(&key, id).is_some() {
                        models.entries.remove(&key);
                    }
                    Err(error)
                }
            };
            drop(models);
            outcome.send_replace(Some(result));
            shared.notify_changed();
        });
    }

    /// Turn a claim on a model that finished loading into a runner reference; `None`
    /// when the load failed (the entry is gone).
    fn claim_loaded(&self, claim: Claim) -> Option<RunnerRef> {
        let runner = {
            let mut models = self.lock();
            match models.get(claim.key(), claim.id()) {
                Some(Entry { phase: Phase::Loaded { runner, .. }, .. }) => runner.clone(),
                _ => return None,
            }
        };
        Some(RunnerRef::new(runner, claim))
    }

    /// Drop a request's reference; the last one out starts the idle period.
    pub(super) fn release(
        self: &Arc<Self>,
        key: &ModelKey,
        id: u64,
        handle: &Handle,
        memory: Option<MemoryUsage>,
    ) {
        let mut models = self.lock();
        let Some(entry) = models.get(key, id) else {
            return;
        };
        entry.refs -= 1;
        if let Some(memory) = memory {
            entry.memory = memory;
        }
        entry.last_used = Instant::now();
        if entry.refs > 0 {
            return;
        }
        // A model still loading starts its idle period when the load lands.
        if matches!(entry.phase, Phase::Loaded { .. }) {
            timers::start_idle(self, key, entry, handle);
        }
        drop(models);
        self.notify_changed();
    }

    /// Start dropping the idle model `key`: the entry stays, as `Unloaded`, until its
    /// memory is returned, so it keeps counting against the limits and a request for it
    /// waits instead of loading a second copy. `None` if it is not idle and loaded.
    pub(super) fn begin_unload(
        self: &Arc<Self>,
        models: &mut Models,
        key: &ModelKey,
    ) -> Option<JoinHandle<()>> {
        let entry = models.entries.get_mut(key).filter(|entry| entry.refs == 0)?;
        let Phase::Loaded { .. } = entry.phase else {
            return None;
        };
        let (gone_tx, gone_rx) = watch::channel(());
        let Phase::Loaded { runner, .. } =
            std::mem::replace(&mut entry.phase, Phase::Unloading(gone_rx))
        else {
            return None;
        };
        timers::cancel(entry);
        let id = entry.id;
        let shared = self.clone();
        let key = key.clone();
        tracing::info!(model = %key, "unloading model");
        Some(tokio::spawn(async move {
            // The plugin frees its memory in the runner's destructor, which may block.
            let unloaded = tokio::task::spawn_blocking(move || {
                drop(runner);
                super::release::return_freed_memory();
            });
            if let Err(panic) = unloaded.await {
                tracing::error!(model = %key, %panic, "dropping the model panicked");
            }
            let mut models = shared.lock();
            if models.get(&key, id).is_some() {
                models.entries.remove(&key);
            }
            drop(models);
            drop(gone_tx);
            shared.notify_changed();
        }))
    }
}

/// The least recently used idle (loaded, unreferenced) model: the one to evict.
fn find_runner_to_unload(models: &Models) -> Option<ModelKey> {
    models
        .entries
        .iter()
        .filter(|(_, entry)| entry.refs == 0 && matches!(entry.phase, Phase::Loaded { .. }))
        .min_by_key(|(_, entry)| entry.last_used)
        .map(|(key, _)| key.clone())
}

/// Converts tokio instants, which follow the paused clock in tests, to wall-clock
/// Unix milliseconds for display.
struct WallClock {
    instant: Instant,
    system: SystemTime,
}

impl WallClock {
    fn now() -> Self {
        Self { instant: Instant::now(), system: SystemTime::now() }
    }

    fn unix_ms(&self, at: Instant) -> u64 {
        let wall = if at >= self.instant {
            self.system + (at - self.instant)
        } else {
            self.system - (self.instant - at)
        };
        wall.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64)
    }
}
