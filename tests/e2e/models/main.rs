//! hearth with its real backend plugins and the real test models: the CLI, the HTTP
//! API, cancellation, LoRA adapters and the idle lifecycle, as a user meets them.
//!
//! Needs the models installed by `scripts/setup.sh` (`HEARTH_TEST_MODELS`).

mod adapters;
mod cli;
mod corpus;
mod corrupt_files;
mod helpers;
mod http;
mod lifecycle;
mod load;
#[path = "../support/mod.rs"]
mod support;
