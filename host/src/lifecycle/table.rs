//! The table of resident models, and every state change of an entry as a method of it.
//!
//! Plain data: no lock, task or plugin call lives here. The scheduler holds the table
//! under its mutex, picks the transition, and runs the slow work (load, trim, drop)
//! outside the lock; each method below is a few assignments, so a panic elsewhere can
//! never leave an entry half-changed.

use super::{
    timers::plan, IdleTimeouts, KeepAlive, LoadedModelSnapshot, MemorySnapshot, ModelKey,
    ModelState, Runner,
};
use hearth_sdk::{MemoryUsage, PluginError};
use std::{
    collections::HashMap,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};
use tokio::{sync::watch, time::Instant};

/// How a load ended, as seen by the requests waiting for it; `None` while it runs.
pub(super) type LoadOutcome = Option<Result<(), PluginError>>;

#[derive(Default)]
pub(super) struct Models {
    entries: HashMap<ModelKey, Entry>,
    next_id: u64,
}

pub(super) struct Entry {
    /// Which incarnation this is: a model unloaded and loaded again is a new entry.
    id: u64,
    phase: Phase,
    /// Requests holding the model, including those waiting for its load.
    refs: usize,
    idle: IdleTimeouts,
    /// The latest request's keep-alive; it shapes the next idle period.
    keep_alive: KeepAlive,
    /// `unload` was asked while requests were in flight: unload when the last ends.
    unload_on_release: bool,
    estimated_bytes: u64,
    memory: MemoryUsage,
    /// When the load finished, in Unix milliseconds, stamped then: a past moment read
    /// back through `WallClock` would move with every snapshot while the system clock
    /// is slewed against the monotonic one (the memory load test saw 58 "loads" of one
    /// model a millisecond apart).
    loaded_at_ms: Option<u64>,
    last_used: Instant,
    /// Bumped whenever an idle period starts or ends; a timer task only acts while the
    /// epoch it was started with is current, which is how timers are cancelled.
    epoch: u64,
    trim_at: Option<Instant>,
    unload_at: Option<Instant>,
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

/// The deadlines of one idle period, and the epoch that identifies it.
pub(super) struct IdlePeriod {
    pub(super) epoch: u64,
    pub(super) trim_at: Option<Instant>,
    pub(super) unload_at: Option<Instant>,
}

/// What a request asks of a model: its idle timeouts and keep-alive.
#[derive(Clone, Copy)]
pub(super) struct Terms {
    pub(super) idle: IdleTimeouts,
    pub(super) keep_alive: KeepAlive,
}

impl Models {
    /// The entry for `key`, whichever incarnation it is.
    pub(super) fn entry(&mut self, key: &ModelKey) -> Option<&mut Entry> {
        self.entries.get_mut(key)
    }

    /// The entry for `key` if it is still the incarnation `id`.
    pub(super) fn get(&mut self, key: &ModelKey, id: u64) -> Option<&mut Entry> {
        self.entries.get_mut(key).filter(|entry| entry.id == id)
    }

    /// Add `key` as loading, held by the request that asked for it; returns its id.
    pub(super) fn insert_loading(
        &mut self,
        key: ModelKey,
        estimated_bytes: u64,
        terms: Terms,
        outcome: watch::Receiver<LoadOutcome>,
    ) -> u64 {
        self.next_id += 1;
        let entry = Entry {
            id: self.next_id,
            phase: Phase::Loading(outcome),
            refs: 1,
            idle: terms.idle,
            keep_alive: terms.keep_alive,
            unload_on_release: false,
            estimated_bytes,
            memory: MemoryUsage::default(),
            loaded_at_ms: None,
            last_used: Instant::now(),
            epoch: 0,
            trim_at: None,
            unload_at: None,
        };
        self.entries.insert(key, entry);
        self.next_id
    }

    /// Remove the incarnation `id` of `key`; a newer one stays.
    pub(super) fn remove(&mut self, key: &ModelKey, id: u64) {
        if self.get(key, id).is_some() {
            self.entries.remove(key);
        }
    }

    pub(super) fn keys(&self) -> Vec<ModelKey> {
        self.entries.keys().cloned().collect()
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// What every resident model counts against the memory budget together.
    pub(super) fn used_bytes(&self) -> u64 {
        self.entries.values().map(Entry::bytes).fold(0, u64::saturating_add)
    }

    /// The least recently used idle (loaded, unreferenced) model: the one to evict.
    pub(super) fn least_recently_used_idle(&self) -> Option<ModelKey> {
        self.entries
            .iter()
            .filter(|(_, entry)| entry.is_idle())
            .min_by_key(|(_, entry)| entry.last_used)
            .map(|(key, _)| key.clone())
    }

    /// Every resident model, sorted by key.
    pub(super) fn snapshot(&self) -> Vec<LoadedModelSnapshot> {
        let clock = WallClock::now();
        let mut out: Vec<LoadedModelSnapshot> =
            self.entries.iter().map(|(key, entry)| entry.snapshot(key, &clock)).collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }
}

impl Entry {
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Loaded and held by no request: it may be trimmed, unloaded or evicted.
    pub(super) fn is_idle(&self) -> bool {
        self.refs == 0 && matches!(self.phase, Phase::Loaded { .. })
    }

    /// The runner, once loaded.
    pub(super) fn runner(&self) -> Option<Arc<dyn Runner>> {
        match &self.phase {
            Phase::Loaded { runner, .. } => Some(runner.clone()),
            _ => None,
        }
    }

