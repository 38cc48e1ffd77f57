//! The web app `hearth serve` serves at `/`: a chat page over hearth's own HTTP API
//! (the same endpoints any client uses), written as plain HTML, CSS and JavaScript
//! modules in `host/web/`. The files are embedded in the binary, so a server needs
//! nothing beside it and the page loads nothing from anywhere else.
//!
//! Browser mode's in-page engine (`host/web/engine/`) is served the same way, with the
//! WGSL kernels of the native WebGPU plugin embedded from the plugin's own files (one
//! source for both engines) and `@huggingface/jinja`'s browser build, which
//! `build.rs` puts in the build's output folder.
//!
//! The page and its files are public even when the API has a key (see
//! [`is_public`]): they hold no data, and the page is where the key is typed in.
//!
//! The same files make the static export (`hearth export-web`, see [`static_files`]):
//! the page refers to its files by relative URLs, so it works from `/` here and from
//! any folder of a static web server there; `app/site.json` tells the page which it is.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::ApiError;

/// One embedded file of the app.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../../web/", $name)),
        }
    };
}

/// A kernel of the native WebGPU plugin, served as `shaders/{name}`.
macro_rules! shader {
    ($name:literal) => {
        Asset {
            name: concat!("shaders/", $name),
            content_type: "text/plain; charset=utf-8",
            body: include_bytes!(concat!("../../../plugins/webgpu/src/shaders/", $name)),
        }
    };
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// The page (first) and the files it loads under `/app/`.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("main.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("chat.js", "text/javascript; charset=utf-8"),
    asset!("picker.js", "text/javascript; charset=utf-8"),
    asset!("status.js", "text/javascript; charset=utf-8"),
    asset!("dom.js", "text/javascript; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    // Says "served by hearth"; a static export writes its own in its place.
    asset!("site.json", "application/json"),
    asset!("browser-mode.js", JAVASCRIPT),
    asset!("static-export.js", JAVASCRIPT),
    asset!("engine/engine.js", JAVASCRIPT),
    asset!("engine/gguf.js", JAVASCRIPT),
    asset!("engine/gpu.js", JAVASCRIPT),
    asset!("engine/kernels.js", JAVASCRIPT),
    asset!("engine/forward.js", JAVASCRIPT),
    asset!("engine/config.js", JAVASCRIPT),
    asset!("engine/tokenizer.js", JAVASCRIPT),
    asset!("engine/sampler.js", JAVASCRIPT),
    asset!("engine/stop.js", JAVASCRIPT),
    Asset {
        name: "engine/jinja.js",
        content_type: JAVASCRIPT,
        body: include_bytes!(concat!(env!("OUT_DIR"), "/jinja.js")),
    },
    // The turn formats of files without a chat template, from the SDK's own files.
    Asset {
        name: "templates/chatml.jinja",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../../../sdk/src/helpers/templates/chatml.jinja"),
    },
    Asset {
        name: "templates/gemma.jinja",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../../../sdk/src/helpers/templates/gemma.jinja"),
    },
    shader!("quant.wgsl"),
    shader!("decode.wgsl"),
    shader!("activation.wgsl"),
    shader!("matmul_rows.wgsl"),
    shader!("matvec.wgsl"),
    shader!("input_f32.wgsl"),
    shader!("input_q8.wgsl"),
    shader!("dot8.wgsl"),
    shader!("matvec_rows.wgsl"),
    shader!("matmul_pairs.wgsl"),
    shader!("matmul_tiled.wgsl"),
    shader!("matmul_matrix.wgsl"),
    shader!("reduce_subgroup.wgsl"),
    shader!("reduce_shared.wgsl"),
    shader!("norm.wgsl"),
    shader!("quantize.wgsl"),
    shader!("rope.wgsl"),
    shader!("rotation.wgsl"),
    shader!("attention.wgsl"),
    shader!("attention_tile.wgsl"),
    shader!("gated.wgsl"),
    shader!("rows.wgsl"),
    shader!("route.wgsl"),
    shader!("argmax.wgsl"),
    shader!("top_k.wgsl"),
    shader!("sample.wgsl"),
    shader!("adjust.wgsl"),
    shader!("altup.wgsl"),
];

/// Where the app's files are served from.
pub const ASSET_PREFIX: &str = "/app/";

/// The file that tells the page whether a hearth server is behind it.
pub const SITE_FILE: &str = "site.json";

/// Every file of the app as a static export lays it out, with the bytes `hearth serve`
/// serves: the page as `index.html`, and each file it loads under `app/` (the page's
/// relative URLs resolve there, as they resolve to `ASSET_PREFIX` (`/app/`) under `/`).
pub fn static_files() -> impl Iterator<Item = (String, &'static [u8])> {
    let (page, files) = ASSETS.split_first().expect("the page is the first asset");
    std::iter::once(("index.html".to_string(), page.body))
        .chain(files.iter().map(|asset| (format!("app/{}", asset.name), asset.body)))
}

/// Everything the page may load or call is this server's own: no inline code, no
/// other origin, no framing by other sites.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Whether `path` is one of the app's files, served without the API key.
pub fn is_public(path: &str) -> bool {
    path == "/" || path.starts_with(ASSET_PREFIX)
}

/// `GET /`: the page.
pub async fn page(headers: HeaderMap) -> Response {
    serve(0, &headers)
}

/// `GET /app/{*file}`: one of the page's files (some in folders: `engine/`, `shaders/`).
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|asset| asset.name == file) {
        Some(index) => serve(index, &headers),
        None => ApiError::not_found(format!("no such file: {ASSET_PREFIX}{file}")).into_response(),
    }
}

