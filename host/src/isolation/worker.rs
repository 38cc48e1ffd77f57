//! The worker side: `hearth worker --plugin PATH`, a process that loads one plugin
//! library through the same ABI as the host, loads one model and serves the host's
//! calls over its stdin and stdout until told to unload or until the host goes away.
//! The host also starts workers only to describe their plugin (`describe`), so that it
//! never has to load a library whose models run in workers.
//!
//! The main loop only reads frames, answers health checks and sets cancel flags; every
//! call into the plugin runs on a thread of a small pool, so a long generation or a
//! hung plugin never keeps the worker from answering a health check or a cancel.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SendError, Sender};
use std::sync::{Arc, Mutex, OnceLock};

use hearth_sdk::{PluginError, SinkControl, TokenLogprobs, TokenSink};

use super::protocol::{read_frame, write_frame, Call, Event, Reply, Request, PROTOCOL_VERSION};
use crate::plugin::{load_plugin, remove_private_copies, LoadedPlugin, PluginRunner};

/// The frames to the host. Shared by the threads that answer calls.
type Output = Arc<Mutex<BufWriter<File>>>;

/// Serve the host until it sends `unload` or closes the pipe, then exit the process.
pub fn serve(plugin_path: &Path) -> io::Result<()> {
    let output: Output = Arc::new(Mutex::new(BufWriter::new(protocol_output()?)));
    let plugin = load_plugin(plugin_path).map_err(|error| error.to_string());
    // One library per process: the folder that held its private copy is not needed.
    remove_private_copies();
    let state = Arc::new(Worker {
        plugin_path: plugin_path.to_path_buf(),
        plugin,
        model: OnceLock::new(),
        cancels: Mutex::default(),
        output,
    });
    let threads = Arc::new(Threads::default());
    let mut input = BufReader::new(io::stdin().lock());
    while let Some(Request { id, call }) = read_frame::<Request>(&mut input)? {
        match call {
            Call::Ping => state.send(id, Event::Alive),
            Call::Cancel { generation } => {
                if let Some(flag) = state
                    .cancels
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(&generation)
                {
                    flag.store(true, Ordering::SeqCst);
                }
            }
            Call::Unload => break,
            call => {
                let state = state.clone();
                threads.run(Box::new(move || state.answer(id, call)));
            }
        }
    }
    // Exiting without running destructors is the point: the operating system takes
    // back the model's host and device memory whole, however the plugin left it.
    std::process::exit(0)
}

