//! What the integration tests share: the test model, greedy requests, and a sink that
//! collects.

pub use hearth_backend_check::fixtures::smollm2_path;
pub use hearth_backend_check::requests::{chat, raw, Collect};
