//! # hearth — the host
//!
//! A small host that loads inference backends as plugins through a stable ABI
//! ([`hearth_sdk`]), reads the catalog of model tiers and adapters, profiles the
//! device, routes every request to the best backend and tier with an ordered fallback,
//! and manages the idle lifecycle of loaded models.
//!
//! - [`plugin`]: discovery in the plugins folder, loading through the ABI, registry.
//! - [`catalog`]: `catalog.toml` schema and validation.
//! - [`device`]: the host profile plus every plugin's probe.
//! - [`router`]: backend and tier choice with reasons and a fallback plan.
//! - [`isolation`]: backends in supervised worker processes, and the worker itself.
//! - [`lifecycle`]: the scheduler of loaded models (ref counts, idle timers, eviction).
//! - [`api`]: the OpenAI-compatible and native HTTP API.
//! - [`service`]: the running host tying these together; the generation path.
//! - [`cli`]: the `hearth` command line.

pub mod api;
pub mod catalog;
pub mod cli;
pub mod device;
pub mod isolation;
pub mod lifecycle;
pub mod plugin;
pub mod router;
pub mod service;
pub mod store;
