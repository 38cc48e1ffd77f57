//! A model's own tokenizer on request (`/tokenize`, `/detokenize`, Anthropic's
//! `count_tokens`): the model is routed and loaded as for a generation, and its backend
//! must list the `tokenize` feature.
//! [`Hearth::prepare_listing`] is that load-and-check, shared with embeddings.

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
        let prepared =
            self.prepare_listing(plain(route, keep_alive), "tokenize", feature::TOKENIZE).await?;
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
        let prepared =
            self.prepare_listing(plain(route, keep_alive), "detokenize", feature::TOKENIZE).await?;
        let model_id = prepared.model_id().to_string();
        let text = prepared.with_model(move |runner| runner.detokenize(&tokens)).await?;
        Ok((model_id, text))
    }

    /// How many tokens `generation`'s prompt is on the model it routes to, as that
    /// model would read it: `(model, count)`.
    pub async fn count_prompt_tokens(
        &self,
        generation: Generation,
    ) -> Result<(String, u32), ServiceError> {
        let request = generation.request.clone();
        let prepared = self.prepare_listing(generation, "count_tokens", feature::TOKENIZE).await?;
        let model_id = prepared.model_id().to_string();
        let count = prepared.with_model(move |runner| runner.count_prompt_tokens(&request)).await?;
        Ok((model_id, count))
    }

    /// Load the model for `what`, refusing a backend that does not list `needed`.
    pub(super) async fn prepare_listing(
        &self,
        generation: Generation,
        what: &'static str,
        needed: &'static str,
    ) -> Result<Prepared, ServiceError> {
        let prepared = self.prepare(generation).await?;
        let backend = prepared.backend().to_string();
        let listed = self
            .registry()
            .get(&backend)
            .is_some_and(|plugin| plugin.info.features.iter().any(|f| f == needed));
        if listed {
            return Ok(prepared);
        }
        // Released off the runtime: for a worker's model, a round trip over its pipe.
        let _ = tokio::task::spawn_blocking(move || drop(prepared)).await;
        Err(ServiceError::Unsupported { field: what, feature: needed, backend })
    }
}

/// A request that only needs the model loaded: no prompt, no adapters.
pub(super) fn plain(route: RouteRequest, keep_alive: KeepAlive) -> Generation {
    Generation { route, request: GenerateRequest::default(), adapters: Vec::new(), keep_alive }
}
