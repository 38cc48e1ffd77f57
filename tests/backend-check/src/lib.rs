//! What every backend plugin's tests check it against, in one place so the MLX and
//! WebGPU plugins are held to the same standard:
//!
//! - [`reference`](mod@reference): the model layer's CPU reference executor (f32 values,
//!   f64 sums over the GGUF weights dequantized by the SDK, with LoRA), re-exported;
//! - [`llamacpp`]: the llama.cpp plugin loaded from its shared library through the ABI,
//!   exactly as the host loads it, and llama.cpp's own logits from the
//!   `hearth-llama-logits` program;
//! - [`agreement`]: the five fixed prompts, greedy answers side by side, and the
//!   relative error used to compare logits;
//! - [`conformance`]: every architecture in every GGUF type, on tiny random-weight
//!   models, against llama.cpp;
//! - [`embeddings`](mod@embeddings): every architecture's embeddings under every
//!   pooling, against llama.cpp and the CPU reference;
//! - [`requests`]: greedy chat and raw requests, and a sink that collects;
//! - [`fixtures`]: the test models, an F16 copy of SmolLM2 and pooled copies ([`gguf_copy`]) and the
//!   repository's trained adapter.

pub mod agreement;
pub mod conformance;
pub mod embeddings;
pub mod fixtures;
pub mod gguf_copy;
pub mod llamacpp;
pub use hearth_model::reference;
pub mod requests;
