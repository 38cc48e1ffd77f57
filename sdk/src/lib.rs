//! # hearth-sdk — write a backend for hearth
//!
//! hearth is a local LLM runtime whose inference engines are plugins: shared libraries
//! the host loads from its plugins folder at run time. This crate is everything a plugin
//! needs: the stable ABI (through [abi_stable]), the request and answer types, the one
//! error type, and the export macro that makes a crate a plugin.
//!
//! A complete, working backend to read beside this guide lives in
//! `sdk/examples/openai-forward`: it forwards requests to any OpenAI-compatible HTTP
//! server, and it is built outside hearth's workspace exactly as yours will be.
//!
//! ## A backend in six steps
//!
//! 1. **A `cdylib` crate.** Depend on `hearth-sdk` and `abi_stable` (the export
//!    attribute expands to paths in `abi_stable`, so it must be a direct dependency):
//!    ```toml
//!    [lib]
//!    crate-type = ["cdylib"]
//!    [dependencies]
//!    hearth-sdk = "2"            # or { path = "…/hearth/sdk" }
//!    abi_stable = "0.11"
//!    ```
//! 2. **[`Backend`]** is the engine. [`Backend::info`] names it: its `id` is what the
//!    catalog's `backends = [...]` and a user's `--backend` refer to, its `formats`
//!    are matched against each catalog artifact's `format`, and `api_version` must be
//!    [`API_VERSION`]. [`Backend::probe`] says whether this machine can run it and on
//!    which devices (the router prefers backends with a real GPU); it is called at
//!    start-up and whenever the plugin is (re)loaded, so keep it cheap.
//!    [`Backend::load`] turns a [`LoadRequest`] (the model's file paths, format,
//!    context size, threads) into a [`Model`]. What the backend can do beyond plain
//!    generation it lists in [`BackendInfo::features`] (the names are in [`feature`]).
//! 3. **[`Model`]** is one loaded model. [`Model::generate`] streams text through a
//!    [`TokenSink`], one whole-UTF-8 piece at a time, and returns as soon as the sink
//!    answers [`SinkControl::Stop`] (the client went away); it reports token counts and
//!    timings in [`GenerateStats`]. [`Model::memory`] says what the model holds.
//!    Fields beyond the prompt and the sampling settings (log-probabilities, OpenAI's
//!    penalties, a logit bias, adapters) reach a backend only when it lists their
//!    feature ([`GenerateRequest::features_needed`]); the host refuses them otherwise,
//!    so a backend never has to ignore one. [`logprobs::token_logprobs`] computes
//!    log-probabilities from logits as the other backends do.
//! 4. **Memory: `trim` and `Drop`.** The host manages idle models for you: after the
//!    soft timeout it calls [`Model::trim`], after the hard timeout it drops the model.
//!    `trim` must free everything that is rebuilt cheaply — KV cache, scratch and
//!    compute buffers, prompt caches — and keep the weights, so the next `generate`
//!    starts at once (rebuilding what it needs). `Drop` must free *everything*: weights,
//!    device buffers, contexts, threads the model started. `memory` is what the
//!    scheduler counts against the memory budget, so report host and device bytes
//!    honestly, before and after a trim.
//! 5. **Export it** once, at the crate root:
//!    ```ignore
//!    hearth_sdk::export_backend!(MyBackend::new);
//!    ```
//!    where `MyBackend::new: fn() -> Result<MyBackend, PluginError>`. The constructor
//!    runs once per load of the library; fail it (with a reason) when the engine cannot
//!    start at all, e.g. a missing system library.
//! 6. **Install it.** `cargo build --release`, then copy
//!    `target/release/lib<name>.so` (`.dylib`, `.dll`) into the plugins folder
//!    (`~/.hearth/plugins`, or `--plugins`). A running `hearth serve` notices it within
//!    a second: the plugin is loaded, probed and routable without a restart, and
//!    `hearth plugins` lists it — or lists why it was refused.
//!    Shared libraries of its own (an engine built as `.so` files) go in its companion
//!    folder, named as the plugin file without the extension (`lib<name>/`), with the
//!    run path `$ORIGIN/lib<name>`: the host copies that folder with the plugin, so each
//!    build finds its own libraries (copy the folder in first, then the plugin).
//!
//! A minimal backend, whole:
//!
//! ```
//! use hearth_sdk::abi_stable::std_types::RVec;
//! use hearth_sdk::{
//!     Backend, BackendInfo, FinishReason, GenerateRequest, GenerateStats, HostProfile, LoadRequest,
//!     MemoryUsage, Model, PluginError, Probe, SinkControl, TokenSink, API_VERSION,
//! };
//!
//! struct Shout;
//!
//! impl Backend for Shout {
//!     fn info(&self) -> BackendInfo {
//!         BackendInfo {
//!             id: "shout".into(),
//!             name: "Shout (upper-cases the prompt)".into(),
//!             version: "0.1.0".into(),
//!             api_version: API_VERSION,
//!             formats: RVec::from(vec!["shout".into()]),
//!             features: RVec::new(),
//!         }
//!     }
//!     fn probe(&self, _host: &HostProfile) -> Probe {
//!         Probe { available: true, devices: RVec::new(), reason: "runs anywhere".into() }
//!     }
//!     fn load(&self, _request: &LoadRequest) -> Result<Box<dyn Model>, PluginError> {
//!         Ok(Box::new(ShoutModel))
//!     }
//! }
//!
//! struct ShoutModel;
//!
//! impl Model for ShoutModel {
//!     fn generate(&self, request: &GenerateRequest, sink: &mut dyn TokenSink) -> Result<GenerateStats, PluginError> {
//!         let prompt = match request.prompt.as_ref().into_option() {
//!             Some(prompt) => prompt.to_string(),
//!             None => request.messages.iter().last().map(|m| m.content.to_string()).unwrap_or_default(),
//!         };
//!         let mut stats = GenerateStats {
//!             prompt_tokens: 1, completion_tokens: 0, prompt_ms: 0.0, decode_ms: 0.0,
//!             finish_reason: FinishReason::Stop,
//!         };
//!         for word in prompt.split_whitespace().take(request.max_tokens as usize) {
//!             stats.completion_tokens += 1;
//!             if sink.on_token(&format!("{} ", word.to_uppercase())) == SinkControl::Stop {
//!                 stats.finish_reason = FinishReason::Cancelled;
//!                 break;
//!             }
//!         }
//!         Ok(stats)
//!     }
//!     fn trim(&self) {}
//!     fn memory(&self) -> MemoryUsage {
//!         MemoryUsage::default()
//!     }
//! }
//!
//! // In the plugin crate: hearth_sdk::export_backend!(|| Ok(Shout));
//! # let mut out = String::new();
//! # struct Collect<'a>(&'a mut String);
//! # impl TokenSink for Collect<'_> {
//! #     fn on_token(&mut self, piece: &str) -> SinkControl { self.0.push_str(piece); SinkControl::Continue }
//! # }
//! # let model = Shout.load(&LoadRequest { model_id: "m".into(), paths: RVec::new(), format: "shout".into(),
//! #     context_size: 0, threads: 0, ..Default::default() }).unwrap();
//! # let request = GenerateRequest { prompt: Some("hi there".into()).into(), max_tokens: 8,
//! #     ..GenerateRequest::default() };
//! # model.generate(&request, &mut Collect(&mut out)).unwrap();
//! # assert_eq!(out, "HI THERE ");
//! ```
//!
//! ## Rules of the boundary
//!
//! - **Threads.** Every call blocks and may come from any host thread; the host runs
//!   them on its own blocking threads, never on its async runtime. Do not assume a
//!   tokio runtime exists (use blocking I/O, e.g. `ureq` rather than `reqwest`, or
//!   start your own runtime). `load` may run while models loaded earlier generate, and
//!   one model may be asked to generate from two threads at once: serialise inside it
//!   if the engine needs it. Hence `Backend` and `Model` are `Send + Sync`.
//! - **Panics.** The export macro wraps every entry point in `catch_unwind`; a panic
//!   becomes a [`PluginError`] of kind [`ErrorKind::Panicked`] on that request and the
//!   host keeps serving. Build plugins with `panic = "unwind"` (the default); an abort
//!   or a segfault still takes the host down.
//! - **Errors.** Return the [`ErrorKind`] that says what failed. Any error from `load`,
//!   whatever its kind, makes the router fall back to the next model, tier or backend
//!   (the client sees every reason when none loads). An error from `generate` ends that
//!   request: `InvalidRequest` goes back to the client as a 400, `ModelFile` names a
//!   file that is missing or corrupt, the other kinds are the server's fault. Messages
//!   reach users: say what failed and, where you can, what to do about it.
//! - **Memory across the boundary.** Objects are created and freed on the plugin's
//!   side; the ABI types ([`abi_stable::std_types::RString`], `RVec`, …) carry their
//!   own vtables, so never pass a plain `Box` or `Vec` across. You only meet this in
//!   the request and answer types: the traits you implement are plain Rust.
//! - **Versions.** The SDK's crate version is the plugin API's version
//!   ([`API_VERSION`], which [`BackendInfo::api_version`] carries). Its major goes up
//!   only when the ABI breaks: abi_stable checks every type's layout at load time and
//!   the host refuses a plugin of another major with a reason instead of crashing.
//!   Its minor goes up when the API grows (a request field, a value of an open enum, a
//!   method with a default): a host runs every plugin of its major whose minor is not
//!   newer than its own, and a plugin never sees what was added after it was built.
//!   [`abi`] says how each kind of growth stays compatible.
//! - **Reloading.** The host never unloads a library (abi_stable keeps them resident).
//!   When you copy a new build over the old file, the host loads it from a private
//!   copy beside the old one: new requests go to the new build, requests in flight
//!   finish on the old one, whose models are then dropped. So a model must not rely on
//!   process-global state shared between builds, and `Drop` really must free
//!   everything, or each rebuild leaks a model's worth of memory. A rebuild that fails
//!   to load is refused and the previous build stays in service.
//!
//! ## Shared helpers
//!
//! The helpers live behind cargo features, so these names are not links: the crate's
//! documentation must build without them. With the `helpers` feature, `helpers` offers
//! what GGUF backends share and the ABI does not carry: a validating GGUF reader
//! (`helpers::Gguf`), a byte-level BPE tokenizer built from GGUF metadata
//! (`helpers::Tokenizer`, with `helpers::StreamDecoder` for UTF-8-safe streaming), chat
//! templates (`helpers::ChatTemplate`), sampling (`helpers::Sampler`) and stop strings
//! (`helpers::StopMatcher`).
//!
//! The `validate` feature alone gives just the model-file validators — GGUF
//! (`helpers::Gguf`) and safetensors (`helpers::Safetensors`) — which is what the host
//! uses to check every file before a backend sees it. A backend that reads files
//! itself should still open them through these readers: the host's check is the first
//! gate, not a licence to trust the bytes.
//!
//! ## Testing with the host
//!
//! - Unit-test your [`Backend`] and [`Model`] directly, as plain Rust (the example
//!   above does, with a collecting [`TokenSink`]).
//! - Then through the ABI: build the `cdylib`, point the host at a folder holding it
//!   and run `hearth --plugins DIR plugins` to see it loaded and probed, and
//!   `hearth --plugins DIR --catalog my-catalog.toml run MODEL --backend ID "prompt"`
//!   with a catalog entry whose artifact names your backend and format.
//! - In Rust tests, `hearth::service::Hearth::open` over a temp home (a `plugins/`
//!   folder with your library, `models/<id>/<file>`, a `catalog.toml`) gives the whole
//!   host in-process; `hearth::api::app` serves its HTTP API without a socket. hearth's
//!   own tests load `tests/fixture-plugin` and the example backend this way, and also
//!   drive a real `hearth serve` whose plugins folder changes under it.

pub mod abi;
mod error;
#[cfg(feature = "validate")]
pub mod helpers;
pub mod logprobs;
mod open_enum;
pub mod plugin;
pub mod testing;
mod types;

pub use abi_stable;
pub use error::{ErrorKind, PluginError};
pub use plugin::{guard, Backend, Model, TokenSink};
pub use types::*;
