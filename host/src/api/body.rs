//! Request bodies: JSON, whatever the client called it.
//!
//! `curl -d '{…}'` sends `application/x-www-form-urlencoded`, and some clients send no
//! `Content-Type` at all; llama-server and Ollama read both as JSON, and so does
//! hearth. A body declared as something else that is surely not JSON (a form upload,
//! an image) is refused with 415 naming the type.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::ApiError;

/// A request body read as JSON into `T`.
pub struct JsonBody<T>(pub T);

/// Whether a body declared as `content_type` may be read as JSON.
fn may_be_json(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else { return true };
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence.is_empty()
        || essence == "application/json"
        || essence.ends_with("+json")
        || essence == "application/x-www-form-urlencoded"
        || essence == "text/plain"
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| value.to_str().unwrap_or("(not text)").to_string());
        if !may_be_json(content_type.as_deref()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request_error",
                format!(
                    "the body must be JSON; it was sent as `{}`",
                    content_type.unwrap_or_default()
                ),
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            let status = match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            ApiError::new(status, "invalid_request_error", rejection.body_text())
        })?;
        let mut reader = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut reader).map_err(|error| {
            let path = error.path().to_string();
            match path.as_str() {
                "." | "" => ApiError::bad_request(format!("invalid JSON body: {}", error.inner())),
                _ => {
                    ApiError::bad_request(format!("invalid JSON body: `{path}`: {}", error.inner()))
                }
            }
        })?;
        reader
            .end()
            .map_err(|error| ApiError::bad_request(format!("invalid JSON body: {error}")))?;
        Ok(Self(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form_and_plain_text_bodies_are_read_as_json_and_other_types_are_not() {
        for content_type in [
            None,
            Some("application/json; charset=utf-8"),
            Some("application/x-www-form-urlencoded"),
            Some("text/plain"),
            Some("application/vnd.api+json"),
        ] {
            assert!(may_be_json(content_type), "{content_type:?}");
        }
        for content_type in ["multipart/form-data; boundary=x", "image/png", "application/xml"] {
            assert!(!may_be_json(Some(content_type)), "{content_type}");
        }
    }
}