/// Each asset's entity tag: a digest of its bytes, computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                let digest = Sha256::digest(asset.body);
                let hex: String = digest[..8].iter().map(|byte| format!("{byte:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

fn serve(index: usize, request: &HeaderMap) -> Response {
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    let unchanged = request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = asset.body.into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        response
    };
    let headers = response.headers_mut();
    // The files change with the binary while their URLs stay the same: the browser
    // keeps them but asks each time, and the entity tag makes that a 304.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    response
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use axum::Router;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        Router::new().route("/", get(page)).route("/app/{*file}", get(asset))
    }

    async fn fetch(path: &str, etag: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        app().oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn the_page_is_html_that_loads_its_module_from_the_app_folder() {
        let response = fetch("/", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let html = std::str::from_utf8(&body).unwrap();
        assert!(html.contains(r#"<script type="module" src="app/main.js">"#), "{html}");
    }

    #[tokio::test]
    async fn every_asset_is_served_with_its_content_type_and_a_stable_etag() {
        for asset in ASSETS {
            let response = fetch(&format!("/app/{}", asset.name), None).await;
            assert_eq!(response.status(), StatusCode::OK, "{}", asset.name);
            assert_eq!(response.headers()[header::CONTENT_TYPE], asset.content_type);
            assert_eq!(response.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            let etag = response.headers()[header::ETAG].to_str().unwrap().to_string();
            let again = fetch(&format!("/app/{}", asset.name), Some(&etag)).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{}", asset.name);
            assert!(again.into_body().collect().await.unwrap().to_bytes().is_empty());
        }
    }

    #[tokio::test]
    async fn an_unknown_asset_is_a_json_404() {
        let response = fetch("/app/nope.js", None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(error["error"]["message"], "no such file: /app/nope.js");
    }

    #[test]
    fn every_kernel_of_the_webgpu_plugin_is_served_from_the_plugins_own_file() {
        let folder =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/webgpu/src/shaders");
        let mut served = 0;
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            let name = format!("shaders/{}", path.file_name().unwrap().to_str().unwrap());
            let asset = ASSETS.iter().find(|asset| asset.name == name);
            let asset = asset.unwrap_or_else(|| panic!("{name} is not served"));
            assert_eq!(asset.body, std::fs::read(&path).unwrap(), "{name}");
            served += 1;
        }
        assert!(served >= 13, "{served} kernels");
    }

    #[tokio::test]
    async fn files_in_the_apps_folders_are_served() {
        let response = fetch("/app/engine/engine.js", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let response = fetch("/app/shaders/decode.wgsl", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(std::str::from_utf8(&body).unwrap().contains("//! Q4_1"));
    }

    #[test]
    fn a_static_export_holds_the_page_and_every_file_it_loads_under_app() {
        let files: Vec<(String, &[u8])> = static_files().collect();
        assert_eq!(files[0], ("index.html".to_string(), ASSETS[0].body));
        assert_eq!(files.len(), ASSETS.len());
        for asset in &ASSETS[1..] {
            let name = format!("app/{}", asset.name);
            assert!(
                files.iter().any(|(file, body)| *file == name && *body == asset.body),
                "{name}"
            );
        }
        assert!(files.iter().any(|(file, _)| *file == format!("app/{SITE_FILE}")));
    }

    #[test]
    fn the_page_uses_relative_urls_so_it_works_under_any_path_prefix() {
        for asset in ASSETS.iter().filter(|asset| asset.content_type.starts_with("text/")) {
            let text = std::str::from_utf8(asset.body).unwrap();
            for quote in ['"', '\''] {
                for absolute in ["/app/", "/api/"] {
                    let reference = format!("{quote}{absolute}");
                    // Server mode's API calls stay absolute: they run only under `hearth serve`.
                    let allowed = asset.name == "main.js" && absolute == "/api/";
                    assert!(
                        allowed || !text.contains(&reference),
                        "{} names {reference}…",
                        asset.name
                    );
                }
            }
        }
    }

    #[test]
    fn only_the_page_and_its_files_are_public() {
        assert!(is_public("/"));
        assert!(is_public("/app/main.js"));
        assert!(!is_public("/v1/models"));
        assert!(!is_public("/api/ps"));
        assert!(!is_public("/application"));
    }

    #[test]
    fn the_page_loads_only_files_that_are_embedded() {
        let names: Vec<&str> = ASSETS.iter().map(|asset| asset.name).collect();
        for asset in ASSETS.iter().filter(|asset| asset.content_type.starts_with("text/")) {
            let text = std::str::from_utf8(asset.body).unwrap();
            // The page's own references are relative (`app/…`), the engine's are
            // `/app/…` in comments and examples.
            let relative = text.split("\"app/").skip(1).chain(text.split("'app/").skip(1));
            for reference in text.split(ASSET_PREFIX).skip(1).chain(relative) {
                let name: String = reference
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
                    .collect();
                // A folder (the kernels' base path) must hold served files.
                let served = if name.ends_with('/') {
                    names.iter().any(|served| served.starts_with(&name))
                } else {
                    names.contains(&name.as_str())
                };
                assert!(served, "{} names /app/{name}", asset.name);
            }
            // Imports are relative to the importing file's folder.
            let folder = asset.name.rsplit_once('/').map_or("", |(folder, _)| folder);
            for import in text.split("from './").skip(1).chain(text.split("import('./").skip(1)) {
                let file = import.split('\'').next().unwrap();
                let name =
                    if folder.is_empty() { file.to_string() } else { format!("{folder}/{file}") };
                assert!(names.contains(&name.as_str()), "{} imports ./{file}", asset.name);
            }
        }
    }
}
