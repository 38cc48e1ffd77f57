//! The one mapping from errors to HTTP responses, in OpenAI's error shape.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_sdk::ErrorKind;
use serde_json::json;

use crate::router::RouteError;
use crate::service::ServiceError;

/// An error on its way to the client: a status, an OpenAI error type and a message
/// that is safe to show (no paths, no plugin internals beyond the plugin's message).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
        }
    }

    /// 503 with a Retry-After header: the server is saturated, not broken.
    pub fn busy(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "service_unavailable",
            message: message.into(),
        }
    }

    /// A body the JSON extractor refused: too large (413), wrong content type (415) or
    /// not the expected shape (400/422 become 400).
    pub fn from_json_rejection(rejection: axum::extract::rejection::JsonRejection) -> Self {
        let status = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self { status, kind: "invalid_request_error", message: rejection.body_text() }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self { status: StatusCode::NOT_FOUND, kind: "not_found_error", message: message.into() }
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        let message = error.to_string();
        let (status, kind) = match &error {
            ServiceError::UnknownModel(_) | ServiceError::UnknownAdapter(_) => {
                (StatusCode::NOT_FOUND, "not_found_error")
            }
            ServiceError::AdapterNotInstalled { .. } | ServiceError::AdapterMismatch { .. } => {
                (StatusCode::BAD_REQUEST, "invalid_request_error")
            }
            ServiceError::Route(RouteError::UnknownModel(_)) => {
                (StatusCode::NOT_FOUND, "not_found_error")
            }
            ServiceError::Route(_) | ServiceError::NothingLoaded { .. } | ServiceError::Busy(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable")
            }
            ServiceError::Generate { error, .. } => match error.kind {
                ErrorKind::InvalidRequest => (StatusCode::BAD_REQUEST, "invalid_request_error"),
                ErrorKind::OutOfMemory => (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable"),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "backend_error"),
            },
            ServiceError::Internal(_) => {
                tracing::error!(%error, "internal error");
                return Self {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    kind: "internal_error",
                    message: "internal error".into(),
                };
            }
        };
        Self { status, kind, message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "message": self.message, "type": self.kind, "code": self.status.as_u16() } });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}
