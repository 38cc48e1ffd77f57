//! The one error type that crosses the plugin boundary.

use abi_stable::{std_types::RString, StableAbi};
use std::fmt;

crate::open_enum! {
    /// What went wrong, coarsely, so the host can map it to a status and a retry policy.
    pub struct ErrorKind {
        /// The request itself is wrong (bad parameter, unknown adapter, prompt too long).
        InvalidRequest = 0 => "invalid_request",
        /// The backend cannot do this (format, architecture, feature) — try another backend.
        Unsupported = 1 => "unsupported",
        /// Not enough host or device memory — try a smaller tier.
        OutOfMemory = 2 => "out_of_memory",
        /// The model or adapter file is missing, unreadable or corrupt.
        ModelFile = 3 => "model_file",
        /// Anything else that failed inside the backend.
        Internal = 4 => "internal",
        /// The plugin panicked; the SDK caught it at the boundary.
        Panicked = 5 => "panicked",
    }
    unknown => "internal";
}

/// An error returned by a plugin: a kind plus a human-readable message.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// Logits that are not all finite numbers: what a forward pass over damaged weights
    /// computes, refused wherever a token or its probability is taken from them.
    pub fn non_finite_logits() -> Self {
        Self::model_file(
            "the model computed logits that are not finite numbers (NaN or infinity): its weights are damaged",
        )
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for PluginError {}
