//! The host with the fixture plugin, loaded through the real ABI: plugin loading,
//! routing, the lifecycle and the HTTP API, each in milliseconds.

mod generate;
mod helpers;
mod http;
mod lifecycle;
mod plugins;
#[path = "../support/mod.rs"]
mod support;
