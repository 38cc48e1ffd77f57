//! hearth with its real backend plugins and the real test models: the CLI, the HTTP
//! API, cancellation, LoRA adapters and corrupt files, as a user meets them. Tests that read
//! the process's resident memory live in the `memory` binary, alone.
//!
//! Needs the models installed by `scripts/setup.sh` (`HEARTH_TEST_MODELS`).

mod adapters;
mod backends;
mod cli;
mod clients;
mod corpus;
mod corrupt_files;
mod embeddings;
mod helpers;
mod http;
mod modules;
mod rpc;
mod structured;
#[path = "../support/mod.rs"]
mod support;
mod template_tools;
mod tokens;
