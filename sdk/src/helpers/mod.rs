//! Helpers several backends share, outside the ABI: GGUF and safetensors reading and
//! validation, a tokenizer and chat template from GGUF metadata (or a `tokenizer.json`),
//! sampling and stop strings.
//!
//! The validators come with the `validate` cargo feature of hearth-sdk (the host uses
//! them); everything else with `helpers`, which includes `validate`.

pub mod capabilities;
#[cfg(feature = "helpers")]
pub mod chat;
pub mod ggml;
pub mod ggml_quants;
pub mod gguf;
mod gguf_parse;
#[cfg(test)]
mod gguf_tests;
#[cfg(feature = "helpers")]
pub mod grammar;
pub mod safetensors;
#[cfg(test)]
mod safetensors_tests;
#[cfg(feature = "helpers")]
pub mod sampling;
#[cfg(feature = "helpers")]
pub mod stop;
#[cfg(feature = "helpers")]
pub mod tokenizer;
#[cfg(feature = "helpers")]
mod tokenizer_spm;
#[cfg(all(test, feature = "helpers"))]
mod tokenizer_spm_tests;
#[cfg(all(test, feature = "helpers"))]
mod tokenizer_tests;

pub use capabilities::GgufNeeds;
#[cfg(feature = "helpers")]
pub use chat::{template_source as chat_template_source, ChatError, ChatTemplate};
pub use ggml::{dequantize, GgmlType};
pub use gguf::{Gguf, GgufError, TensorInfo, Value};
#[cfg(feature = "helpers")]
pub use grammar::{Constraint, GrammarCompiler, GrammarError, Grammars, VocabToken};
pub use safetensors::{Safetensors, SafetensorsError, SafetensorsTensor};
#[cfg(feature = "helpers")]
pub use sampling::{CandidateSampling, LogitAdjustments, Sampler};
#[cfg(feature = "helpers")]
pub use stop::{Released, StopMatcher};
#[cfg(feature = "helpers")]
pub use tokenizer::{StreamDecoder, Tokenizer, TokenizerError};
