//! A model's own tokenizer on request (`/tokenize`, `/detokenize`): the model is routed
//! and loaded as for a generation, and its backend must list the `tokenize` feature.

use hearth_sdk::{feature, GenerateRequest};

use super::generate::{Generation, Prepared, ServiceError};
use super::Hearth;
use crate::lifecycle::KeepAlive;
use crate::router::RouteRequest;

/// A text's tokens, each with its own text when asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokenized {
    pub model_id: String,
    pub tokens: Vec<u32>,
    /// Each token's text, when the caller asked for pieces.
    pub pieces: Option<Vec<String>>,
}

impl Hearth {
    /// The tokens of `text` on the model `route` leads to.
    pub async fn tokenize(
        &self,
        route: RouteRequest,
        keep_alive: KeepAlive,
        text: String,
        add_special: bool,
        with_pieces: bool,
    ) -> Result<Tokenized, ServiceError> {
        let prepared = self.prepare_tokenizer(route, keep_alive, "tokenize").await?;
        let model_id = prepared.model_id().to_string();
        let (tokens, pieces) = prepared
            .with_model(move |runner| {
                let tokens = runner.tokenize(&text, add_special)?;
                let pieces = with_pieces
                    .then(|| tokens.iter().map(|&token| runner.detokenize(&[token])).collect())
                    .transpose()?;
                Ok((tokens, pieces))
            })
            .await?;
        Ok(Tokenized { model_id, tokens, pieces })
    }

    /// The text of `tokens` on the model `route` leads to: `(model, text)`.
    pub async fn detokenize(
        &self,
        route: RouteRequest,
        keep_alive: KeepAlive,
        tokens: Vec<u32>,
    ) -> Result<(String, String), ServiceError> {
        let prepared = self.prepare_tokenizer(route, keep_alive, "detokenize").await?;
        let model_id = prepared.model_id().to_string();
        let text = prepared.with_model(move |runner| runner.detokenize(&tokens)).await?;
        Ok((model_id, text))
    }

    /// Load the model for `what`, refusing a backend that does not list tokenizing.
    async fn prepare_tokenizer(
        &self,
        route: RouteRequest,
        keep_alive: KeepAlive,
        what: &'static str,
    ) -> Result<Prepared, ServiceError> {
        let generation = Generation {
            route,
            request: GenerateRequest::default(),
            adapters: Vec::new(),
            keep_alive,
        };
        let prepared = self.prepare(generation).await?;
        let backend = prepared.backend().to_string();
        let listed = self
            .registry()
            .get(&backend)
            .is_some_and(|plugin| plugin.info.features.iter().any(|f| f == feature::TOKENIZE));
        if listed {
            return Ok(prepared);
        }
        // Released off the runtime: for a worker's model, a round trip over its pipe.
        let _ = tokio::task::spawn_blocking(move || drop(prepared)).await;
        Err(ServiceError::Unsupported { field: what, feature: feature::TOKENIZE, backend })
    }
}
