//! The HTTP API: OpenAI-compatible endpoints under `/v1` (chat and legacy completions,
//! the stateless Responses API, embeddings, models), Anthropic's `/v1/messages`,
//! Ollama's under `/api` (where hearth's own `/api/ps` had Ollama's name, Ollama's shape
//! wins and hearth's facts are extra fields), hearth's own under `/api`, and the web app
//! at `/` (its files under `/app/`), a client of the same endpoints.
//!
//! Handlers are thin: they validate, turn the body into a [`Generation`] and hand it
//! to the [`Hearth`] service through the path every wire format shares (`answer`).
//! Every error leaves through [`ApiError`], the one place that maps errors to HTTP
//! statuses, in the error shape of the route's API; internals never reach a response
//! body.
//!
//! [`Generation`]: crate::service::Generation

mod answer;
mod anthropic;
mod body;
mod clock;
mod content;
mod embeddings;
mod error;
mod guard;
mod logprobs;
mod metrics;
mod model_files;
mod native;
mod ollama;
mod openai;
mod params;
mod responses;
mod server;
mod structured;
mod tokens;
mod tool_formats;
mod tool_stream;
mod tools;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method};
use axum::routing::{get, post};
use axum::{middleware, Extension, Router};
use error::Dialect;
use tower_http::cors::CorsLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;

use guard::QueueLimiter;

use crate::service::Hearth;

pub use error::ApiError;
pub use guard::ApiConfig;
pub use server::serve_until;

/// What a static export of the web app (`hearth export-web`) writes: the app's files
/// and the catalog's views as the API gives them.
pub mod static_app {
    pub use super::native::{idle_view, tier_view};
    pub use super::web::{static_files, SITE_FILE};
}

/// The router with every endpoint and the default protections of a loopback server.
pub fn app(hearth: Arc<Hearth>) -> Router {
    app_with(hearth, ApiConfig::default())
}

/// The router with every endpoint, behind the protections `config` asks for.
pub fn app_with(hearth: Arc<Hearth>, config: ApiConfig) -> Router {
    let cors = (!config.cors_origins.is_empty()).then(|| {
        let origins: Vec<HeaderValue> =
            config.cors_origins.iter().filter_map(|origin| origin.parse().ok()).collect();
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
    });
    let queue = QueueLimiter::new(config.max_queue_per_model);
    let body_limit = config.max_body_bytes;
    let router = routes(hearth)
        .layer(Extension(queue))
        .layer(Extension(Arc::new(metrics::Metrics::default())))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(RequestBodyTimeoutLayer::new(BODY_READ_TIMEOUT))
        .layer(middleware::from_fn_with_state(Arc::new(config), guard::check_request));
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// A client that has not sent its whole body by then is cut off.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

fn routes(hearth: Arc<Hearth>) -> Router {
    let ollama = Router::new()
        .route("/api/chat", post(ollama::chat))
        .route("/api/generate", post(ollama::generate))
        .route("/api/tags", get(ollama::models::tags))
        .route("/api/show", post(ollama::models::show))
        .route("/api/ps", get(ollama::models::ps))
        .route("/api/pull", post(ollama::models::pull))
        .route("/api/version", get(ollama::models::version))
        .route("/api/embed", post(ollama::embed::embed))
        .route("/api/embeddings", post(ollama::embed::embeddings))
        .route_layer(middleware::map_response_with_state(Dialect::Ollama, error::in_dialect));
    let anthropic = Router::new()
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route_layer(middleware::map_response_with_state(Dialect::Anthropic, error::in_dialect));
    Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/models", get(openai::models))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/responses", post(responses::responses))
        .merge(ollama)
        .merge(anthropic)
        .route("/api/profile", get(native::profile))
        .route("/api/plugins", get(native::plugins))
        .route("/api/architectures", get(native::architectures))
        .route("/api/gguf/{model}", get(model_files::gguf))
        .route("/api/load", post(native::load))
        .route("/api/unload", post(native::unload))
        .route("/tokenize", post(tokens::tokenize))
        .route("/detokenize", post(tokens::detokenize))
        .route("/health", get(native::health))
        .route("/metrics", get(metrics::metrics))
        .route("/", get(web::page))
        .route("/app/{*file}", get(web::asset))
        .fallback(error::no_such_route)
        .with_state(hearth)
}

/// Serve the API on `addr` until ctrl-c, then unload every model.
pub async fn serve(
    hearth: Arc<Hearth>,
    addr: SocketAddr,
    config: ApiConfig,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(address = %listener.local_addr()?, "hearth is listening");
    let header_read_timeout = config.header_read_timeout;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve_until(listener, app_with(hearth.clone(), config), header_read_timeout, shutdown).await;
    hearth.scheduler().unload_all().await;
    Ok(())
}
