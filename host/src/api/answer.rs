//! The path every completion endpoint shares, whatever its wire format: the request's
//! fields become a [`Generation`], which takes a place in the model's queue, is prepared
//! (routed and loaded) and then runs, either to the end ([`Started::complete`]) or as a
//! stream of pieces ([`Started::pieces`]). OpenAI's, Ollama's and Anthropic's handlers
//! differ only in how they read the request and write what comes out.

use std::sync::Arc;

use futures::Stream;
use hearth_sdk::abi_stable::std_types::{RString, RVec};
use hearth_sdk::GenerateRequest;
use tokio::sync::mpsc;

use super::guard::{QueueLimiter, QueueSlot};
use super::metrics::Metrics;
use super::params::CommonParams;
use super::tool_formats::ToolFormat;
use super::tools::{self, ToolUse, Turn};
use super::ApiError;
use crate::service::{Completion, Emitted, Generation, Hearth, Prepared};

/// The generation a request asks for: its turns (a chat) or its prompt (plain text, no
/// chat template), with the shared fields checked; and the tools the model may call,
/// in the format of the chat template of the model the request is routed to (see
/// [`tools::chat`]), which the grammar holds the answer to.
pub fn generation(
    hearth: &Hearth,
    params: &CommonParams,
    turns: Vec<Turn>,
    prompt: Option<String>,
) -> Result<(Generation, Option<ToolUse>), ApiError> {
    params.check_n()?;
    params.check_fields()?;
    let tools = params.tool_use()?;
    let mut grammar = params.grammar()?;
    if tools.is_some() {
        if prompt.is_some() {
            return Err(ApiError::bad_request("`tools` need a chat (`messages`), not a `prompt`"));
        }
        if !grammar.is_empty() {
            return Err(ApiError::bad_request(
                "`tools` and a response format both constrain the answer; send one of them",
            ));
        }
        // A tool-using answer is read and rewritten (see `tools`), so its tokens are
        // not the text the client gets; their log-probabilities would describe JSON
        // the client never sees.
        if params.logprobs()?.is_some() {
            return Err(ApiError::bad_request(
                "log-probabilities with `tools`: hearth does not report them for tool-using answers",
            ));
        }
    }
    let route = params.route();
    let uses_tools = tools.is_some() || turns.iter().any(|turn| !matches!(turn, Turn::Message(_)));
    let format = if uses_tools {
        ToolFormat::of_template(hearth.chat_template(&route).as_deref())
    } else {
        ToolFormat::Generic
    };
    let tools = tools.map(|tools| tools.in_format(format));
    let chat = tools::chat(turns, tools.as_ref(), format);
    if tools.is_some() {
        grammar = chat.grammar;
    }
    let generation = Generation {
        route,
        request: GenerateRequest {
            messages: chat.messages,
            prompt: prompt.map(RString::from).into(),
            sampling: params.sampling()?,
            stop: params.stop()?,
            max_tokens: params.max_tokens()?,
            adapters: RVec::new(),
            presence_penalty: params.presence_penalty()?,
            frequency_penalty: params.frequency_penalty()?,
            logit_bias: params.logit_bias()?,
            logprobs: params.logprobs()?.into(),
            grammar,
            tools: chat.tools,
            message_extras: chat.message_extras,
        },
        adapters: params.adapters()?,
        keep_alive: params.keep_alive()?,
    };
    Ok((generation, tools))
}

/// What a streamed generation yields: its text piece by piece, then how it ended.
pub enum Piece {
    Text(Emitted),
    Finished(Completion),
    Failed(ApiError),
}

/// A generation with its model loaded and its place in the queue, not yet run.
pub struct Started {
    prepared: Prepared,
    slot: QueueSlot,
    metrics: Arc<Metrics>,
}

/// Take a place in the queue of the model `params` names and prepare `generation`;
/// every failure is counted in the metrics.
pub async fn start(
    hearth: &Hearth,
    (queue, metrics): (QueueLimiter, Arc<Metrics>),
    params: &CommonParams,
    generation: Generation,
) -> Result<Started, ApiError> {
    metrics.request_started();
    let started = async {
        let slot = queue.enter(params.model.as_deref().unwrap_or("auto"))?;
        let prepared = hearth.prepare(generation).await?;
        Ok(Started { prepared, slot, metrics: metrics.clone() })
    }
    .await;
    if started.is_err() {
        metrics.request_failed();
    }
    started
}

impl Started {
    /// The model that answers.
    pub fn model_id(&self) -> &str {
        self.prepared.model_id()
    }

    /// Run to the end: the whole text (with its tokens' log-probabilities, when asked
    /// for) and how it ended.
    pub async fn complete(self) -> Result<(Emitted, Completion), ApiError> {
        let Started { prepared, slot, metrics } = self;
        let (tokens, mut pieces) = mpsc::unbounded_channel();
        let completion = match prepared.run(tokens).await {
            Ok(completion) => completion,
            Err(error) => {
                metrics.request_failed();
                return Err(error.into());
            }
        };
        drop(slot);
        metrics.request_finished(&completion);
        let mut answer = Emitted::default();
        while let Ok(piece) = pieces.try_recv() {
            answer.text.push_str(&piece.text);
            answer.logprobs.extend(piece.logprobs);
        }
        Ok((answer, completion))
    }

    /// Run as a stream of pieces ending in [`Piece::Finished`] or [`Piece::Failed`].
    /// Dropping the stream (the client left) drops the token receiver, which cancels
    /// the generation at its next token.
    pub fn pieces(self) -> impl Stream<Item = Piece> {
        let Started { prepared, slot, metrics } = self;
        let (tokens, mut pieces) = mpsc::unbounded_channel();
        let running = tokio::spawn(prepared.run(tokens));
        async_stream::stream! {
            // The request keeps its place in the queue until its stream ends.
            let _slot = slot;
            while let Some(piece) = pieces.recv().await {
                yield Piece::Text(piece);
            }
            match running.await {
                Ok(Ok(completion)) => {
                    metrics.request_finished(&completion);
                    yield Piece::Finished(completion);
                }
                Ok(Err(error)) => {
                    metrics.request_failed();
                    yield Piece::Failed(error.into());
                }
                Err(join) => {
                    tracing::error!(error = %join, "generation task failed");
                    metrics.request_failed();
                    yield Piece::Failed(ApiError::internal());
                }
            }
        }
    }
}
