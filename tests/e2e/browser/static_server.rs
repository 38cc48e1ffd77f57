//! A plain static web server for the test of `hearth export-web`, standing for
//! whatever server a user puts the export on: the files of one folder under a URL path
//! prefix, on an ephemeral loopback port, with HTTP Range requests (206 and 416) and,
//! for a model server on another origin than the page, CORS that allows `Range` and
//! exposes `Content-Range`. Nothing of hearth's is used.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// A running server; dropping it stops it.
pub struct StaticServer {
    /// `http://127.0.0.1:PORT` followed by the prefix, which ends with `/`.
    pub url: String,
    _runtime: tokio::runtime::Runtime,
}

struct Site {
    root: PathBuf,
    prefix: String,
    cross_origin: bool,
}

impl StaticServer {
    /// Serve `root` at `prefix` (`/some/dir/`); `cross_origin` allows every origin to
    /// read it, Range requests included.
    pub fn start(root: &Path, prefix: &str, cross_origin: bool) -> Self {
        let site =
            Arc::new(Site { root: root.to_path_buf(), prefix: prefix.to_string(), cross_origin });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}{prefix}", listener.local_addr().unwrap());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("start a runtime for the static server");
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app =
                Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
                    let site = site.clone();
                    async move { site.answer(&method, &uri, &headers).await }
                });
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, _runtime: runtime }
    }
}

impl Site {
    async fn answer(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response {
        let mut response = self.file(method, uri, headers).await;
        if self.cross_origin {
            let headers = response.headers_mut();
            let allow = |value: &'static str| HeaderValue::from_static(value);
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow("*"));
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow("Range"));
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, allow("GET, HEAD"));
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                allow("Content-Range, Content-Length"),
            );
        }
        response
    }

    async fn file(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response {
        if method == Method::OPTIONS {
            return StatusCode::NO_CONTENT.into_response();
        }
        if method != Method::GET && method != Method::HEAD {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        let Some(path) = self.path(uri.path()) else {
            return (StatusCode::NOT_FOUND, format!("no file at {}", uri.path())).into_response();
        };
        let Ok(mut file) = tokio::fs::File::open(&path).await else {
            return (StatusCode::NOT_FOUND, format!("no file at {}", uri.path())).into_response();
        };
        let size = file.metadata().await.unwrap().len();
        let range = headers.get(header::RANGE).and_then(|value| value.to_str().ok());
        let (status, start, end) = match range.map(|range| byte_range(range, size)) {
            None => (StatusCode::OK, 0, size),
            Some(Some((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end),
            Some(None) => {
                let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                let value = HeaderValue::from_str(&format!("bytes */{size}")).unwrap();
                response.headers_mut().insert(header::CONTENT_RANGE, value);
                return response;
            }
        };
        let mut body = vec![0; (end - start) as usize];
        file.seek(SeekFrom::Start(start)).await.unwrap();
        file.read_exact(&mut body).await.unwrap();
        let mut response =
            Response::new(if method == Method::HEAD { Body::empty() } else { body.into() });
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(&path)));
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if status == StatusCode::PARTIAL_CONTENT {
            let value = format!("bytes {start}-{}/{size}", end - 1);
            headers.insert(header::CONTENT_RANGE, HeaderValue::from_str(&value).unwrap());
        }
        response
    }

    /// The file a URL path names: under the prefix, no `..`, a folder's `index.html`.
    fn path(&self, url_path: &str) -> Option<PathBuf> {
        let rest = url_path.strip_prefix(&self.prefix)?;
        if rest.split('/').any(|segment| segment == "..") {
            return None;
        }
        let path = self.root.join(rest);
        Some(if rest.is_empty() || rest.ends_with('/') { path.join("index.html") } else { path })
    }
}

/// `bytes=a-b` or `bytes=a-` as `start..end` (end exclusive) within `size` bytes.
fn byte_range(range: &str, size: u64) -> Option<(u64, u64)> {
    let (first, last) = range.strip_prefix("bytes=")?.split_once('-')?;
    let start: u64 = first.parse().ok()?;
    let end =
        if last.is_empty() { size } else { last.parse::<u64>().ok()?.saturating_add(1).min(size) };
    (start < end).then_some((start, end))
}

/// What browsers need to be told: module scripts must come as JavaScript.
fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|extension| extension.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("wgsl" | "jinja") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
