//! The scheduler: which transition of the table (`table.rs`) each event makes, decided
//! under its lock: acquire, load, evict, trim, unload, snapshot.
//!
//! One `std::sync::Mutex` guards the table and is never held across an `.await` or a
//! call into a plugin; everything slow (load, trim, drop) runs on a blocking thread
//! inside a spawned task, so a cancelled request can never leave an entry half-changed.

use super::{
    claim::{Claim, RunnerRef},
    table::{LoadOutcome, Models, Phase, Terms},
    KeepAlive, LoadSpec, LoadedModelSnapshot, Loader, ModelKey, SchedulerError, SchedulerPolicy,
};
use hearth_sdk::{ErrorKind, MemoryUsage, PluginError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::{
    runtime::Handle,
    sync::watch,
    task::JoinHandle,
    time::{sleep_until, timeout_at, Instant},
};

/// Hands out [`RunnerRef`]s and keeps the set of loaded models within the policy.
/// Cheap to clone: every clone is the same scheduler.
#[derive(Clone)]
pub struct Scheduler {
    shared: Arc<Shared>,
}

pub(super) struct Shared {
    loader: Arc<dyn Loader>,
    policy: SchedulerPolicy,
    models: Mutex<Models>,
    /// Bumped whenever a model becomes idle or leaves the table, so an acquire waiting
    /// for room re-checks. A watch channel rather than `Notify` because a receiver
    /// subscribed under the lock cannot miss a change made after it.
    changed: watch::Sender<()>,
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
            if models.entry(key).is_none() {
                return Err(SchedulerError::NotLoaded(key.clone()));
            }
            self.shared.unload_or_mark(&mut models, key)
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
            let Some(entry) = models.entry(key) else {
                return Err(SchedulerError::NotLoaded(key.clone()));
            };
            let Some(epoch) = entry.idle_epoch() else {
                return Ok(false);
            };
            (entry.id(), epoch)
        };
        self.shared.trim(key, id, epoch).await;
        Ok(true)
    }

    /// Unload every model, for shutdown: idle ones now (this waits for them), busy and
    /// loading ones as soon as their last request ends.
    pub async fn unload_all(&self) {
        let waits: Vec<Wait> = {
            let mut models = self.shared.lock();
            models
                .keys()
                .iter()
                .filter_map(|key| self.shared.unload_or_mark(&mut models, key))
                .collect()
        };
        for wait in waits {
            wait.finish().await;
        }
    }

    /// Every resident model, sorted by key, for `hearth ps` and `GET /api/ps`.
    pub fn snapshot(&self) -> Vec<LoadedModelSnapshot> {
        self.shared.lock().snapshot()
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
    /// lock is one method of the table, a few plain assignments, so it is never left
    /// inconsistent.
    pub(super) fn lock(&self) -> MutexGuard<'_, Models> {
        self.models.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wake every acquire waiting for room.
    fn notify_changed(&self) {
        self.changed.send_replace(());
    }

    fn step(self: &Arc<Self>, spec: &LoadSpec, keep_alive: KeepAlive, handle: &Handle) -> Step {
        let mut models = self.lock();
        let terms = Terms { idle: spec.idle.unwrap_or(self.policy.default_idle), keep_alive };
        let claim = |id| Claim::new(self.clone(), spec.key.clone(), id, handle.clone());
        if let Some(entry) = models.entry(&spec.key) {
            return match entry.phase() {
                Phase::Unloading(gone) => Step::AwaitUnload(gone.clone()),
                Phase::Loading(outcome) => {
                    let outcome = outcome.clone();
                    entry.claim(terms);
                    Step::AwaitLoad(claim(entry.id()), outcome)
                }
                Phase::Loaded { .. } => {
                    entry.claim(terms);
                    let runner = entry.reuse().expect("a loaded entry has a runner");
                    Step::Ready(RunnerRef::new(runner, claim(entry.id())))
                }
            };
        }
        if self.over_limits(&models, spec.estimated_bytes) {
            let eviction = models
                .least_recently_used_idle()
                .and_then(|victim| self.begin_unload(&mut models, &victim));
            return match eviction {
                Some(job) => Step::AwaitEviction(job),
                None => Step::AwaitIdle(self.changed.subscribe()),
            };
        }
        let (outcome_tx, outcome_rx) = watch::channel(None);
        let id = models.insert_loading(
            spec.key.clone(),
            spec.estimated_bytes,
            terms,
            outcome_rx.clone(),
        );
        self.spawn_load(spec.clone(), id, outcome_tx);
        Step::AwaitLoad(claim(id), outcome_rx)
    }

    /// Whether loading one more model of `estimated_bytes` would break the policy. A
    /// model that does not fit the budget even alone is loaded once the table is empty.
    fn over_limits(&self, models: &Models, estimated_bytes: u64) -> bool {
        let count = models.len();
        let max = self.policy.max_resident_models;
        let too_many = max > 0 && count >= max;
        let too_big = self.policy.memory_budget_bytes.is_some_and(|budget| {
            count > 0 && models.used_bytes().saturating_add(estimated_bytes) > budget
        });
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
            let mut unclaimed = false;
            let result = match loaded {
                Ok((runner, memory)) => {
                    if let Some(entry) = models.get(&key, id) {
                        tracing::info!(model = %key, ?memory, "model loaded");
                        unclaimed = entry.finish_load(runner, memory);
                    }
                    Ok(())
                }
                Err(error) => {
                    tracing::warn!(model = %key, %error, "model load failed");
                    models.remove(&key, id);
                    Err(error)
                }
            };
            drop(models);
            // Every waiting request was cancelled: the idle period starts now.
            if unclaimed {
                shared.start_idle_timers(&key, id, &Handle::current());
            }
            outcome.send_replace(Some(result));
            shared.notify_changed();
        });
    }

    /// Turn a claim on a model that finished loading into a runner reference; `None`
    /// when the load failed (the entry is gone).
    fn claim_loaded(&self, claim: Claim) -> Option<RunnerRef> {
        let runner = self.lock().get(claim.key(), claim.id())?.runner()?;
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
        if !entry.release(memory) {
            return;
        }
        drop(models);
        // A model still loading starts its idle period when the load lands instead.
        self.start_idle_timers(key, id, handle);
        self.notify_changed();
    }

    /// Unload an idle model now, or mark a busy or loading one to be unloaded when its
    /// last request ends; what to wait for, if anything.
    fn unload_or_mark(self: &Arc<Self>, models: &mut Models, key: &ModelKey) -> Option<Wait> {
        let entry = models.entry(key)?;
        if let Phase::Unloading(gone) = entry.phase() {
            return Some(Wait::Unload(gone.clone()));
        }
        if entry.is_idle() {
            return self.begin_unload(models, key).map(Wait::Job);
        }
        entry.unload_on_release();
        None
    }

    /// Start dropping the idle model `key` (see [`Entry::begin_unload`]). `None` if it
    /// is not idle and loaded.
    ///
    /// [`Entry::begin_unload`]: super::table::Entry::begin_unload
    fn begin_unload(
        self: &Arc<Self>,
        models: &mut Models,
        key: &ModelKey,
    ) -> Option<JoinHandle<()>> {
        let (gone_tx, gone_rx) = watch::channel(());
        let entry = models.entry(key)?;
        let runner = entry.begin_unload(gone_rx)?;
        let id = entry.id();
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
            shared.lock().remove(&key, id);
            drop(gone_tx);
            shared.notify_changed();
        }))
    }

    /// Start the idle period of the idle model `key` (incarnation `id`): one short-lived
    /// task trims it at the soft deadline and unloads it at the hard one. The task is
    /// never aborted: it acts only while the idle period it was started for is the
    /// current one, and every event that ends an idle period (a request, an unload)
    /// moves the entry to a new one.
    fn start_idle_timers(self: &Arc<Self>, key: &ModelKey, id: u64, handle: &Handle) {
        let period = {
            let mut models = self.lock();
            let Some(entry) = models.get(key, id).filter(|entry| entry.is_idle()) else {
                return;
            };
            entry.begin_idle()
        };
        let (shared, key) = (self.clone(), key.clone());
        handle.spawn(async move {
            if let Some(at) = period.trim_at {
                sleep_until(at).await;
                shared.trim(&key, id, period.epoch).await;
            }
            if let Some(at) = period.unload_at {
                sleep_until(at).await;
                let job = {
                    let mut models = shared.lock();
                    let idle =
                        models.get(&key, id).is_some_and(|entry| entry.idle_in(period.epoch));
                    if !idle {
                        return;
                    }
                    shared.begin_unload(&mut models, &key)
                };
                if let Some(job) = job {
                    let _ = job.await;
                }
            }
        });
    }

    /// Trim on a blocking thread. A failing or panicking trim is logged and the model is
    /// left as it was (`Ready`); its unload timer still runs, so nothing is wedged.
    async fn trim(&self, key: &ModelKey, id: u64, epoch: u64) {
        let Some(runner) = self.lock().get(key, id).and_then(|entry| entry.runner_to_trim(epoch))
        else {
            return;
        };
        let trimmed = tokio::task::spawn_blocking(move || {
            runner.trim()?;
            super::release::return_freed_memory();
            Ok::<_, PluginError>(runner.memory())
        })
        .await;
        match trimmed {
            Ok(Ok(memory)) => {
                let mut models = self.lock();
                // A request that arrived meanwhile reused the model: it is not trimmed.
                if models.get(key, id).is_some_and(|entry| entry.finish_trim(epoch, memory)) {
                    tracing::info!(model = %key, ?memory, "idle model trimmed");
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(model = %key, %error, "trimming the idle model failed");
            }
            Err(panic) => tracing::error!(model = %key, %panic, "trimming the idle model panicked"),
        }
    }
}
