//! `GET /metrics`: Prometheus text exposition of request, token and model counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Extension;

use crate::lifecycle::ModelState;
use crate::service::{Completion, Hearth};

/// Counters shared by the handlers. Atomics, so counting never contends with serving.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: AtomicU64,
    failures: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    /// Sum of time-to-first-token in microseconds, and how many requests it covers.
    first_token_micros: AtomicU64,
    first_token_count: AtomicU64,
}

impl Metrics {
    pub fn request_started(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn request_failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn request_finished(&self, completion: &Completion) {
        self.prompt_tokens.fetch_add(u64::from(completion.prompt_tokens), Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(u64::from(completion.completion_tokens), Ordering::Relaxed);
        if let Some(ms) = completion.time_to_first_token_ms {
            self.first_token_micros.fetch_add((ms * 1e3) as u64, Ordering::Relaxed);
            self.first_token_count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"));
}

/// `GET /metrics`
pub async fn metrics(
    State(hearth): State<Arc<Hearth>>,
    Extension(metrics): Extension<Arc<Metrics>>,
) -> impl IntoResponse {
    let mut out = String::new();
    let read = |value: &AtomicU64| value.load(Ordering::Relaxed);
    counter(
        &mut out,
        "hearth_requests_total",
        "Completion requests received.",
        read(&metrics.requests),
    );
    counter(
        &mut out,
        "hearth_request_failures_total",
        "Completion requests that ended in an error.",
        read(&metrics.failures),
    );
    counter(
        &mut out,
        "hearth_prompt_tokens_total",
        "Prompt tokens evaluated.",
        read(&metrics.prompt_tokens),
    );
    counter(
        &mut out,
        "hearth_completion_tokens_total",
        "Tokens generated.",
        read(&metrics.completion_tokens),
    );
    out.push_str("# HELP hearth_time_to_first_token_seconds Time from request to first token.\n");
    out.push_str("# TYPE hearth_time_to_first_token_seconds summary\n");
    out.push_str(&format!(
        "hearth_time_to_first_token_seconds_sum {}\nhearth_time_to_first_token_seconds_count {}\n",
        read(&metrics.first_token_micros) as f64 / 1e6,
        read(&metrics.first_token_count)
    ));
    let loaded = hearth.loaded_models();
    out.push_str("# HELP hearth_loaded_models Models held by the scheduler, by state.\n# TYPE hearth_loaded_models gauge\n");
    for state in [
        ModelState::Loading,
        ModelState::Ready,
        ModelState::Busy,
        ModelState::Trimmed,
        ModelState::Exited,
        ModelState::Unloaded,
    ] {
        let count = loaded.iter().filter(|model| model.state == state).count();
        let name = serde_json::to_value(state)
            .ok()
            .and_then(|value| value.as_str().map(str::to_string))
            .unwrap_or_default();
        out.push_str(&format!("hearth_loaded_models{{state=\"{name}\"}} {count}\n"));
    }
    out.push_str("# HELP hearth_model_memory_bytes Memory a loaded model holds.\n# TYPE hearth_model_memory_bytes gauge\n");
    for model in &loaded {
        for (kind, bytes) in
            [("host", model.memory.host_bytes), ("device", model.memory.device_bytes)]
        {
            out.push_str(&format!(
                "hearth_model_memory_bytes{{model=\"{}\",backend=\"{}\",kind=\"{kind}\"}} {bytes}\n",
                model.key.model_id, model.key.backend
            ));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
