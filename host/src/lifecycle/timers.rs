//! Idle timers: one short-lived task per idle period trims the model at the soft
//! deadline and unloads it at the hard one.
//!
//! A task never needs to be aborted: it acts only while the entry's epoch is the one it
//! was started with, and every event that ends an idle period (a new request, an
//! unload) bumps the epoch.

use super::{
    scheduler::{Entry, Phase, Shared},
    IdleTimeouts, KeepAlive, ModelKey,
};
use std::{sync::Arc, time::Duration};
use tokio::{
    runtime::Handle,
    time::{sleep_until, Instant},
};

/// When an idle period trims and unloads, relative to its start.
#[derive(Debug, PartialEq, Eq)]
struct IdlePlan {
    trim_after: Option<Duration>,
    unload_after: Option<Duration>,
}

/// The idle period for a model's timeouts and its latest request's keep-alive.
fn plan(idle: IdleTimeouts, keep_alive: KeepAlive, unload_now: bool) -> IdlePlan {
    let (trim_after, unload_after) = match keep_alive {
        _ if unload_now => (None, Some(Duration::ZERO)),
        KeepAlive::Default => (Some(idle.soft), Some(idle.hard)),
        KeepAlive::For(hard) => (Some(idle.soft), Some(hard)),
        KeepAlive::Forever => (Some(idle.soft), None),
    };
    // Trimming at or after the unload would free nothing the unload does not.
    let trim_after = trim_after.filter(|soft| unload_after.is_none_or(|hard| *soft < hard));
    IdlePlan { trim_after, unload_after }
}

/// End the current idle period, if any: its timer task will find the epoch changed.
pub(super) fn cancel(entry: &mut Entry) {
    entry.epoch += 1;
    entry.trim_at = None;
    entry.unload_at = None;
}

/// Start an idle period for a loaded model nobody holds.
pub(super) fn start_idle(shared: &Arc<Shared>, key: &ModelKey, entry: &mut Entry, handle: &Handle) {
    cancel(entry);
    let plan = plan(entry.idle, entry.keep_alive, entry.unload_on_release);
    let now = Instant::now();
    entry.trim_at = plan.trim_after.map(|after| now + after);
    entry.unload_at = plan.unload_after.map(|after| now + after);
    handle.spawn(run_idle(shared.clone(), key.clone(), entry.id, entry.epoch));
}

async fn run_idle(shared: Arc<Shared>, key: ModelKey, id: u64, epoch: u64) {
    let current = |shared: &Shared| {
        let mut models = shared.lock();
        let entry = models.get(&key, id).filter(|entry| entry.epoch == epoch && entry.refs == 0)?;
        Some((entry.trim_at, entry.unload_at))
    };
    let Some((trim_at, unload_at)) = current(&shared) else {
        return;
    };
    if let Some(at) = trim_at {
        sleep_until(at).await;
        trim(&shared, &key, id, epoch).await;
    }
    if let Some(at) = unload_at {
        sleep_until(at).await;
        let job = {
            let mut models = shared.lock();
            let idle =
                models.get(&key, id).is_some_and(|entry| entry.epoch == epoch && entry.refs == 0);
            if !idle {
                return;
            }
            shared.begin_unload(&mut models, &key)
        };
        if let Some(job) = job {
            let _ = job.await;
        }
    }
}

/// Trim on a blocking thread. A failing or panicking trim is logged and the model is
/// left as it was (`Ready`); its unload timer still runs, so nothing is wedged.
pub(super) async fn trim(shared: &Shared, key: &ModelKey, id: u64, epoch: u64) {
    let runner = {
        let mut models = shared.lock();
        match models.get(key, id) {
            Some(Entry {
                phase: Phase::Loaded { runner, trimmed: false },
                epoch: current,
                refs: 0,
                ..
            }) if *current == epoch => runner.clone(),
            _ => return,
        }
    };
    let trimmed = tokio::task::spawn_blocking(move || {
        runner.trim()?;
        super::release::return_freed_memory();
        Ok::<_, hearth_sdk::PluginError>(runner.memory())
    })
    .await;
    match trimmed {
        Ok(Ok(memory)) => {
            let mut models = shared.lock();
            // A request that arrived meanwhile reused the model: it is not trimmed.
            if let Some(entry) = models.get(key, id).filter(|entry| entry.epoch == epoch) {
                if let Phase::Loaded { trimmed, .. } = &mut entry.phase {
                    *trimmed = true;
                    entry.memory = memory;
                    tracing::info!(model = %key, ?memory, "idle model trimmed");
                }
            }
        }
        Ok(Err(error)) => tracing::warn!(model = %key, %error, "trimming the idle model failed"),
        Err(panic) => tracing::error!(model = %key, %panic, "trimming the idle model panicked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: IdleTimeouts =
        IdleTimeouts { soft: Duration::from_secs(120), hard: Duration::from_secs(300) };

    #[test]
    fn the_default_keep_alive_uses_the_models_timeouts() {
        let expected = IdlePlan { trim_after: Some(IDLE.soft), unload_after: Some(IDLE.hard) };
        assert_eq!(plan(IDLE, KeepAlive::Default, false), expected);
    }

    #[test]
    fn a_keep_alive_shorter_than_the_soft_timeout_skips_the_trim() {
        let expected = IdlePlan { trim_after: None, unload_after: Some(Duration::from_secs(60)) };
        assert_eq!(plan(IDLE, KeepAlive::For(Duration::from_secs(60)), false), expected);
    }

    #[test]
    fn keep_alive_forever_trims_but_never_unloads() {
        let expected = IdlePlan { trim_after: Some(IDLE.soft), unload_after: None };
        assert_eq!(plan(IDLE, KeepAlive::Forever, false), expected);
    }

    #[test]
    fn an_unload_request_overrides_any_keep_alive() {
        let expected = IdlePlan { trim_after: None, unload_after: Some(Duration::ZERO) };
        assert_eq!(plan(IDLE, KeepAlive::Forever, true), expected);
    }
}
