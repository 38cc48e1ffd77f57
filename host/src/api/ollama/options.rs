//! Ollama's `options`: the sampling and length settings hearth honours, mapped onto
//! [`CommonParams`]; the rest refused with a 400 naming `options.<field>`.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::api::params::{refuse_fields, CommonParams, SeedField, StopField, WholeNumber};
use crate::api::ApiError;

/// Options of Ollama's that hearth does not implement. Those about how Ollama runs a
/// model (threads, GPU layers, memory mapping) have no meaning for hearth's backends,
/// and refusing them says so rather than pretending.
const NOT_YET_SUPPORTED: &[&str] = &[
    "num_keep",
    "typical_p",
    "tfs_z",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "penalize_newline",
    "numa",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "low_vram",
    "vocab_only",
    "use_mmap",
    "use_mlock",
    "num_thread",
];

/// The `options` object of `/api/chat` and `/api/generate`.
#[derive(Debug, Default, Deserialize)]
pub struct Options {
    pub temperature: Option<f64>,
    pub top_k: Option<WholeNumber>,
    pub top_p: Option<f64>,
    pub min_p: Option<f64>,
    pub seed: Option<SeedField>,
    /// Tokens to generate; -1 for as many as hearth allows.
    pub num_predict: Option<WholeNumber>,
    pub stop: Option<StopField>,
    pub repeat_penalty: Option<f64>,
    pub repeat_last_n: Option<WholeNumber>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    /// The context window the client wants.
    pub num_ctx: Option<WholeNumber>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Options {
    /// Write these options into `params`. `context_window` is the window hearth loads
    /// the model with: a `num_ctx` up to it is honoured (everything that fits in the
    /// client's window fits in hearth's), a larger one is refused, since hearth loads a
    /// model with one window for every request.
    pub fn apply(self, params: &mut CommonParams, context_window: u32) -> Result<(), ApiError> {
        refuse_fields(&self.other, NOT_YET_SUPPORTED, &[], "options.")?;
        if let Some(num_ctx) = self.num_ctx {
            let asked = num_ctx.0;
            if context_window > 0 && asked > f64::from(context_window) {
                return Err(ApiError::bad_request(format!(
                    "`options.num_ctx` {asked} is larger than the {context_window}-token context \
                     hearth loads this model with; ask for at most {context_window}"
                )));
            }
        }
        params.max_tokens = match self.num_predict {
            Some(WholeNumber(-1.0)) => {
                Some(WholeNumber(f64::from(crate::api::params::MAX_TOKENS_LIMIT)))
            }
            Some(WholeNumber(count)) if count < 0.0 => {
                return Err(ApiError::bad_request(format!(
                    "`options.num_predict` must be -1 (no limit) or a count of tokens, got {count}"
                )))
            }
            count => count,
        };
        if matches!(self.repeat_last_n, Some(WholeNumber(count)) if count < 0.0) {
            return Err(ApiError::bad_request(
                "`options.repeat_last_n` must be 0 or more; -1 (the whole context) is not supported",
            ));
        }
        params.temperature = self.temperature;
        params.top_k = self.top_k;
        params.top_p = self.top_p;
        params.min_p = self.min_p;
        params.seed = self.seed;
        params.stop = self.stop;
        params.repeat_penalty = self.repeat_penalty;
        params.repeat_last_n = self.repeat_last_n;
        params.presence_penalty = self.presence_penalty;
        params.frequency_penalty = self.frequency_penalty;
        Ok(())
    }
}
