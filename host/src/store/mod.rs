//! The model store: where model and adapter files live on disk, and how they get there.
//!
//! Layout under the models folder (`$HEARTH_HOME/models` by default):
//!
//! ```text
//! <models>/<model-id>/<file>            a model's weights, e.g. smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf
//! <models>/adapters/<adapter>/<file>    a LoRA adapter
//! <models>/<model-id>/<file>.partial    a download in progress (resumed on the next pull)
//! ```
//!
//! Every id and file name is checked before any path is built from it, so a catalog
//! entry or an API request can never make the store read or write outside its folder:
//! see [`Store::path`]. Installs ([`Store::pull`]) write a `.partial` file — streamed
//! over HTTP(S) and resumed with a `Range` request, or assembled from local files —
//! verify size and sha256, and only then rename the file into place, so an installed
//! file is always a verified one.
//!
//! This module takes plain parameters (ids, file names, URLs, checksums) and depends on
//! no other host module; the catalog and the CLI translate their own types into a
//! [`PullSpec`].

mod paths;
mod progress;
mod pull;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use progress::{Progress, Silent, TerminalProgress};
pub use pull::{PullSpec, Source};

/// Everything that can go wrong in the store. Messages name the file, URL or path
/// involved, since they end up in front of a user deciding what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An id or file name that is not a single plain path component.
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        /// What was being named: "model id", "adapter name" or "file name".
        what: &'static str,
        /// The rejected name, as given.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A path inside the store resolves (through a symlink) to somewhere outside it.
    #[error("{path} leads outside the model store {root}: {detail}")]
    Escape {
        /// The path inside the store that is a symlink.
        path: PathBuf,
        /// The store's root folder.
        root: PathBuf,
        /// Where it points, or why it could not be resolved.
        detail: String,
    },
    /// A checksum that is not 64 hex digits.
    #[error("invalid sha256 {0:?}: expected 64 hexadecimal digits")]
    InvalidSha256(String),
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("create", "write", "rename", …).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The request could not be sent or the transfer broke off.
    #[error("download of {url} failed: {cause}")]
    Http {
        /// The URL being downloaded.
        url: String,
        /// The underlying error with every cause under it (name resolution,
        /// connection, TLS, timeout, body cut short): the top one alone says only
        /// "error sending request".
        cause: String,
    },
    /// The server answered with a status that is not a successful download.
    #[error("download of {url} failed: the server answered HTTP {status}")]
    Status {
        /// The URL being downloaded.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The downloaded file has the wrong size; the partial file was deleted.
    #[error("size mismatch for {file}: expected {expected} bytes, downloaded {actual} bytes")]
    SizeMismatch {
        /// The file being installed.
        file: String,
        /// The size the caller gave.
        expected: u64,
        /// The size downloaded.
        actual: u64,
    },
    /// The downloaded file has the wrong sha256; the partial file was deleted.
    #[error("checksum mismatch for {file}: expected sha256 {expected}, got {actual}")]
    ChecksumMismatch {
        /// The file being installed.
        file: String,
        /// The checksum the caller gave.
        expected: String,
        /// The checksum of what was downloaded.
        actual: String,
    },
}

/// What a stored file belongs to: a model (`<models>/<id>/`) or an adapter
/// (`<models>/adapters/<name>/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArtifactKind {
    /// A model's weights.
    Model,
    /// A LoRA adapter.
    Adapter,
}

/// The folder adapters live in, under the models folder. A model id may not take this
/// name, or its files would mix with the adapters.
pub const ADAPTERS_DIR: &str = "adapters";

/// The model store rooted at one models folder.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    client: reqwest::Client,
    retries: u32,
    /// The wait before the first retry; it doubles with each one.
    retry_backoff: std::time::Duration,
}

impl Store {
    /// A store over `models_dir`. Nothing is created until a file is pulled.
    pub fn new(models_dir: impl Into<PathBuf>) -> Self {
        Store {
            root: models_dir.into(),
            client: pull::default_client(),
            retries: pull::DEFAULT_RETRIES,
            retry_backoff: pull::RETRY_BACKOFF,
        }
    }

    /// How long [`Store::pull`] waits before its first retry (default 1 s); each
    /// further retry waits twice as long as the one before.
    pub fn with_retry_backoff(mut self, first_wait: std::time::Duration) -> Self {
        self.retry_backoff = first_wait;
        self
    }

    /// How many times [`Store::pull`] resumes a transfer that broke off before giving up
    /// (default 3). Status errors and checksum mismatches are never retried.
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The models folder this store manages.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// Where a model's file lives: `<models>/<model_id>/<file>`. Refuses ids and names
    /// that would leave the store; see [`Store::path`].
    pub fn model_path(&self, model_id: &str, file: &str) -> Result<PathBuf, StoreError> {
        self.path(ArtifactKind::Model, model_id, file)
    }

    /// Where an adapter's file lives: `<models>/adapters/<adapter>/<file>`. Refuses
    /// names that would leave the store; see [`Store::path`].
    pub fn adapter_path(&self, adapter: &str, file: &str) -> Result<PathBuf, StoreError> {
        self.path(ArtifactKind::Adapter, adapter, file)
    }

    /// The path of `file` belonging to `id`. Both must be a single plain path component
    /// (not empty, no `/` or `\`, not `.` or `..`, no NUL, at most 255 bytes; a file may
    /// not end in `.partial`, a model may not be called `adapters`), and no existing
    /// symlink on the way may resolve outside the store. Checked before anything is
    /// created, so a refused name leaves no trace on disk.
    pub fn path(&self, kind: ArtifactKind, id: &str, file: &str) -> Result<PathBuf, StoreError> {
        let path = paths::build(&self.root, kind, id, file)?;
        paths::check_contained(&self.root, &path)?;
        Ok(path)
    }

    /// Whether the file is installed: a valid name whose file exists. A download still
    /// in progress (`.partial`) does not count.
    pub fn is_installed(&self, kind: ArtifactKind, id: &str, file: &str) -> bool {
        self.path(kind, id, file).is_ok_and(|p| p.is_file())
    }
}

/// One version of a file on disk: its size, modification time and inode. A file
/// rewritten in place changes the first two, one replaced by rename (how downloads
/// finish) the last even when its size and coarse time match the old one's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct FileVersion {
    pub size: u64,
    /// Nanoseconds since the Unix epoch; 0 where the file system keeps no time.
    pub modified_ns: u64,
    pub inode: u64,
}

impl FileVersion {
    /// The version of the file at `path` now.
    pub fn of(path: &std::path::Path) -> std::io::Result<Self> {
        let metadata = std::fs::metadata(path)?;
        let modified_ns = metadata
            .modified()
            .ok()
            .and_then(|modified| modified.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX));
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
        #[cfg(not(unix))]
        let inode = 0;
        Ok(Self { size: metadata.len(), modified_ns, inode })
    }
}
