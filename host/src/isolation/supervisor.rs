//! The host side of one worker process: spawning it, calling it, watching it.
//!
//! A reader thread takes the worker's frames off its stdout and hands each to the call
//! it answers; a second thread keeps the last lines of its stderr (and logs them); a
//! third checks its health now and then. When the worker's stdout ends — it exited,
//! crashed or was killed — the reader reaps it and records why it died, with its last
//! log lines, and every call still waiting fails with that cause.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, BufWriter};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hearth_sdk::PluginError;

use super::protocol::{read_frame, write_frame, Call, Event, Reply, Request};

/// How many of the worker's last log lines an error message quotes.
const LOG_LINES: usize = 8;
/// How often an idle or busy worker is asked whether it still answers.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// How long an unloaded worker may take to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// The reason recorded when the host ends a worker on purpose.
const UNLOADED: &str = "unloaded";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One running worker process. Dropping it asks the worker to exit, and kills it if it
/// does not within a few seconds.
pub struct WorkerProcess {
    shared: Arc<Shared>,
    /// Dropped with the worker, which ends the health checks.
    _health: Sender<()>,
}

struct Shared {
    backend: String,
    pid: u32,
    stall_timeout: Duration,
    child: Mutex<Child>,
    stdin: Mutex<BufWriter<ChildStdin>>,
    next_id: AtomicU64,
    calls: Mutex<Calls>,
    log: Mutex<VecDeque<String>>,
    /// Set when the host kills the worker, so its death is told as the host's doing.
    killed_because: Mutex<Option<String>>,
    /// When the worker last sent anything of a generation (a piece, an end, an error):
    /// the clock of [`WorkerProcess::generation_silence`].
    last_generation_output: Mutex<Instant>,
}

/// The calls waiting for answers, and once the worker is dead, why it died.
#[derive(Default)]
struct Calls {
    waiting: HashMap<u64, Sender<Event>>,
    death: Option<Death>,
}

/// How a worker ended.
#[derive(Clone, Debug)]
pub struct Death {
    /// On the host's request (unload), rather than a crash or a kill for hanging.
    pub expected: bool,
    pub error: PluginError,
}

/// A call in flight: its id and the events answering it.
pub struct Pending {
    pub id: u64,
    events: Receiver<Event>,
    shared: Arc<Shared>,
}

/// What waiting for the next event of a call gave.
pub enum Next {
    Event(Event),
    /// Nothing within the timeout; the worker is still running.
    Silent,
    /// The worker is gone; the call has failed with this.
    Died(PluginError),
}