    /// One more request holds the model, on its terms; an unload asked earlier is off.
    pub(super) fn claim(&mut self, terms: Terms) {
        self.refs += 1;
        self.idle = terms.idle;
        self.keep_alive = terms.keep_alive;
        self.unload_on_release = false;
    }

    /// A request uses the loaded model: a trimmed one still has its weights, so this is
    /// instant, and the idle period ends.
    pub(super) fn reuse(&mut self) -> Option<Arc<dyn Runner>> {
        let Phase::Loaded { runner, trimmed } = &mut self.phase else { return None };
        *trimmed = false;
        let runner = runner.clone();
        self.last_used = Instant::now();
        self.end_idle();
        Some(runner)
    }

    /// The load landed. Returns whether nobody waits for it any more (every waiting
    /// request was cancelled), in which case its idle period starts now.
    pub(super) fn finish_load(&mut self, runner: Arc<dyn Runner>, memory: MemoryUsage) -> bool {
        let now = Instant::now();
        self.phase = Phase::Loaded { runner, trimmed: false };
        self.memory = memory;
        self.loaded_at_ms = Some(unix_ms(SystemTime::now()));
        self.last_used = now;
        self.refs == 0
    }

    /// A request let go, with what the model held when it ended. Returns whether it
    /// was the last one.
    pub(super) fn release(&mut self, memory: Option<MemoryUsage>) -> bool {
        self.refs -= 1;
        if let Some(memory) = memory {
            self.memory = memory;
        }
        self.last_used = Instant::now();
        self.refs == 0
    }

    /// Unload as soon as the last request holding the model ends.
    pub(super) fn unload_on_release(&mut self) {
        self.unload_on_release = true;
    }

    /// Start an idle period from now, as the timeouts and keep-alive say.
    pub(super) fn begin_idle(&mut self) -> IdlePeriod {
        self.end_idle();
        let plan = plan(self.idle, self.keep_alive, self.unload_on_release);
        let now = Instant::now();
        self.trim_at = plan.trim_after.map(|after| now + after);
        self.unload_at = plan.unload_after.map(|after| now + after);
        IdlePeriod { epoch: self.epoch, trim_at: self.trim_at, unload_at: self.unload_at }
    }

    /// End the current idle period, if any: its timer task will find the epoch changed.
    fn end_idle(&mut self) {
        self.epoch += 1;
        self.trim_at = None;
        self.unload_at = None;
    }

    /// The current idle period's epoch, when the model is idle.
    pub(super) fn idle_epoch(&self) -> Option<u64> {
        self.is_idle().then_some(self.epoch)
    }

    /// Whether the idle period `epoch` is still the current one.
    pub(super) fn idle_in(&self, epoch: u64) -> bool {
        self.epoch == epoch && self.refs == 0
    }

    /// The runner to trim in the idle period `epoch`: loaded, untrimmed and still idle.
    pub(super) fn runner_to_trim(&self, epoch: u64) -> Option<Arc<dyn Runner>> {
        match &self.phase {
            Phase::Loaded { runner, trimmed: false } if self.idle_in(epoch) => Some(runner.clone()),
            _ => None,
        }
    }

    /// The trim of the idle period `epoch` ended with the model holding `memory`.
    /// Returns `false` when a request reused the model meanwhile: it is not trimmed.
    pub(super) fn finish_trim(&mut self, epoch: u64, memory: MemoryUsage) -> bool {
        if self.epoch != epoch {
            return false;
        }
        let Phase::Loaded { trimmed, .. } = &mut self.phase else { return false };
        *trimmed = true;
        self.memory = memory;
        true
    }

    /// Start dropping an idle model: the entry stays, as `Unloaded`, until `gone`'s
    /// sender is dropped, so it keeps counting against the limits and a request for it
    /// waits instead of loading a second copy. `None` when it is not idle.
    pub(super) fn begin_unload(&mut self, gone: watch::Receiver<()>) -> Option<Arc<dyn Runner>> {
        if !self.is_idle() {
            return None;
        }
        let Phase::Loaded { runner, .. } =
            std::mem::replace(&mut self.phase, Phase::Unloading(gone))
        else {
            return None;
        };
        self.end_idle();
        Some(runner)
    }

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
            Phase::Loaded { ref runner, .. } if !runner.running() => ModelState::Exited,
            Phase::Loaded { trimmed: true, .. } => ModelState::Trimmed,
            Phase::Loaded { trimmed: false, .. } => ModelState::Ready,
        }
    }

    fn snapshot(&self, key: &ModelKey, clock: &WallClock) -> LoadedModelSnapshot {
        let memory = match self.phase {
            Phase::Loading(_) => {
                MemorySnapshot { host_bytes: self.estimated_bytes, device_bytes: 0 }
            }
            _ => self.memory.into(),
        };
        LoadedModelSnapshot {
            key: key.clone(),
            state: self.state(),
            refs: self.refs,
            memory,
            loaded_at_ms: self.loaded_at_ms,
            last_used_ms: clock.unix_ms(self.last_used),
            trim_at_ms: self.trim_at.map(|at| clock.unix_ms(at)),
            unload_at_ms: self.unload_at.map(|at| clock.unix_ms(at)),
        }
    }
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
        unix_ms(wall)
    }
}

fn unix_ms(wall: SystemTime) -> u64 {
    wall.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64)
}
