//! # hearth-sdk — write a backend for hearth
//!
//! hearth is a local LLM runtime whose inference engines are plugins: shared libraries
//! the host loads from its plugins folder at run time. This crate is everything a plugin
//! needs: the stable ABI (through [abi_stable]), the request and answer types, the one
//! error type, and the export macro that makes a crate a plugin.
//!
//! ## A backend in five steps
//!
//! 1. Make a `cdylib` crate depending on `hearth-sdk` and `abi_stable`:
//!    ```toml
//!    [lib]
//!    crate-type = ["cdylib"]
//!    [dependencies]
//!    hearth-sdk = "0.1"
//!    abi_stable = "0.11"
//!    ```
//! 2. Implement [`Backend`]: `info` names the backend (its `id` is what users pass as
//!    `--backend`), `probe` says whether this machine can run it and on which devices,
//!    `load` turns a [`LoadRequest`] into a [`Model`].
//! 3. Implement [`Model`]: `generate` streams text through a [`TokenSink`] and stops
//!    when the sink returns [`SinkControl::Stop`]; `trim` frees caches but keeps the
//!    weights; `memory` reports what the model holds; `Drop` frees everything.
//! 4. Export it: `hearth_sdk::export_backend!(MyBackend::new);` where
//!    `MyBackend::new: fn() -> Result<MyBackend, PluginError>`.
//! 5. Build with `cargo build --release` and copy the library into hearth's plugins
//!    folder; `hearth plugins` lists it, with the reason if it was refused.
//!
//! ## Rules of the boundary
//!
//! - **Threads.** Every call blocks and may come from any host thread; the host runs
//!   them off its async runtime. Do not assume a tokio runtime exists. A model may be
//!   asked to generate from two threads at once: serialise inside it if it must.
//! - **Panics.** The export macro wraps every entry point in `catch_unwind`; a panic
//!   becomes a [`PluginError`] of kind [`ErrorKind::Panicked`] on that request and the
//!   host keeps serving. Build plugins with `panic = "unwind"` (the default); an abort
//!   or a segfault still takes the host down.
//! - **Errors.** Return the [`ErrorKind`] that tells the host what to do next:
//!   `Unsupported` and `OutOfMemory` make the router fall back to another tier or
//!   backend, `InvalidRequest` goes back to the client as a 400, `ModelFile` names a
//!   file that is missing or corrupt.
//! - **Memory.** Objects are created and freed on the plugin's side of the boundary;
//!   the ABI types ([`abi_stable::std_types::RString`], `RVec`, …) carry their own
//!   vtables, so never pass a plain `Box` or `Vec` across.
//! - **Versions.** abi_stable checks every type's layout at load time, and
//!   [`BackendInfo::api_version`] carries [`API_VERSION`]; a mismatch is refused with a
//!   reason instead of crashing.
//! - **Unloading.** The host never unloads a plugin library (abi_stable keeps them
//!   resident); a new build of a plugin is loaded from a fresh copy beside the old one.
//!
//! ## Shared helpers
//!
//! With the `helpers` feature, [`helpers`] offers what GGUF backends share and the ABI
//! does not carry: a validating GGUF reader ([`helpers::Gguf`]), a byte-level BPE
//! tokenizer built from GGUF metadata ([`helpers::Tokenizer`], with
//! [`helpers::StreamDecoder`] for UTF-8-safe streaming), chat templates
//! ([`helpers::ChatTemplate`]), sampling ([`helpers::Sampler`]) and stop strings
//! ([`helpers::StopMatcher`]).
//!
//! ## Testing with the host
//!
//! Build the plugin, point the host at a folder holding it and run
//! `hearth --plugins DIR plugins` to see it probed, then `hearth --plugins DIR run
//! MODEL --backend ID "prompt"`. The host's own tests load `tests/fixture-plugin`, a
//! small real plugin, the same way.

pub mod abi;
mod error;
#[cfg(feature = "helpers")]
pub mod helpers;
pub mod plugin;
mod types;

pub use abi_stable;
pub use error::{ErrorKind, PluginError};
pub use plugin::{guard, Backend, Model, TokenSink};
pub use types::*;
