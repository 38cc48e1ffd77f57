//! Installs into the store from a URL (streaming, resumable) or from local files (a file
//! taken out of a package, or one split into parts), verified the same way either way.

use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::paths::{self, PARTIAL_SUFFIX};
use super::{ArtifactKind, Progress, Store, StoreError};

/// Resumptions of a broken-off transfer before [`Store::pull`] gives up.
pub(super) const DEFAULT_RETRIES: u32 = 3;
/// The wait before the first retry of a broken transfer; it doubles with each retry, so
/// a network that is down for a moment (a Wi-Fi reconnect) gets seconds, not
/// milliseconds, to come back.
pub(super) const RETRY_BACKOFF: Duration = Duration::from_secs(1);

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Downloaded over HTTP(S), resuming a transfer that breaks off.
    Url(String),
    /// Local files concatenated in order (one for a plain file; several for a model
    /// split into parts), copied and never moved, e.g. the model file `scripts/setup.sh`
    /// takes out of a package downloaded with pip.
    Files(Vec<PathBuf>),
}

/// What to install and where it goes in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSpec {
    /// Model or adapter.
    pub kind: ArtifactKind,
    /// The model id or adapter name (the folder under the store).
    pub id: String,
    /// The file name inside that folder.
    pub file: String,
    /// Where its bytes come from.
    pub source: Source,
    /// The expected sha256 as hex; the file is only installed when it matches.
    pub sha256: Option<String>,
    /// The expected size in bytes; the file is only installed when it matches.
    pub size: Option<u64>,
}

impl PullSpec {
    /// A model file download, without checksum or size.
    pub fn model(id: impl Into<String>, file: impl Into<String>, url: impl Into<String>) -> Self {
        Self::new(ArtifactKind::Model, id.into(), file.into(), url.into())
    }

    /// An adapter file download, without checksum or size.
    pub fn adapter(
        name: impl Into<String>,
        file: impl Into<String>,
        url: impl Into<String>,
    ) -> Self {
        Self::new(ArtifactKind::Adapter, name.into(), file.into(), url.into())
    }

    fn new(kind: ArtifactKind, id: String, file: String, url: String) -> Self {
        PullSpec { kind, id, file, source: Source::Url(url), sha256: None, size: None }
    }

    /// Takes the bytes from these local files, concatenated in order, instead of a URL.
    pub fn from_files(mut self, parts: Vec<PathBuf>) -> Self {
        self.source = Source::Files(parts);
        self
    }

    /// Requires this sha256 (hex) before installing.
    pub fn with_sha256(mut self, sha256: impl Into<String>) -> Self {
        self.sha256 = Some(sha256.into());
        self
    }

    /// Requires this size in bytes before installing.
    pub fn with_size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }
}

pub(super) fn default_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        // A stalled transfer is retried from where it stopped rather than hanging forever.
        .read_timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// How one attempt ended when it did not fail outright.
enum Attempt {
    /// The partial file holds the whole body; here is its hash and length.
    Complete(Sha256, u64),
    /// The body broke off; worth resuming.
    Broken(StoreError),
    /// The partial file was unusable and has been deleted; start again from zero.
    Restart,
}

impl Store {
    /// Installs `spec` into the store and returns the installed path.
    ///
    /// Writes `<file>.partial` beside the destination. From local files, the parts are
    /// copied into it in order. From a URL, an existing partial is resumed with
    /// a `Range: bytes=N-` request (206 continues it, 200 restarts from zero, 416 means it
    /// is already complete and only needs verifying). A transfer that breaks off is
    /// resumed up to [`Store::with_retries`] times. Size and sha256, when given, are
    /// checked before the file is renamed into place; on a mismatch the partial is
    /// deleted. A file that is already installed (and matches the checksum, when one is
    /// given) is returned without downloading.
    pub async fn pull(
        &self,
        spec: &PullSpec,
        progress: &mut dyn Progress,
    ) -> Result<PathBuf, StoreError> {
        let expected_sha = spec.sha256.as_deref().map(normalize_sha256).transpose()?;
        let dest = self.path(spec.kind, &spec.id, &spec.file)?;
        let partial = partial_path(&dest);
        paths::check_contained(&self.root, &partial)?;

        if dest.is_file() && self.installed_matches(&dest, spec, expected_sha.as_deref()).await? {
            return Ok(dest);
        }
        let dir = dest.parent().unwrap_or(&self.root);
        let created = !dir.is_dir();
        tokio::fs::create_dir_all(dir).await.map_err(|source| StoreError::Io {
            op: "create",
            path: dir.to_owned(),
            source,
        })?;

        let assembled = match &spec.source {
            Source::Url(url) => self.download(spec, url, &partial, progress).await,
            Source::Files(parts) => assemble(parts.clone(), partial.clone()).await,
        };
        if created && assembled.is_err() {
            remove_if_nothing_arrived(&partial, dir).await;
        }
        let (hasher, len) = assembled?;

        if let Some(expected) = spec.size {
            if expected != len {
                remove_quietly(&partial).await;
                return Err(StoreError::SizeMismatch {
                    file: spec.file.clone(),
                    expected,
                    actual: len,
                });
            }
        }
        if let Some(expected) = expected_sha {
            let actual = hex(hasher);
            if expected != actual {
                remove_quietly(&partial).await;
                return Err(StoreError::ChecksumMismatch {
                    file: spec.file.clone(),
                    expected,
                    actual,
                });
            }
        }
        tokio::fs::rename(&partial, &dest).await.map_err(|source| StoreError::Io {
            op: "rename into place",
            path: dest.clone(),
            source,
        })?;
        progress.finish();
        Ok(dest)
    }

