//! Backends in supervised worker processes.
//!
//! With [`Isolation::Process`](crate::catalog::Isolation) each loaded model runs in a
//! worker process of its own: the `hearth` binary started as `hearth worker --plugin
//! PATH`, which loads the same plugin library through the same ABI and answers the
//! host over its stdin and stdout ([`protocol`]). A segfault or abort inside a backend
//! (llama.cpp's `GGML_ASSERT` aborts, even in release builds) then ends only that
//! worker: its requests in flight fail with the cause, everything else keeps serving,
//! and the next request starts a fresh worker. Ending the worker is also the only sure
//! way to get all of a backend's memory back — a GPU context often returns its memory
//! only when its process exits — so the hard idle timeout ends it.
//!
//! - [`protocol`]: the frames and messages, versioned and size-limited.
//! - [`worker`]: the worker process's side.
//! - `supervisor`: the host's side of one worker: spawning, calls, health checks, and
//!   the cause of death (signal or exit status, last log lines).
//! - [`ProcessRunner`]: a model in a worker as the scheduler's [`Runner`](crate::lifecycle::Runner):
//!   restarts after crashes, with a backoff for backends that keep crashing.
//! - [`WorkerDescriber`]: a plugin described by a short-lived worker, so a backend
//!   whose models run in workers is never loaded into the host.

mod process_runner;
pub mod protocol;
mod supervisor;
pub mod worker;
mod worker_describer;

pub use process_runner::{backoff, CrashLog, ProcessRunner, WorkerSpec};
pub use worker_describer::WorkerDescriber;
