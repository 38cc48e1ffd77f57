//! The on-disk shape of `catalog.toml`, exactly as serde reads it.
//!
//! Every struct denies unknown fields, so a misspelt key is an error with its line and
//! column instead of a silently ignored setting. Values that later checks may reject
//! (ids, references, file names, sizes, durations) are kept [`Spanned`] so that those
//! errors point at the offending value too. [`super::validate`] turns this shape into
//! the public [`super::Catalog`].

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCatalog {
    #[serde(default)]
    pub idle: RawIdle,
    #[serde(default)]
    pub models: Vec<RawModel>,
    #[serde(default)]
    pub tier_tables: Vec<RawTierTable>,
    #[serde(default)]
    pub adapters: Vec<RawAdapter>,
    #[serde(default)]
    pub isolation: RawIsolation,
    #[serde(default)]
    pub rpc: RawRpc,
    #[serde(default)]
    pub placement: RawPlacement,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlacement {
    pub devices: Option<Spanned<String>>,
    pub split: Option<Spanned<String>>,
    pub main: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRpc {
    #[serde(default)]
    pub servers: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIsolation {
    pub default: Option<super::Isolation>,
    pub stall_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub backends: std::collections::BTreeMap<String, super::Isolation>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdle {
    pub soft_timeout: Option<Spanned<String>>,
    pub hard_timeout: Option<Spanned<String>>,
    pub max_resident_models: Option<Spanned<usize>>,
    pub memory_budget: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    pub id: Spanned<String>,
    pub name: String,
    pub family: Option<String>,
    pub parameters: Option<String>,
    pub context_size: u32,
    pub soft_timeout: Option<Spanned<String>>,
    pub hard_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub artifacts: Vec<RawArtifact>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawArtifact {
    pub backends: Spanned<Vec<String>>,
    pub format: String,
    pub file: Spanned<String>,
    pub url: Option<String>,
    pub sha256: Option<Spanned<String>>,
    pub size_bytes: Option<Spanned<u64>>,
    pub quantization: Option<String>,
    #[serde(default)]
    pub companions: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTierTable {
    pub backend: Spanned<String>,
    pub memory_kind: RawMemoryKind,
    pub tiers: Vec<RawTier>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum RawMemoryKind {
    Ram,
    GpuMemory,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTier {
    pub tier: Spanned<u8>,
    pub models: Spanned<Vec<Spanned<String>>>,
    pub memory_required: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdapter {
    pub name: Spanned<String>,
    pub title: String,
    pub base_model: Spanned<String>,
    pub purpose: String,
    #[serde(default)]
    pub artifacts: Vec<RawArtifact>,
}
