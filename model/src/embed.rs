//! Embeddings, written once for every engine of the model layer: a text's tokens run
//! through the layer program without generating, the final-normed hidden state of
//! every token is pooled as the model's GGUF says (`<arch>.pooling_type`, llama.cpp's
//! numbering), and the pooled vector is handed back as the model gives it. An engine
//! supplies only the hidden states ([`embed`]'s closure).
//!
//! The rules are the llama.cpp plugin's, so every backend embeds a file alike: a file
//! that names no pooling is a generative model and is refused (llama.cpp would give
//! per-token states, not a text's vector); a reranker is refused; a text longer than
//! the window is cut to it when asked, refused otherwise. Normalising to unit length is
//! the host's, for every backend (`hearth::service::embed`).

use hearth_sdk::helpers::{Gguf, Value};
use hearth_sdk::{Embedding, PluginError};

use crate::generate::Text;
use crate::Config;

/// The most tokens one embedding reads, as the llama.cpp plugin's embedding context:
/// the whole text is one batch, whose buffers grow with it.
pub const MAX_WINDOW: u32 = 8192;

/// How a text's token states become one vector: `<arch>.pooling_type` in llama.cpp's
/// numbering (`LLAMA_POOLING_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Per-token states: the file names no pooling, or pooling 0.
    None,
    /// The mean of every token's state.
    Mean,
    /// The first token's state (BERT's `[CLS]`).
    Cls,
    /// The last token's state (decoder embedding models).
    Last,
    /// A reranker's score of a text pair, not an embedding.
    Rank,
}

impl Pooling {
    /// The pooling `<arch>.pooling_type` names in `gguf`; [`Pooling::None`] without the
    /// key (and for llama.cpp's "unspecified", -1).
    pub fn from_gguf(gguf: &Gguf, arch: &str) -> Result<Self, PluginError> {
        let key = format!("{arch}.pooling_type");
        let number = match gguf.get(&key) {
            None => return Ok(Self::None),
            Some(Value::I32(n)) => i64::from(*n),
            Some(Value::U32(n)) => i64::from(*n),
            Some(Value::I64(n)) => *n,
            Some(Value::U64(n)) => i64::try_from(*n).unwrap_or(i64::MAX),
            Some(other) => {
                return Err(PluginError::model_file(format!("`{key}` is {other:?}, not a number")))
            }
        };
        match number {
            -1 | 0 => Ok(Self::None),
            1 => Ok(Self::Mean),
            2 => Ok(Self::Cls),
            3 => Ok(Self::Last),
            4 => Ok(Self::Rank),
            other => Err(PluginError::model_file(format!("`{key}` = {other} is no pooling"))),
        }
    }

    /// The pooled vector of `states`, `n_embd` values per token in token order, summed
    /// in f64. Only for a pooling that gives one vector: [`embed`] refuses the others
    /// before any state is computed.
    pub fn pool(self, states: &[f32], n_embd: usize) -> Vec<f32> {
        let tokens = states.len() / n_embd;
        match self {
            Self::Mean => {
                let mut sums = vec![0.0f64; n_embd];
                for row in states.chunks_exact(n_embd) {
                    sums.iter_mut().zip(row).for_each(|(sum, &x)| *sum += f64::from(x));
                }
                sums.iter().map(|sum| (sum / tokens as f64) as f32).collect()
            }
            Self::Cls => states[..n_embd].to_vec(),
            Self::Last => states[(tokens - 1) * n_embd..][..n_embd].to_vec(),
            Self::None | Self::Rank => unreachable!("refused before the states are computed"),
        }
    }
}

/// The most tokens a text may have: the model's trained context, at most
/// [`MAX_WINDOW`] and at most `capacity`, what the engine can evaluate at once.
pub fn window(config: &Config, capacity: u32) -> u32 {
    config.context_length.min(MAX_WINDOW).min(capacity).max(1)
}

/// The embedding of `input`, with the tokens the model adds itself (its BOS): refused
/// when empty, when the model names no pooling or is a reranker, and when longer than
/// [`window`] unless `truncate`; `hidden_states` evaluates tokens from position 0 and
/// returns each one's final-normed state. A state that is not finite is the file's
/// fault, as llama.cpp's plugin says.
pub fn embed(
    text: &Text,
    config: &Config,
    capacity: u32,
    input: &str,
    truncate: bool,
    hidden_states: impl FnOnce(&[u32]) -> Result<Vec<f32>, PluginError>,
) -> Result<Embedding, PluginError> {
    let mut tokens = text.tokenize(input, true)?;
    if input.is_empty() || tokens.is_empty() {
        return Err(PluginError::invalid_request("the text to embed is empty"));
    }
    match config.pooling {
        Pooling::None => {
            return Err(PluginError::unsupported(
                "the model gives no embeddings: its file names no pooling (a generative model); use an embedding model",
            ))
        }
        Pooling::Rank => {
            return Err(PluginError::unsupported(
                "the model is a reranker: it scores pairs of texts and gives no embeddings",
            ))
        }
        Pooling::Mean | Pooling::Cls | Pooling::Last => {}
    }
    let window = window(config, capacity) as usize;
    if tokens.len() > window {
        if !truncate {
            return Err(PluginError::invalid_request(format!(
                "the text is {} tokens; the model embeds at most {window} at once",
                tokens.len()
            )));
        }
        tokens.truncate(window);
    }
    let n_embd = config.n_embd as usize;
    let states = hidden_states(&tokens)?;
    if states.len() != tokens.len() * n_embd {
        return Err(PluginError::internal(format!(
            "{} hidden values for {} tokens of {n_embd}",
            states.len(),
            tokens.len()
        )));
    }
    let vector = config.pooling.pool(&states, n_embd);
    if !vector.iter().all(|x| x.is_finite()) {
        return Err(PluginError::model_file(
            "the model computed an embedding that is not finite; its file is damaged",
        ));
    }
    Ok(Embedding { vector: vector.into(), tokens: tokens.len() as u32 })
}

#[cfg(test)]
mod tests {
    use super::Pooling;

    /// Three tokens of two values each.
    const STATES: [f32; 6] = [1.0, -2.0, 3.0, 4.0, 8.0, 1.0];

    #[test]
    fn mean_pooling_averages_every_tokens_state() {
        assert_eq!(Pooling::Mean.pool(&STATES, 2), vec![4.0, 1.0]);
    }

    #[test]
    fn cls_pooling_takes_the_first_token_and_last_pooling_the_last() {
        assert_eq!(Pooling::Cls.pool(&STATES, 2), vec![1.0, -2.0]);
        assert_eq!(Pooling::Last.pool(&STATES, 2), vec![8.0, 1.0]);
    }
}