    /// Downloads `url` into `partial`, resuming after broken transfers with a growing wait.
    async fn download(
        &self,
        spec: &PullSpec,
        url: &str,
        partial: &Path,
        progress: &mut dyn Progress,
    ) -> Result<(Sha256, u64), StoreError> {
        let mut retries_left = self.retries;
        let mut wait = self.retry_backoff;
        loop {
            match self.attempt(spec, url, partial, progress).await? {
                Attempt::Complete(hasher, len) => return Ok((hasher, len)),
                // Not a failure of the transfer, so it costs no retry; the partial is gone,
                // so the next attempt asks for the whole file and cannot loop here.
                Attempt::Restart => {}
                Attempt::Broken(err) if retries_left == 0 => return Err(err),
                Attempt::Broken(err) => {
                    retries_left -= 1;
                    tracing::warn!(
                        "{err}; trying again in {wait:?} ({retries_left} retries left after that)"
                    );
                    tokio::time::sleep(wait).await;
                    wait = wait.saturating_mul(2);
                }
            }
        }
    }

    /// Whether an existing destination file can stand: right size and checksum when
    /// those are known. A file that fails is downloaded again and replaced.
    async fn installed_matches(
        &self,
        dest: &Path,
        spec: &PullSpec,
        sha: Option<&str>,
    ) -> Result<bool, StoreError> {
        if sha.is_none() && spec.size.is_none() {
            return Ok(true);
        }
        let (hasher, len) = hash_file(dest.to_owned()).await?;
        Ok(spec.size.is_none_or(|s| s == len) && sha.is_none_or(|s| s == hex(hasher)))
    }

    /// One request: continues the partial file from its current length.
    async fn attempt(
        &self,
        spec: &PullSpec,
        url: &str,
        partial: &Path,
        progress: &mut dyn Progress,
    ) -> Result<Attempt, StoreError> {
        let http = |source: reqwest::Error| StoreError::Http {
            url: url.to_owned(),
            cause: error_chain(&source),
        };

        let mut offset = match tokio::fs::metadata(partial).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == ErrorKind::NotFound => 0,
            Err(source) => {
                return Err(StoreError::Io { op: "inspect", path: partial.to_owned(), source })
            }
        };
        if spec.size.is_some_and(|size| offset > size) {
            // Longer than the file can be: not a prefix of it.
            offset = 0;
        }

        let mut request = self.client.get(url);
        if offset > 0 {
            request = request.header(RANGE, format!("bytes={offset}-"));
        }
        let response = match request.send().await {
            Ok(r) => r,
            // Could not connect at all: as retryable as a cut transfer.
            Err(e) => return Ok(Attempt::Broken(http(e))),
        };

        let status = response.status();
        let total = match status {
            StatusCode::PARTIAL_CONTENT if offset > 0 => {
                match parse_content_range(response.headers().get(CONTENT_RANGE)) {
                    Some((start, total)) if start == offset => total,
                    // A range we did not ask for: start over rather than splice wrong bytes.
                    _ => return restart(partial).await,
                }
            }
            StatusCode::OK => {
                // The server ignored the range (or there was none): the body is the whole file.
                offset = 0;
                response.content_length()
            }
            StatusCode::RANGE_NOT_SATISFIABLE if offset > 0 => {
                // Nothing after our offset: the partial is already the whole file.
                progress.start(Some(offset));
                progress.resumed(offset);
                let (hasher, len) = hash_file(partial.to_owned()).await?;
                return Ok(Attempt::Complete(hasher, len));
            }
            _ => return Err(StoreError::Status { url: url.to_owned(), status: status.as_u16() }),
        };

        // Hash what is already on disk first, so the file is read exactly once overall.
        let mut hasher = if offset > 0 {
            let (hasher, len) = hash_file(partial.to_owned()).await?;
            if len != offset {
                // The file changed under us; start over.
                return restart(partial).await;
            }
            hasher
        } else {
            Sha256::new()
        };
        let mut out = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(offset > 0)
            .truncate(offset == 0)
            .open(partial)
            .await
            .map_err(|source| StoreError::Io { op: "open", path: partial.to_owned(), source })?;
        progress.start(total);
        if offset > 0 {
            progress.resumed(offset);
        }

