//! The one error type that crosses the plugin boundary.

use abi_stable::{std_types::RString, StableAbi};
use std::fmt;

/// What went wrong, coarsely, so the host can map it to a status and a retry policy.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request itself is wrong (bad parameter, unknown adapter, prompt too long).
    InvalidRequest,
    /// The backend cannot do this (format, architecture, feature) — try another backend.
    Unsupported,
    /// Not enough host or device memory — try a smaller tier.
    OutOfMemory,
    /// The model or adapter file is missing, unreadable or corrupt.
    ModelFile,
    /// Anything else that failed inside the backend.
    Internal,
    /// The plugin panicked; the SDK caught it at the boundary.
    Panicked,
}

impl ErrorKind {
    /// A stable, lower-case name for logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::OutOfMemory => "out_of_memory",
            ErrorKind::ModelFile => "model_file",
            ErrorKind::Internal => "internal",
            ErrorKind::Panicked => "panicked",
        }
    }
}

/// An error returned by a plugin: a kind plus a human-readable message.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    pub kind: ErrorKind,
    pub message: RString,
}

impl PluginError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: RString::from(message.into()) }
    }
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    pub fn out_of_memory(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::OutOfMemory, message)
    }
    pub fn model_file(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ModelFile, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for PluginError {}
