//! Helpers several backends share, outside the ABI: GGUF reading and validation, a
//! tokenizer and chat template from GGUF metadata, sampling and stop strings.
//!
//! Enabled by the `helpers` cargo feature of hearth-sdk.

pub mod chat;
pub mod ggml;
pub mod gguf;
mod gguf_parse;
#[cfg(test)]
mod gguf_tests;
pub mod sampling;
pub mod stop;
pub mod tokenizer;
#[cfg(test)]
mod tokenizer_tests;

pub use chat::{ChatError, ChatTemplate};
pub use ggml::{dequantize, GgmlType};
pub use gguf::{Gguf, GgufError, TensorInfo, Value};
pub use sampling::Sampler;
pub use stop::{Released, StopMatcher};
pub use tokenizer::{StreamDecoder, Tokenizer, TokenizerError};
