//! When an idle period trims and unloads a model: a pure function of its timeouts and
//! its latest request's keep-alive. The scheduler runs one short-lived task per idle
//! period on this plan (see `Shared::run_idle`).

use super::{IdleTimeouts, KeepAlive};
use std::time::Duration;

/// When an idle period trims and unloads, relative to its start.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct IdlePlan {
    pub(super) trim_after: Option<Duration>,
    pub(super) unload_after: Option<Duration>,
}

/// The idle period for a model's timeouts and its latest request's keep-alive.
pub(super) fn plan(idle: IdleTimeouts, keep_alive: KeepAlive, unload_now: bool) -> IdlePlan {
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
