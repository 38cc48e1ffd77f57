//! References to loaded models: while one is alive the model is busy and no idle timer
//! runs; dropping the last one starts the idle period.

use super::{scheduler::Shared, ModelKey, Runner};
use hearth_sdk::MemoryUsage;
use std::{fmt, ops::Deref, sync::Arc};
use tokio::runtime::Handle;

/// One request's hold on a model. Counts in the scheduler's ref count from the moment
/// the request asks (even while the model loads) until it is dropped.
pub(super) struct Claim {
    shared: Arc<Shared>,
    key: ModelKey,
    id: u64,
    /// A `RunnerRef` is usually dropped on a blocking thread after `generate`, where
    /// there is no ambient runtime to spawn the idle timers on.
    handle: Handle,
    /// What the model held when its request ended, so the budget and `ps` see the
    /// cache a generation grew without asking the plugin under the scheduler's lock.
    memory_at_release: Option<MemoryUsage>,
}

impl Claim {
    pub(super) fn new(shared: Arc<Shared>, key: ModelKey, id: u64, handle: Handle) -> Self {
        Self { shared, key, id, handle, memory_at_release: None }
    }

    pub(super) fn key(&self) -> &ModelKey {
        &self.key
    }

    pub(super) fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.shared.release(&self.key, self.id, &self.handle, self.memory_at_release);
    }
}

/// A loaded model held for one request; `Deref`s to the [`Runner`]. Send it to the
/// blocking thread that calls `generate` and drop it when the request ends.
///
/// Cloning the inner `Arc` out of it does not extend the hold: the scheduler may
/// unload the model once every `RunnerRef` is gone.
pub struct RunnerRef {
    runner: Arc<dyn Runner>,
    claim: Claim,
}

impl RunnerRef {
    pub(super) fn new(runner: Arc<dyn Runner>, claim: Claim) -> Self {
        Self { runner, claim }
    }

    pub fn runner(&self) -> &Arc<dyn Runner> {
        &self.runner
    }

    pub fn key(&self) -> &ModelKey {
        self.claim.key()
    }
}

impl Drop for RunnerRef {
    fn drop(&mut self) {
        self.claim.memory_at_release = Some(self.runner.memory());
    }
}

impl Deref for RunnerRef {
    type Target = dyn Runner;

    fn deref(&self) -> &Self::Target {
        &*self.runner
    }
}

impl fmt::Debug for RunnerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunnerRef").field("key", self.key()).finish_non_exhaustive()
    }
}
