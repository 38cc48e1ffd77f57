//! Integration tests of the MLX plugin against the real SmolLM2 model.

mod backend;
mod common;
mod cross_check;
mod end_to_end;
mod llamacpp;
mod lora;
mod reference;
