//! The host with the fixture plugin, loaded through the real ABI: plugin loading,
//! routing, the lifecycle and the HTTP API, each in milliseconds; and a real
//! `hearth serve` whose plugins folder and catalog change under it, and whose backends
//! crash in their worker processes.

mod cli;
mod client_apis;
mod faults;
mod generate;
mod helpers;
mod http;
mod isolation;
mod lifecycle;
mod live_catalog;
mod live_plugins;
mod model_files;
mod plugins;
mod pull;
mod sdk_example;
mod server;
#[path = "../support/mod.rs"]
mod support;