        let write_err = |source| StoreError::Io { op: "write", path: partial.to_owned(), source };
        let mut len = offset;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    // Keep what arrived: the next attempt resumes after it.
                    out.flush().await.map_err(write_err)?;
                    return Ok(Attempt::Broken(http(e)));
                }
            };
            out.write_all(&chunk).await.map_err(write_err)?;
            hasher.update(&chunk);
            len += chunk.len() as u64;
            progress.advance(chunk.len() as u64);
        }
        out.flush().await.map_err(write_err)?;
        // Durable before it is renamed into place, so a crash cannot leave a torn model.
        out.sync_all().await.map_err(write_err)?;
        Ok(Attempt::Complete(hasher, len))
    }
}

/// After a failed first pull: the partial file if it holds nothing, then the folder
/// made for it if that left it empty, so a failed pull leaves no empty model folder.
/// A partial with bytes in it stays for the next pull to resume.
async fn remove_if_nothing_arrived(partial: &Path, dir: &Path) {
    if tokio::fs::metadata(partial).await.is_ok_and(|metadata| metadata.len() == 0) {
        remove_quietly(partial).await;
    }
    // Fails, as it should, when the folder is not empty.
    let _ = tokio::fs::remove_dir(dir).await;
}

/// An error with every cause under it, on one line: "error sending request for url
/// (…): client error (Connect): dns error: failed to lookup address information: …".
/// A connection error's own message rarely says what went wrong; its causes do.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Drops an unusable partial file so the next attempt starts from zero.
async fn restart(partial: &Path) -> Result<Attempt, StoreError> {
    remove_quietly(partial).await;
    Ok(Attempt::Restart)
}

/// `<file>.partial` beside `dest`.
pub(super) fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(PARTIAL_SUFFIX);
    dest.with_file_name(name)
}

/// Lowercase hex, checked to be 64 digits.
fn normalize_sha256(sha: &str) -> Result<String, StoreError> {
    let sha = sha.trim().to_ascii_lowercase();
    if sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(sha)
    } else {
        Err(StoreError::InvalidSha256(sha))
    }
}

fn hex(hasher: Sha256) -> String {
    format!("{:x}", hasher.finalize())
}

/// Parses `bytes START-END/TOTAL` (TOTAL may be `*`).
fn parse_content_range(value: Option<&reqwest::header::HeaderValue>) -> Option<(u64, Option<u64>)> {
    let rest = value?.to_str().ok()?.strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

/// Concatenates `parts` into `partial` (replacing what was there) on a blocking thread,
/// and returns the sha256 and length of what was written.
async fn assemble(parts: Vec<PathBuf>, partial: PathBuf) -> Result<(Sha256, u64), StoreError> {
    let join = tokio::task::spawn_blocking(move || {
        let write_err = |source| StoreError::Io { op: "write", path: partial.clone(), source };
        let mut out = std::fs::File::create(&partial).map_err(write_err)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        for part in &parts {
            let read_err = |source| StoreError::Io { op: "read", path: part.clone(), source };
            let mut file = std::fs::File::open(part).map_err(read_err)?;
            loop {
                let n = file.read(&mut buf).map_err(read_err)?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n]).map_err(write_err)?;
                hasher.update(&buf[..n]);
                len += n as u64;
            }
        }
        // Durable before it is renamed into place, so a crash cannot leave a torn model.
        out.sync_all().map_err(write_err)?;
        Ok((hasher, len))
    });
    join.await.unwrap_or_else(|e| {
        Err(StoreError::Io {
            op: "assemble",
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })
    })
}

/// Sha256 and length of a file, read on a blocking thread.
async fn hash_file(path: PathBuf) -> Result<(Sha256, u64), StoreError> {
    let join = tokio::task::spawn_blocking(move || {
        let io = |source| StoreError::Io { op: "read", path: path.clone(), source };
        let mut file = std::fs::File::open(&path).map_err(io)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            len += n as u64;
        }
        Ok((hasher, len))
    });
    join.await.unwrap_or_else(|e| {
        Err(StoreError::Io { op: "hash", path: PathBuf::new(), source: std::io::Error::other(e) })
    })
}

async fn remove_quietly(path: &Path) {
    // Best effort: the caller is already reporting the error that matters.
    let _ = tokio::fs::remove_file(path).await;
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn content_range_parses_start_and_total() {
        let v = reqwest::header::HeaderValue::from_static("bytes 100-199/200");
        assert_eq!(parse_content_range(Some(&v)), Some((100, Some(200))));
        let v = reqwest::header::HeaderValue::from_static("bytes 5-9/*");
        assert_eq!(parse_content_range(Some(&v)), Some((5, None)));
    }

    #[test]
    fn sha256_must_be_64_hex_digits() {
        assert!(normalize_sha256("abc").is_err());
        assert_eq!(normalize_sha256(&"AB".repeat(32)).unwrap(), "ab".repeat(32));
    }
}