/// The protocol's own copy of stdout. Standard output itself is pointed at standard
/// error, so a plugin (or a C library under it) printing to stdout lands in the log
/// instead of corrupting the frames.
#[cfg(unix)]
fn protocol_output() -> io::Result<File> {
    use std::os::fd::{AsFd, AsRawFd};
    let protocol = io::stdout().as_fd().try_clone_to_owned()?;
    // SAFETY: dup2 on two descriptors this process owns; fd 1 is replaced atomically.
    if unsafe { libc::dup2(io::stderr().as_raw_fd(), io::stdout().as_raw_fd()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(File::from(protocol))
}

#[cfg(not(unix))]
fn protocol_output() -> io::Result<File> {
    use std::os::windows::io::AsHandle;
    Ok(File::from(io::stdout().as_handle().try_clone_to_owned()?))
}

/// A call into the plugin, run on one of the [`Threads`].
type Job = Box<dyn FnOnce() + Send>;

/// Threads that run calls into the plugin, each kept for a later call once its call is
/// done. A backend builds per-thread state on the thread that calls it — llama.cpp's
/// OpenMP team — and a fresh thread per request made it build that state again each
/// time: measured, 13 ms more to the first token.
#[derive(Default)]
struct Threads {
    idle: Mutex<Vec<Sender<Job>>>,
}

impl Threads {
    fn run(self: &Arc<Self>, job: Job) {
        let idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        let job = match idle {
            Some(thread) => match thread.send(job) {
                Ok(()) => return,
                Err(SendError(job)) => job,
            },
            None => job,
        };
        let (jobs_tx, jobs) = mpsc::channel::<Job>();
        let threads = self.clone();
        std::thread::spawn(move || {
            let mut job = job;
            loop {
                job();
                threads
                    .idle
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(jobs_tx.clone());
                match jobs.recv() {
                    Ok(next) => job = next,
                    Err(_) => return,
                }
            }
        });
    }
}

struct Worker {
    plugin_path: PathBuf,
    /// The library, or why it could not be loaded, in the words a host's load would use.
    plugin: Result<LoadedPlugin, String>,
    model: OnceLock<PluginRunner>,
    /// The cancel flag of each generation in progress, by call id.
    cancels: Mutex<HashMap<u64, Arc<AtomicBool>>>,
    output: Output,
}

impl Worker {
    /// Send one event. A host that stopped reading is gone: nothing is left to do.
    fn send(&self, id: u64, event: Event) {
        let mut output = self.output.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if write_frame(&mut *output, &Reply { id, event }).is_err() {
            std::process::exit(0);
        }
    }

    fn answer(&self, id: u64, call: Call) {
        let event = match (call, self.model.get()) {
            (Call::Load { protocol, request }, _) => match self.load(protocol, request) {
                Ok(()) => Event::Loaded { protocol: PROTOCOL_VERSION },
                Err(error) => Event::failed(&error),
            },
            (Call::Describe { protocol, host }, _) => match self.plugin(protocol) {
                Ok(plugin) => {
                    Event::Described { info: plugin.info.clone(), probe: plugin.probe(&host) }
                }
                Err(error) => Event::failed(&error),
            },
            (Call::Generate { request }, Some(model)) => {
                let cancel = Arc::new(AtomicBool::new(false));
                self.cancels
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(id, cancel.clone());
                let mut sink = FrameSink { worker: self, id, cancel };
                let result = model.generate(&request, &mut sink);
                self.cancels.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
                match result {
                    Ok(stats) => Event::Done { stats },
                    Err(error) => Event::failed(&error),
                }
            }
            (Call::Trim, Some(model)) => match model.trim() {
                Ok(()) => Event::Trimmed,
                Err(error) => Event::failed(&error),
            },
            (Call::Memory, Some(model)) => Event::memory(model.memory()),
            (Call::Tokenize { text, add_special }, Some(model)) => {
                match model.tokenize(&text, add_special) {
                    Ok(tokens) => Event::Tokens { tokens },
                    Err(error) => Event::failed(&error),
                }
            }
            (Call::Detokenize { tokens }, Some(model)) => match model.detokenize(&tokens) {
                Ok(text) => Event::Text { text },
                Err(error) => Event::failed(&error),
            },
            (Call::CountPromptTokens { request }, Some(model)) => {
                match model.count_prompt_tokens(&request) {
                    Ok(tokens) => Event::Count { tokens },
                    Err(error) => Event::failed(&error),
                }
            }
            (Call::Embed { text, truncate }, Some(model)) => match model.embed(&text, truncate) {
                Ok(embedding) => Event::Embedding { embedding },
                Err(error) => Event::failed(&error),
            },
            (_, None) => Event::failed(&PluginError::internal("the worker has no model loaded")),
            // The main loop answers these itself and never hands them over.
            (Call::Ping | Call::Cancel { .. } | Call::Unload, Some(_)) => return,
        };
        self.send(id, event);
    }

    /// The plugin, for a first call speaking `protocol`. Its load error is given as it
    /// is: a host describing the library reports it as the reason it refused it.
    fn plugin(&self, protocol: u32) -> Result<&LoadedPlugin, PluginError> {
        if protocol != PROTOCOL_VERSION {
            return Err(PluginError::internal(format!(
                "worker protocol {protocol} asked of a worker speaking {PROTOCOL_VERSION}: the host and worker binaries differ"
            )));
        }
        self.plugin.as_ref().map_err(|error| PluginError::internal(error.clone()))
    }

    fn load(&self, protocol: u32, request: hearth_sdk::LoadRequest) -> Result<(), PluginError> {
        let plugin = self.plugin(protocol).map_err(|error| {
            match (&self.plugin, protocol == PROTOCOL_VERSION) {
                (Err(_), true) => PluginError::internal(format!(
                    "cannot load the plugin {}: {}",
                    self.plugin_path.display(),
                    error.message
                )),
                _ => error,
            }
        })?;
        let model = plugin.backend.load(request.view()).into_result()?;
        self.model
            .set(PluginRunner::new(model))
            .map_err(|_| PluginError::internal("the worker already has a model loaded"))
    }
}

/// Sends each piece to the host as a `token` frame, and stops once the host cancels.
struct FrameSink<'a> {
    worker: &'a Worker,
    id: u64,
    cancel: Arc<AtomicBool>,
}

impl TokenSink for FrameSink<'_> {
    fn on_token(&mut self, piece: &str) -> SinkControl {
        if self.cancel.load(Ordering::SeqCst) {
            return SinkControl::Stop;
        }
        self.worker.send(self.id, Event::Token { piece: piece.to_string() });
        SinkControl::Continue
    }

    fn on_logprobs(&mut self, logprobs: &TokenLogprobs) {
        self.worker.send(self.id, Event::Logprobs { logprobs: logprobs.clone() });
    }
}
