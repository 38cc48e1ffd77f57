//! Integration tests of the MLX plugin against the real SmolLM2 model; the CPU
//! reference and the llama.cpp comparisons come from the shared `hearth-backend-check`
//! crate.

mod backend;
mod common;
mod conformance;
mod cross_check;
mod cuda_driver;
mod embeddings;
mod end_to_end;
mod fixture;
mod gemma3;
mod gemma3n;
mod gguf_tensors;
mod lora;
mod mlx_format;
