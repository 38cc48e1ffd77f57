//! The llama.cpp plugin against a real model, called directly through the SDK traits.
//!
//! The models come from `$HEARTH_TEST_MODELS` (see `common::model_path`); every test
//! fails, rather than skips, when they are missing.

mod abi;
mod common;
mod errors;
mod generation;
mod lifecycle;
mod lora;
mod parallel;
