//! Integration tests of the WebGPU plugin, run on whatever adapter wgpu finds (Mesa's
//! lavapipe on a machine without a GPU). One test binary, so the CPU reference and the
//! llama.cpp comparisons come from the shared `hearth-backend-check` crate.

mod attention;
mod backend;
mod common;
mod conformance;
mod cross_check;
mod embeddings;
mod end_to_end;
mod fused;
mod gemma3;
mod gemma3n;
mod kernels;
mod lora;
