//! The one thread that runs a model's llama.cpp computation.
//!
//! ggml's CPU backend parallelises each graph with OpenMP, and an OpenMP thread team
//! belongs to the thread that starts it. Were generations run on whichever host thread
//! calls (a tokio blocking thread, a worker's job thread), every new caller would start
//! a team of its own; once libgomp manages more threads than the machine has cores it
//! stops spinning at barriers and sleeps on a futex instead, and ggml puts a barrier
//! between every operation of the graph, about a thousand per token. Measured in
//! `hearth bench` on a 2-core machine: up to 100 000 voluntary context switches for
//! six short generations, and decoding at half of llama.cpp's own speed. So each model
//! computes on one thread of its own, as llama-server does with its main loop, and the
//! caller relays the pieces to its sink.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;

use hearth_sdk::PluginError;

type Job = Box<dyn FnOnce() + Send>;

/// A thread that runs jobs one after another, in the order they were submitted.
pub struct Engine {
    // Dropped before the join in `drop`, which ends the thread's loop.
    jobs: Option<Mutex<Sender<Job>>>,
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    pub fn new(name: &str) -> Result<Self, PluginError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name(format!("llama.cpp {name}"))
            .spawn(move || queue.into_iter().for_each(|job| job()))
            .map_err(|error| {
                PluginError::internal(format!("could not start the model's thread: {error}"))
            })?;
        Ok(Self {
            jobs: Some(Mutex::new(jobs)),
            thread: Some(thread),
        })
    }

    /// Queue `job`; its result (or the panic it raised, as an error) arrives on the
    /// returned channel when it has run.
    pub fn submit<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> Result<R, PluginError> + Send + 'static,
    ) -> Receiver<Result<R, PluginError>> {
        let (result, outcome) = mpsc::channel();
        let wrapped: Job = Box::new(move || {
            let value = catch_unwind(AssertUnwindSafe(job)).unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|text| text.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_string());
                Err(PluginError::internal(format!(
                    "the llama.cpp plugin panicked: {what}"
                )))
            });
            // The caller may have stopped waiting; the result is then nobody's.
            let _ = result.send(value);
        });
        if let Some(jobs) = &self.jobs {
            // A send fails only once the thread is gone, and then the dropped job's
            // result channel closes, which the caller reads as the error below.
            let _ = jobs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .send(wrapped);
        }
        outcome
    }
}

/// What the caller reads when the engine thread went away without answering.
pub fn engine_gone() -> PluginError {
    PluginError::internal("the model's llama.cpp thread ended without an answer")
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_from_many_threads_all_run_on_the_engine_thread() {
        let engine = Engine::new("test").unwrap();
        let ids: Vec<_> = std::thread::scope(|scope| {
            let callers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        engine
                            .submit(|| Ok(std::thread::current().id()))
                            .recv()
                            .unwrap()
                            .unwrap()
                    })
                })
                .collect();
            callers
                .into_iter()
                .map(|caller| caller.join().unwrap())
                .collect()
        });
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
        assert_ne!(ids[0], std::thread::current().id());
    }

    #[test]
    fn a_panicking_job_is_an_error_and_the_engine_runs_the_next_one() {
        let engine = Engine::new("test").unwrap();
        let error = engine
            .submit(|| -> Result<(), PluginError> { panic!("boom") })
            .recv()
            .unwrap()
            .unwrap_err();
        assert!(error.message.contains("boom"), "{error}");
        assert_eq!(engine.submit(|| Ok(7)).recv().unwrap().unwrap(), 7);
    }
}
