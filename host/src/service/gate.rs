//! The model-file gate: every GGUF or safetensors file — model or adapter — is
//! validated by the host before any backend is handed its path.
//!
//! Backends parse these files with native code (ggml's GGUF reader, MLX's loaders)
//! whose history includes heap overflows and out-of-bounds reads on crafted headers.
//! Checking the structure here, with the SDK's bounds-checked readers, means a hostile
//! or damaged file is refused with the first rule it breaks and never reaches them.
//! Formats the host does not know (a plugin's own) pass through: their plugin owns them.
//!
//! Verdicts are cached per (path, size, modification time), so a request does not
//! re-read a multi-gigabyte file's header, and a file replaced on disk is checked anew.
//! With a GGUF file's verdict the gate keeps what the file needs from a backend
//! ([`GgufNeeds`]: architecture, tensor types), which routing compares with each
//! backend's stated capabilities, and its chat template, which tells the API how the
//! model writes tool calls.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hearth_sdk::helpers::{Gguf, GgufNeeds, Safetensors};

use crate::store::FileVersion;

/// A file the gate refused: which file, and the first rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model file {file} is invalid: {rule}")]
pub struct FileRefused {
    /// The file's name, without the folders above it (they are the host's business).
    pub file: String,
    pub rule: String,
}

/// What the gate keeps of a GGUF file that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufFacts {
    /// What it needs from a backend.
    pub needs: GgufNeeds,
    /// Its chat template (`tokenizer.chat_template`), when it carries one.
    pub chat_template: Option<String>,
}

/// A file that passed: for GGUF, what the gate keeps of it.
type Passed = Option<GgufFacts>;

/// The last verdict on each file, with the version of the file it is about.
type Verdicts = HashMap<PathBuf, (FileVersion, Result<Passed, FileRefused>)>;

/// Validates model and adapter files, remembering each verdict.
#[derive(Debug, Default)]
pub struct FileGate {
    verdicts: Mutex<Verdicts>,
    /// Full validations run (cache misses), for tests and metrics.
    checks: AtomicU64,
}

/// Whether the host knows how to validate `format`.
fn validated(format: &str) -> bool {
    format.eq_ignore_ascii_case("gguf") || format.eq_ignore_ascii_case("safetensors")
}

impl FileGate {
    /// Check `path` as a file of `format`. Blocks: reads the file's header on a miss.
    pub fn check(&self, path: &Path, format: &str) -> Result<(), FileRefused> {
        self.inspect(path, format).map(|_| ())
    }

    /// [`FileGate::check`], and for a GGUF file that passes, what the gate keeps of it.
    pub fn inspect(&self, path: &Path, format: &str) -> Result<Passed, FileRefused> {
        if !validated(format) {
            return Ok(None);
        }
        let name = path
            .file_name()
            .map_or_else(|| path.display().to_string(), |name| name.to_string_lossy().into_owned());
        let stamp = FileVersion::of(path).map_err(|error| FileRefused {
            file: name.clone(),
            rule: format!("cannot read: {error}"),
        })?;
        if let Some((seen, verdict)) = self.lock().get(path) {
            if *seen == stamp {
                return verdict.clone();
            }
        }
        self.checks.fetch_add(1, Ordering::Relaxed);
        let opened = if format.eq_ignore_ascii_case("gguf") {
            Gguf::open(path)
                .map(|gguf| {
                    Some(GgufFacts {
                        needs: GgufNeeds::of(&gguf),
                        chat_template: gguf.str("tokenizer.chat_template").ok().map(str::to_string),
                    })
                })
                .map_err(|error| error.to_string())
        } else {
            Safetensors::open(path).map(|_| None).map_err(|error| error.to_string())
        };
        // The readers' messages start with the full path; the client gets the name.
        let verdict = match opened {
            Ok(needs) => Ok(needs),
            Err(message) => {
                let rule = message
                    .strip_prefix(&format!("{}: ", path.display()))
                    .unwrap_or(&message)
                    .to_string();
                Err(FileRefused { file: name, rule })
            }
        };
        self.lock().insert(path.to_path_buf(), (stamp, verdict.clone()));
        verdict
    }

    /// How many times a file was really read and validated (cache misses).
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Verdicts> {
        self.verdicts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid GGUF: header, no metadata, no tensors.
    fn empty_gguf() -> Vec<u8> {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes
    }

    #[test]
    fn a_valid_file_passes_once_and_is_then_answered_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ok.gguf");
        std::fs::write(&path, empty_gguf()).unwrap();
        let gate = FileGate::default();
        assert_eq!(gate.check(&path, "gguf"), Ok(()));
        assert_eq!(gate.check(&path, "GGUF"), Ok(()));
        assert_eq!(gate.checks(), 1);
    }

    #[test]
    fn a_corrupt_file_is_refused_by_name_with_the_rule_and_rechecked_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.gguf");
        std::fs::write(&path, b"GGUX").unwrap();
        let gate = FileGate::default();
        let refused = gate.check(&path, "gguf").unwrap_err();
        assert_eq!(refused.file, "bad.gguf");
        assert!(
            refused.rule.starts_with("truncated") || refused.rule.starts_with("not a GGUF"),
            "{refused}"
        );
        assert!(
            !refused.to_string().contains(&dir.path().display().to_string()),
            "no folders in {refused}"
        );
        std::fs::write(&path, empty_gguf()).unwrap();
        assert_eq!(gate.check(&path, "gguf"), Ok(()), "a replaced file is checked anew");
        assert_eq!(gate.checks(), 2);
    }

    #[test]
    fn safetensors_are_checked_and_unknown_formats_pass_to_their_plugin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        std::fs::write(&path, 500u64.to_le_bytes()).unwrap();
        let refused = FileGate::default().check(&path, "safetensors").unwrap_err();
        assert!(refused.rule.contains("past the end"), "{refused}");
        assert_eq!(FileGate::default().check(&path, "fixture"), Ok(()));
    }
}
