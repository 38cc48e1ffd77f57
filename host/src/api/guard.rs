//! What stands between the network and the handlers: the Host-header check against DNS
//! rebinding, the optional API key, CORS, the body cap and the per-model queue cap.
//! The header-read timeout lives in the accept loop ([`super::server`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// How the API protects itself. The defaults suit a server on 127.0.0.1.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Requests must carry `Authorization: Bearer <key>` or `x-api-key: <key>` (all but
    /// `/health` and the web app's files).
    pub api_key: Option<String>,
    /// Browser origins allowed to call the API; none means no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Requests running or waiting per model; one more gets 503 with Retry-After.
    pub max_queue_per_model: usize,
    /// Accept only loopback or `localhost` Host headers. On for a loopback bind, so a
    /// web page on another name that resolves to 127.0.0.1 cannot reach the API.
    pub loopback_hosts_only: bool,
    /// A client that has not sent all its request headers by then is disconnected
    /// (against slow-loris clients holding connections open).
    pub header_read_timeout: std::time::Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            cors_origins: Vec::new(),
            max_body_bytes: 4 * 1024 * 1024,
            max_queue_per_model: 64,
            loopback_hosts_only: true,
            header_read_timeout: std::time::Duration::from_secs(10),
        }
    }
}

impl ApiConfig {
    /// The defaults for a server bound to `address`.
    pub fn for_bind(address: IpAddr) -> Self {
        Self { loopback_hosts_only: address.is_loopback(), ..Self::default() }
    }
}

/// Whether a Host header names this machine: `localhost`, `*.localhost` or a loopback
/// address, with any port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Constant-time comparison, so the key cannot be guessed byte by byte from timings.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Middleware: the Host check, then the API key.
pub async fn check_request(
    State(config): State<Arc<ApiConfig>>,
    request: Request,
    next: Next,
) -> Response {
    if config.loopback_hosts_only {
        let host =
            request.headers().get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or("");
        if !is_loopback_host(host) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this server only answers requests addressed to localhost",
            )
            .into_response();
        }
    }
    if let Some(key) = &config.api_key {
        let path = request.uri().path();
        // The web app's files hold no data, and the page is where the key is typed in.
        if path != "/health" && !super::web::is_public(path) {
            // Anthropic's clients send the key as `x-api-key`, everyone else's as a
            // bearer token.
            let headers = request.headers();
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.strip_prefix("Bearer "))
                .or_else(|| headers.get("x-api-key").and_then(|value| value.to_str().ok()))
                .unwrap_or("");
            if !same_secret(given.as_bytes(), key.as_bytes()) {
                let mut response = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "authentication_error",
                    "missing or wrong API key",
                )
                .into_response();
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return response;
            }
        }
    }
    next.run(request).await
}

/// Counts requests per model and refuses the one past the cap.
#[derive(Debug, Clone)]
pub struct QueueLimiter {
    limit: usize,
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

/// A place in a model's queue, given back when dropped.
#[derive(Debug)]
pub struct QueueSlot {
    model: String,
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

impl QueueLimiter {
    pub fn new(limit: usize) -> Self {
        Self { limit, counts: Arc::default() }
    }

    /// A slot in `model`'s queue, or a 503 telling the client when to retry.
    pub fn enter(&self, model: &str) -> Result<QueueSlot, ApiError> {
        let mut counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(model.to_string()).or_default();
        if *count >= self.limit {
            return Err(ApiError::busy(format!(
                "too many requests queued for model `{model}`; retry shortly"
            )));
        }
        *count += 1;
        Ok(QueueSlot { model: model.to_string(), counts: self.counts.clone() })
    }
}

impl Drop for QueueSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.model) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.model);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_addresses_count_as_local_hosts() {
        for host in [
            "localhost",
            "localhost:8434",
            "127.0.0.1:8434",
            "[::1]:8434",
            "api.localhost",
            "127.0.0.2",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8434",
            "10.0.0.1",
            "localhost.evil.example",
            "",
            "[::2]:1",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn the_queue_refuses_past_its_limit_and_frees_slots_on_drop() {
        let queue = QueueLimiter::new(2);
        let first = queue.enter("m").unwrap();
        let _second = queue.enter("m").unwrap();
        assert_eq!(queue.enter("m").unwrap_err().status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(queue.enter("other").is_ok());
        drop(first);
        assert!(queue.enter("m").is_ok());
    }

    #[test]
    fn secrets_compare_equal_only_when_identical() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
    }
}
