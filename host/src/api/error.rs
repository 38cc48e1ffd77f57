//! The one mapping from errors to HTTP responses: OpenAI's error shape by default, and
//! Ollama's or Anthropic's on their routes ([`Dialect`]), with the same status.
//!
//! Three kinds of failure, which a client must tell apart to know whether trying again
//! can help:
//!
//! - **The client's mistake** (a bad field, an unknown model or adapter, a feature not
//!   implemented): 4xx, never worth repeating as it is.
//! - **A permanent fault of this server** (the model is not installed, its file is
//!   damaged): repeating the request gives the same answer until someone fixes the
//!   server. OpenAI's SDKs retry 408, 409, 429 and every 5xx unless the response says
//!   `x-should-retry: false`, which they honour first. So a model that is not
//!   installed is a 404, as OpenAI answers for a model one cannot use, and a damaged
//!   file is a 500 with `x-should-retry: false`: the server's fault, not retried.
//! - **Overload** (the queue is full, every resident model is busy, not enough memory
//!   right now): 503 with `Retry-After`, worth repeating shortly.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_sdk::ErrorKind;
use serde_json::json;

use crate::router::RouteError;
use crate::service::{LoadFailure, ServiceError};

/// The header OpenAI's SDKs read before their own retry rules.
const SHOULD_RETRY: &str = "x-should-retry";

/// An error on its way to the client: a status, an OpenAI error type and a message
/// that is safe to show (no paths, no plugin internals beyond the plugin's message).
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 503 with a Retry-After header: the server is saturated, not broken.
    pub fn busy(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found_error", message)
    }

    /// A fault of hearth itself, whose details stay in the log.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error")
    }

    /// The body of this error in `dialect`'s shape.
    pub fn body(&self, dialect: Dialect) -> serde_json::Value {
        let message = printable(&self.message);
        match dialect {
            Dialect::OpenAi => json!({ "error": {
                "message": message, "type": self.kind, "code": self.status.as_u16(),
            } }),
            Dialect::Ollama => json!({ "error": message }),
            Dialect::Anthropic => json!({ "type": "error", "error": {
                "type": anthropic_type(self.status), "message": message,
            } }),
        }
    }

    /// A permanent fault of this server: 500, marked as not worth retrying.
    fn server_fault(kind: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, kind, message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        let message = error.to_string();
        match &error {
            ServiceError::UnknownModel(_)
            | ServiceError::UnknownAdapter(_)
            | ServiceError::Route(RouteError::UnknownModel(_)) => Self::not_found(message),
            // The plugins folder is live: the backend is there once its plugin lands.
            ServiceError::Route(RouteError::BackendNotLoaded { .. }) => Self::busy(message),
            // The server's `--device`, not the client's request: a plugin may bring it.
            ServiceError::Route(RouteError::NoSuchDevice { .. }) => Self::busy(message),
            ServiceError::AdapterNotInstalled { .. }
            | ServiceError::AdapterMismatch { .. }
            | ServiceError::AdapterTwice(_)
            | ServiceError::Unsupported { .. }
            | ServiceError::Route(
                RouteError::BackendUnavailable { .. } | RouteError::NoSuchTier { .. },
            ) => Self::bad_request(message),
            ServiceError::NothingLoaded { cause, .. } => match cause {
                LoadFailure::NotInstalled => {
                    Self::new(StatusCode::NOT_FOUND, "model_not_installed", message)
                }
                LoadFailure::Unrunnable => {
                    Self::new(StatusCode::UNPROCESSABLE_ENTITY, "model_unsupported", message)
                }
                LoadFailure::InvalidFile => Self::server_fault("invalid_model_file", message),
                LoadFailure::Failed => {
                    Self::new(StatusCode::INTERNAL_SERVER_ERROR, "backend_error", message)
                }
                LoadFailure::OutOfMemory | LoadFailure::NoBackend => Self::busy(message),
            },
            ServiceError::Busy { .. } => Self::busy(message),
            ServiceError::Generate { error, .. } => match error.kind {
                ErrorKind::InvalidRequest | ErrorKind::Unsupported => Self::bad_request(message),
                ErrorKind::OutOfMemory => Self::busy(message),
                ErrorKind::ModelFile => Self::server_fault("invalid_model_file", message),
                _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "backend_error", message),
            },
            ServiceError::Internal(_) => {
                tracing::error!(%error, "internal error");
                Self::internal()
            }
        }
    }
}

/// `text` with control characters and unprintable bytes written as escapes, so a
/// string read from a damaged file (a model header's "name") cannot put raw binary,
/// terminal escapes or broken lines into a response or a log.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        if character.is_control() || character == char::REPLACEMENT_CHARACTER {
            out.extend(character.escape_unicode());
        } else {
            out.push(character);
        }
    }
    out
}

/// The error shapes of the APIs hearth speaks. The status and headers are the same in
/// each; only the body differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `{"error": {"message", "type", "code"}}`, hearth's own shape too.
    OpenAi,
    /// `{"error": "message"}`.
    Ollama,
    /// `{"type": "error", "error": {"type", "message"}}`.
    Anthropic,
}

/// Anthropic's error type for a status.
fn anthropic_type(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => "invalid_request_error",
        StatusCode::UNAUTHORIZED => "authentication_error",
        StatusCode::FORBIDDEN => "permission_error",
        StatusCode::NOT_FOUND => "not_found_error",
        StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
        StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
        StatusCode::SERVICE_UNAVAILABLE => "overloaded_error",
        status if status.is_client_error() => "invalid_request_error",
        _ => "api_error",
    }
}

/// Rewrites the body of an [`ApiError`] response in `dialect`'s shape: a layer on
/// Ollama's and Anthropic's routes, so that every error on them (a refused body
/// included, which leaves from the extractor) reaches their clients as they expect.
pub async fn in_dialect(
    axum::extract::State(dialect): axum::extract::State<Dialect>,
    response: Response,
) -> Response {
    let Some(error) = response.extensions().get::<ApiError>().cloned() else {
        return response;
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(error.body(dialect).to_string()))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body(Dialect::OpenAi);
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        match self.status {
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StatusCode::INTERNAL_SERVER_ERROR if self.kind == "invalid_model_file" => {
                headers.insert(SHOULD_RETRY, HeaderValue::from_static("false"));
            }
            _ => {}
        }
        response.extensions_mut().insert(self);
        response
    }
}

/// Any path no route serves: a 404 in the same JSON shape as every other error.
pub async fn no_such_route(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", uri.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_dialect_writes_the_same_error_in_its_own_shape() {
        let error = ApiError::bad_request("`tools` is not supported");
        assert_eq!(error.body(Dialect::Ollama), json!({ "error": "`tools` is not supported" }));
        assert_eq!(
            error.body(Dialect::Anthropic),
            json!({ "type": "error", "error": {
                "type": "invalid_request_error", "message": "`tools` is not supported" } })
        );
        assert_eq!(error.body(Dialect::OpenAi)["error"]["type"], "invalid_request_error");
        assert_eq!(
            ApiError::busy("x").body(Dialect::Anthropic)["error"]["type"],
            "overloaded_error"
        );
        assert_eq!(ApiError::internal().body(Dialect::Anthropic)["error"]["type"], "api_error");
    }
}
