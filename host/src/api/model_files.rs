//! `GET /api/gguf/{model}`: a catalog model's GGUF file, read by the web app's in-page
//! engine a piece at a time with HTTP `Range` requests (the header first, then each
//! tensor), so a browser never holds the whole file at once.
//!
//! Only files the catalog names are served: the model id must be a catalog entry, the
//! file is its first installed GGUF artifact, and the store resolves the path (it
//! refuses names that leave the store). The route is not public: with an API key set,
//! a request must carry it as every other API route does.

use std::io::SeekFrom;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::ApiError;
use crate::catalog::Catalog;
use crate::service::Hearth;
use crate::store::Store;

/// The bytes a `Range` header asks for in a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum Wanted {
    /// No range (or several, which this server answers with the whole file, as HTTP
    /// allows).
    Whole,
    /// `start..=end`, within the file.
    Part { start: u64, end: u64 },
    /// A range that lies outside the file or is not a byte range: 416.
    Unsatisfiable,
}

fn wanted(range: Option<&str>, size: u64) -> Wanted {
    let Some(range) = range else { return Wanted::Whole };
    let Some(spec) = range.trim().strip_prefix("bytes=") else { return Wanted::Unsatisfiable };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else { return Wanted::Unsatisfiable };
    let number = |text: &str| text.trim().parse::<u64>().ok();
    let (start, end) = match (first.trim().is_empty(), last.trim().is_empty()) {
        // `bytes=-n`: the last n bytes.
        (true, false) => match number(last) {
            Some(n) if n > 0 && size > 0 => (size.saturating_sub(n), size - 1),
            _ => return Wanted::Unsatisfiable,
        },
        (false, true) => match number(first) {
            Some(start) => (start, size.saturating_sub(1)),
            None => return Wanted::Unsatisfiable,
        },
        (false, false) => match (number(first), number(last)) {
            (Some(start), Some(end)) if start <= end => (start, end.min(size.saturating_sub(1))),
            _ => return Wanted::Unsatisfiable,
        },
        (true, true) => return Wanted::Unsatisfiable,
    };
    if start >= size {
        return Wanted::Unsatisfiable;
    }
    Wanted::Part { start, end }
}

/// The first GGUF artifact of catalog model `model` that is in the store.
fn gguf_path(
    catalog: &Catalog,
    store: &Store,
    model: &str,
) -> Result<std::path::PathBuf, ApiError> {
    let entry = catalog
        .model(model)
        .ok_or_else(|| ApiError::not_found(format!("model `{model}` is not in the catalog")))?;
    entry
        .artifacts
        .iter()
        .filter(|artifact| artifact.format == "gguf")
        .filter_map(|artifact| store.model_path(model, &artifact.file).ok())
        .find(|path| path.is_file())
        .ok_or_else(|| ApiError::not_found(format!("model `{model}` has no GGUF file installed")))
}

/// `GET /api/gguf/{model}`, with or without `Range`.
pub async fn gguf(
    State(hearth): State<Arc<Hearth>>,
    Path(model): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let path = gguf_path(&hearth.catalog(), hearth.store(), &model)?;
    let mut file = tokio::fs::File::open(&path).await.map_err(|error| {
        tracing::warn!(%error, path = %path.display(), "cannot open a model file");
        ApiError::internal()
    })?;
    let size = file.metadata().await.map_err(|_| ApiError::internal())?.len();
    let range = headers.get(header::RANGE).and_then(|value| value.to_str().ok());
    let (status, start, length) = match wanted(range, size) {
        Wanted::Whole => (StatusCode::OK, 0, size),
        Wanted::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Wanted::Unsatisfiable => {
            let mut response = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "invalid_request_error",
                format!("range `{}` is outside the file's {size} bytes", range.unwrap_or("")),
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
    };
    file.seek(SeekFrom::Start(start)).await.map_err(|_| ApiError::internal())?;
    let body = Body::from_stream(ReaderStream::new(file.take(length)));
    let mut response = (status, body).into_response();
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {start}-{}/{size}", start + length - 1);
        if let Ok(value) = HeaderValue::from_str(&value) {
            out.insert(header::CONTENT_RANGE, value);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_http_defines_them() {
        assert_eq!(wanted(None, 100), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=0-9"), 100), Wanted::Part { start: 0, end: 9 });
        assert_eq!(wanted(Some("bytes=90-"), 100), Wanted::Part { start: 90, end: 99 });
        assert_eq!(wanted(Some("bytes=-10"), 100), Wanted::Part { start: 90, end: 99 });
        assert_eq!(wanted(Some("bytes=-500"), 100), Wanted::Part { start: 0, end: 99 });
        // An end past the file is cut to it; a start past it cannot be served.
        assert_eq!(wanted(Some("bytes=95-200"), 100), Wanted::Part { start: 95, end: 99 });
        assert_eq!(wanted(Some("bytes=100-"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=9-3"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=a-b"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("items=0-9"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=0-1,5-6"), 100), Wanted::Whole);
    }
}
