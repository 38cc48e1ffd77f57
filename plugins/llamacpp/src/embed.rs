//! Embeddings: a context of its own that pools each text into one vector as the model's
//! file says (mean, CLS or last token), made at the first request and dropped at a
//! trim. It computes on the caller's thread, beside the generation thread: llama.cpp
//! lets one model have several contexts.

use std::sync::{Mutex, PoisonError};

use hearth_sdk::{Embedding, PluginError};

use crate::ffi::{DecodeError, Pooling, RawBatch, RawContext};
use crate::model::Loaded;

/// The most tokens an embedding context reads at once: the whole text goes in one
/// micro-batch, whose compute buffers grow with it.
const MAX_WINDOW: u32 = 8192;

/// A model's embedding context, once one was asked for.
#[derive(Default)]
pub struct Embedder(Mutex<Option<EmbeddingContext>>);

struct EmbeddingContext {
    context: RawContext,
    batch: RawBatch,
}

impl Embedder {
    /// The pooled embedding of `text`, with the tokens the model adds itself (BERT's
    /// `[CLS]` and `[SEP]`); a text longer than the window is cut to it when
    /// `truncate`, refused otherwise.
    pub fn embed(
        &self,
        loaded: &Loaded,
        text: &str,
        truncate: bool,
    ) -> Result<Embedding, PluginError> {
        let mut tokens = loaded
            .weights
            .tokenize(text, true)
            .ok_or_else(|| PluginError::invalid_request("the text could not be tokenized"))?;
        if tokens.is_empty() {
            return Err(PluginError::invalid_request("the text to embed is empty"));
        }
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let embedder = match slot.as_mut() {
            Some(embedder) => embedder,
            None => slot.insert(EmbeddingContext::new(loaded)?),
        };
        let window = embedder.context.size() as usize;
        if tokens.len() > window {
            if !truncate {
                return Err(PluginError::invalid_request(format!(
                    "the text is {} tokens; model {} embeds at most {window} at once",
                    tokens.len(),
                    loaded.id
                )));
            }
            tokens.truncate(window);
        }
        let EmbeddingContext { context, batch } = embedder;
        context.clear();
        batch.clear();
        for (position, &token) in tokens.iter().enumerate() {
            batch.push(token, position, 0, true);
        }
        context.decode(batch).map_err(|error| {
            let code = match error {
                DecodeError::NoSpace => 1,
                DecodeError::Failed(code) => code,
            };
            PluginError::internal(format!("llama.cpp could not embed the text (code {code})"))
        })?;
        let vector = context
            .sequence_embedding(0)
            .ok_or_else(|| PluginError::internal("llama.cpp pooled no embedding"))?;
        if !vector.iter().all(|x| x.is_finite()) {
            return Err(PluginError::model_file(format!(
                "model {} computed an embedding that is not finite; its file is damaged",
                loaded.id
            )));
        }
        Ok(Embedding { vector: vector.to_vec().into(), tokens: tokens.len() as u32 })
    }

    /// Free the context; the next request makes a new one.
    pub fn trim(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl EmbeddingContext {
    /// A context over the model's trained window (at most [`MAX_WINDOW`]), refused
    /// for a model whose file names no pooling: a generative model, whose token states
    /// are not meant as a text's embedding.
    fn new(loaded: &Loaded) -> Result<Self, PluginError> {
        let no_pooling = || {
            PluginError::unsupported(format!(
                "model {} gives no embeddings: its file names no pooling (a generative model); use an embedding model",
                loaded.id
            ))
        };
        // Asked of the file first: a context over a generative model's window would
        // allocate its compute buffers only to be refused.
        let architecture = loaded.weights.metadata("general.architecture").unwrap_or_default();
        if loaded.weights.metadata(&format!("{architecture}.pooling_type")).is_none() {
            return Err(no_pooling());
        }
        let trained = loaded.weights.train_context();
        let window = if trained == 0 { loaded.context_size } else { trained }.clamp(1, MAX_WINDOW);
        let context = RawContext::for_embeddings(&loaded.weights, window, loaded.threads)
            .ok_or_else(|| {
                PluginError::out_of_memory(format!(
                    "llama.cpp could not create a {window}-token embedding context for model {}",
                    loaded.id
                ))
            })?;
        match context.pooling() {
            Pooling::None => Err(no_pooling()),
            Pooling::Rank => Err(PluginError::unsupported(format!(
                "model {} is a reranker: it scores pairs of texts and gives no embeddings",
                loaded.id
            ))),
            Pooling::Mean | Pooling::Cls | Pooling::Last => {
                let batch = RawBatch::new(context.size() as usize);
                Ok(Self { context, batch })
            }
        }
    }
}
