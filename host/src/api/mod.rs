//! The HTTP API: OpenAI-compatible endpoints under `/v1`, hearth's own under `/api`.
//!
//! Handlers are thin: they validate, turn the body into a [`Generation`] and hand it
//! to the [`Hearth`] service. Every error leaves through [`ApiError`], the one place
//! that maps errors to HTTP statuses; internals never reach a response body.
//!
//! [`Generation`]: crate::service::Generation

mod error;
mod native;
mod openai;
mod params;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::service::Hearth;

pub use error::ApiError;

/// The router with every endpoint, over a shared service.
pub fn app(hearth: Arc<Hearth>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/models", get(openai::models))
        .route("/api/ps", get(native::ps))
        .route("/api/profile", get(native::profile))
        .route("/api/plugins", get(native::plugins))
        .route("/api/load", post(native::load))
        .route("/api/unload", post(native::unload))
        .route("/health", get(native::health))
        .with_state(hearth)
}

/// Serve the API on `addr` until ctrl-c, then unload every model.
pub async fn serve(hearth: Arc<Hearth>, addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(address = %listener.local_addr()?, "hearth is listening");
    axum::serve(listener, app(hearth.clone()))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    hearth.scheduler().unload_all().await;
    Ok(())
}