impl Pending {
    pub fn next(&self, timeout: Duration) -> Next {
        match self.events.recv_timeout(timeout) {
            Ok(event) => Next::Event(event),
            Err(RecvTimeoutError::Timeout) => Next::Silent,
            Err(RecvTimeoutError::Disconnected) => Next::Died(self.shared.death_error()),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        lock(&self.shared.calls).waiting.remove(&self.id);
    }
}

impl WorkerProcess {
    /// Start `program worker --plugin PLUGIN` for `backend`.
    pub fn spawn(
        program: &Path,
        plugin: &Path,
        backend: &str,
        stall_timeout: Duration,
    ) -> Result<Self, PluginError> {
        let mut child = Command::new(program)
            .arg("worker")
            .arg("--plugin")
            .arg(plugin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| {
                PluginError::internal(format!(
                    "cannot start a `{backend}` worker ({}): {error}",
                    program.display()
                ))
            })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            unreachable!("all three streams are piped")
        };
        let shared = Arc::new(Shared {
            backend: backend.to_string(),
            pid: child.id(),
            stall_timeout,
            child: Mutex::new(child),
            stdin: Mutex::new(BufWriter::new(stdin)),
            next_id: AtomicU64::new(1),
            calls: Mutex::default(),
            log: Mutex::default(),
            killed_because: Mutex::default(),
            last_generation_output: Mutex::new(Instant::now()),
        });
        let (log_done_tx, log_done) = mpsc::channel::<()>();
        let logger = shared.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                tracing::info!(target: "hearth::worker", backend = %logger.backend, pid = logger.pid, "{line}");
                let mut log = lock(&logger.log);
                if log.len() == LOG_LINES {
                    log.pop_front();
                }
                log.push_back(line);
            }
            drop(log_done_tx);
        });
        let reader = shared.clone();
        std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let ended = loop {
                match read_frame::<Reply>(&mut stdout) {
                    Ok(Some(Reply { id, event })) => {
                        if matches!(
                            event,
                            Event::Token { .. }
                                | Event::Logprobs { .. }
                                | Event::Done { .. }
                                | Event::Failed { .. }
                        ) {
                            *lock(&reader.last_generation_output) = Instant::now();
                        }
                        if let Some(call) = lock(&reader.calls).waiting.get(&id) {
                            let _ = call.send(event);
                        }
                    }
                    Ok(None) => break None,
                    Err(error) => break Some(format!("sent a broken frame ({error})")),
                }
            };
            if let Some(problem) = ended {
                reader.kill(&problem);
            }
            reader.reap(&log_done);
        });
        let (health, stop) = mpsc::channel();
        let checker = shared.clone();
        std::thread::spawn(move || checker.check_health(&stop));
        Ok(Self { shared, _health: health })
    }

    pub fn pid(&self) -> u32 {
        self.shared.pid
    }

    /// Send a call; its answers arrive through the returned [`Pending`].
    pub fn start(&self, call: Call) -> Result<Pending, PluginError> {
        self.shared.start(call)
    }

    /// Send a call that expects no answer (a cancel).
    pub fn notify(&self, call: Call) {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        // A worker that cannot be written to is dying; its reader reports why.
        let _ = write_frame(&mut *lock(&self.shared.stdin), &Request { id, call });
    }

    /// Make one call and wait for its single answer, killing the worker if none comes
    /// within the stall timeout.
    pub fn call(&self, call: Call, what: &str) -> Result<Event, PluginError> {
        let pending = self.start(call)?;
        match pending.next(self.shared.stall_timeout) {
            Next::Event(event) => Ok(event),
            Next::Died(error) => Err(error),
            Next::Silent => {
                self.kill(&format!("did not answer {what} within {:?}", self.shared.stall_timeout));
                match pending.next(EXIT_GRACE) {
                    Next::Died(error) => Err(error),
                    Next::Event(event) => Ok(event),
                    Next::Silent => Err(PluginError::internal(format!(
                        "the `{}` worker did not answer {what}",
                        self.shared.backend
                    ))),
                }
            }
        }
    }

    /// Kill the worker, recording why; the reader then reports its death.
    pub fn kill(&self, reason: &str) {
        self.shared.kill(reason);
    }

    pub fn stall_timeout(&self) -> Duration {
        self.shared.stall_timeout
    }

    /// How long a generation handed over at `handed_over` has been silent for want of
    /// progress: the time since the worker last produced anything for any of its
    /// generations, or since the hand-over if that came later. A backend runs the
    /// generations it cannot yet schedule after the ones it runs (llama.cpp with one
    /// sequence runs one at a time), so a request waiting its turn behind a streaming
    /// one is not silent: its clock starts when the worker stops producing for the
    /// others, which is when its own first step is due.
    pub fn generation_silence(&self, handed_over: Instant) -> Duration {
        let last = *lock(&self.shared.last_generation_output);
        last.max(handed_over).elapsed()
    }

    /// How the worker ended, once it has.
    pub fn death(&self) -> Option<Death> {
        lock(&self.shared.calls).death.clone()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if self.death().is_some() {
            return;
        }
        lock(&self.shared.killed_because).get_or_insert_with(|| UNLOADED.to_string());
        self.notify(Call::Unload);
        let started = Instant::now();
        let mut child = lock(&self.shared.child);
        while started.elapsed() < EXIT_GRACE {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        tracing::warn!(backend = %self.shared.backend, pid = self.shared.pid, "worker did not exit when unloaded; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Shared {
    fn start(self: &Arc<Self>, call: Call) -> Result<Pending, PluginError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (events_tx, events) = mpsc::channel();
        {
            let mut calls = lock(&self.calls);
            if let Some(death) = &calls.death {
                return Err(death.error.clone());
            }
            calls.waiting.insert(id, events_tx);
        }
        let pending = Pending { id, events, shared: self.clone() };
        // A failed write means the worker is dying: the reader will fail the call with
        // the cause, which says more than "broken pipe".
        let _ = write_frame(&mut *lock(&self.stdin), &Request { id, call });
        Ok(pending)
    }

    fn kill(&self, reason: &str) {
        lock(&self.killed_because).get_or_insert_with(|| reason.to_string());
        let _ = lock(&self.child).kill();
    }

    /// Wait for the exited (or exiting) worker, record its death and fail every call
    /// still waiting.
    fn reap(&self, log_done: &Receiver<()>) {
        let status = self.wait_for_exit();
        // The last lines are usually the most telling; give the log reader a moment
        // to take them off the pipe.
        let _ = log_done.recv_timeout(Duration::from_millis(500));
        let killed_because = lock(&self.killed_because).clone();
        let expected = killed_because.as_deref() == Some(UNLOADED);
        let mut cause = format!("the `{}` worker (pid {}) ", self.backend, self.pid);
        if let Some(reason) = &killed_because {
            cause.push_str(&format!("was stopped by the host: {reason}; it "));
        }
        cause.push_str(&describe_exit(status));
        let log = lock(&self.log);
        if !log.is_empty() {
            let lines: Vec<String> =
                log.iter().map(|line| line.chars().take(300).collect()).collect();
            cause.push_str(&format!("; its last log lines: {}", lines.join(" | ")));
        }
        drop(log);
        if !expected {
            tracing::error!(backend = %self.backend, pid = self.pid, "{cause}");
        }
        let mut calls = lock(&self.calls);
        calls.death = Some(Death { expected, error: PluginError::internal(cause) });
        // Dropping the senders wakes every waiting call with the death recorded.
        calls.waiting.clear();
    }

    fn wait_for_exit(&self) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            let mut child = lock(&self.child);
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if started.elapsed() < EXIT_GRACE => {}
                // Its stdout is closed but it lives on: it can no longer serve.
                Ok(None) => {
                    let _ = child.kill();
                    return child.wait().ok();
                }
                Err(_) => return None,
            }
            drop(child);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn death_error(&self) -> PluginError {
        lock(&self.calls).death.as_ref().map(|death| death.error.clone()).unwrap_or_else(|| {
            PluginError::internal(format!("the `{}` worker stopped answering", self.backend))
        })
    }

    /// Ping the worker every [`HEALTH_INTERVAL`] until `stop` closes or the worker
    /// dies; one that leaves a ping unanswered for the stall timeout is killed.
    fn check_health(self: &Arc<Self>, stop: &Receiver<()>) {
        while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(HEALTH_INTERVAL) {
            let Ok(pending) = self.start(Call::Ping) else { return };
            match pending.next(self.stall_timeout) {
                Next::Event(_) => {}
                Next::Died(_) => return,
                Next::Silent => {
                    self.kill(&format!(
                        "it left a health check unanswered for {:?}",
                        self.stall_timeout
                    ));
                    return;
                }
            }
        }
    }
}

/// "exited with status 3", "was killed by signal 11 (SIGSEGV)".
fn describe_exit(status: Option<ExitStatus>) -> String {
    let Some(status) = status else {
        return "ended, with no exit status to be had".to_string();
    };
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return match signal_name(signal) {
                Some(name) => format!("was killed by signal {signal} ({name})"),
                None => format!("was killed by signal {signal}"),
            };
        }
    }
    match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => format!("ended: {status}"),
    }
}

/// The name of the signals a crashing or killed backend dies of.
#[cfg(unix)]
fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGSEGV => "SIGSEGV, a segmentation fault",
        libc::SIGABRT => "SIGABRT, an abort",
        libc::SIGBUS => "SIGBUS, a bus error",
        libc::SIGILL => "SIGILL, an illegal instruction",
        libc::SIGFPE => "SIGFPE, an arithmetic fault",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        _ => return None,
    })
}
