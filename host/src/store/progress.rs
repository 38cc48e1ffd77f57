//! Download progress reporting.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Receives the progress of one download. [`Store::pull`](super::Store::pull) calls
/// `start` once per attempt, then `advance` for every chunk written, then `finish` once
/// the file is installed.
pub trait Progress: Send {
    /// A transfer begins; `total` is the full file size when the server said it.
    fn start(&mut self, total: Option<u64>);
    /// `bytes` already on disk from an earlier, interrupted transfer are being reused.
    /// Defaults to counting them as advanced.
    fn resumed(&mut self, bytes: u64) {
        self.advance(bytes);
    }
    /// `bytes` more were written.
    fn advance(&mut self, bytes: u64);
    /// The file is verified and installed.
    fn finish(&mut self);
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _total: Option<u64>) {}
    fn advance(&mut self, _bytes: u64) {}
    fn finish(&mut self) {}
}

/// A progress bar on stderr (bytes, rate, ETA). Draws nothing when stderr is not a
/// terminal, so logs and CI output stay free of control sequences.
#[derive(Debug)]
pub struct TerminalProgress {
    label: String,
    bar: Option<ProgressBar>,
    visible: bool,
}

impl TerminalProgress {
    /// A bar labelled `label` (usually the file name), shown only on a terminal.
    pub fn new(label: impl Into<String>) -> Self {
        TerminalProgress {
            label: label.into(),
            bar: None,
            visible: std::io::stderr().is_terminal(),
        }
    }

    fn bar(&self) -> Option<&ProgressBar> {
        self.bar.as_ref()
    }
}

impl Progress for TerminalProgress {
    fn start(&mut self, total: Option<u64>) {
        if let Some(old) = self.bar.take() {
            // A retry: the old bar's line is replaced by the new one.
            old.finish_and_clear();
        }
        let target =
            if self.visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let bar = ProgressBar::with_draw_target(total, target);
        let template = if total.is_some() {
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}"
        } else {
            "{msg} {spinner} {bytes} {binary_bytes_per_sec}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(self.label.clone());
        bar.enable_steady_tick(Duration::from_millis(200));
        self.bar = Some(bar);
    }

    fn resumed(&mut self, bytes: u64) {
        if let Some(bar) = self.bar() {
            // Bytes already on disk must not count towards the transfer rate or ETA.
            bar.set_position(bytes);
            bar.reset_eta();
        }
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(bar) = self.bar() {
            bar.inc(bytes);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}
