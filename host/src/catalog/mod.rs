//! The catalog: which models exist, where their files come from, which of them each
//! backend recommends at which memory size (the tier tables), which LoRA adapters sit
//! on which base model, and the idle policy.
//!
//! [`Catalog::from_path`] reads `catalog.toml`, parses it strictly (unknown keys are
//! errors) and cross-checks it; every error names the file, the line and column, and
//! the reason, so a user can fix the file without reading this code.

mod schema;
pub mod units;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hearth_sdk::SplitMode;
use serde::{Deserialize, Serialize};

/// Everything that can go wrong reading a catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{}: cannot read the catalog: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema (unknown key, bad type).
    #[error("{}:{line}:{column}: {reason}", path.display())]
    Syntax { path: PathBuf, line: usize, column: usize, reason: String },
    /// The file parses but contradicts itself (unknown model, duplicate id, …).
    #[error("{}:{line}:{column}: {reason}", path.display())]
    Invalid { path: PathBuf, line: usize, column: usize, reason: String },
}

impl CatalogError {
    /// The 1-based line and column the error points at, if it points anywhere.
    pub fn location(&self) -> Option<(usize, usize)> {
        match self {
            CatalogError::Read { .. } => None,
            CatalogError::Syntax { line, column, .. }
            | CatalogError::Invalid { line, column, .. } => Some((*line, *column)),
        }
    }
}

/// When idle models are trimmed and unloaded, and how many may stay resident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdlePolicy {
    /// Idle time after which caches are released and weights kept.
    pub soft_timeout: Duration,
    /// Idle time after which the model is unloaded entirely.
    pub hard_timeout: Duration,
    pub max_resident_models: usize,
    /// Memory all resident models may hold together; `None` leaves it to the device.
    pub memory_budget_bytes: Option<u64>,
}

impl Default for IdlePolicy {
    /// The seed's policy: trim after 2 minutes, unload after 5.
    fn default() -> Self {
        IdlePolicy {
            soft_timeout: Duration::from_secs(120),
            hard_timeout: Duration::from_secs(300),
            max_resident_models: 3,
            memory_budget_bytes: None,
        }
    }
}

/// Where a backend's models run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// In a worker process of their own: a crash fails only that model's requests, and
    /// unloading ends the process, which returns every byte it held.
    Process,
    /// Inside the host process, through the plugin library the host loaded.
    InProcess,
}

/// The catalog's `[isolation]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolationPolicy {
    /// Backends not named in `backends`; `None` leaves it to the command (`serve` runs
    /// backends in worker processes, the one-shot commands in-process).
    pub default: Option<Isolation>,
    /// Per-backend choices, by backend id.
    pub backends: BTreeMap<String, Isolation>,
    /// How long a worker may produce nothing while generating, or leave a health check
    /// or a trim unanswered, before it is killed as hung.
    pub stall_timeout: Duration,
}

impl Default for IsolationPolicy {
    fn default() -> Self {
        // Long enough for a long prompt on a slow CPU, which streams nothing until it is
        // evaluated.
        Self { default: None, backends: BTreeMap::new(), stall_timeout: Duration::from_secs(120) }
    }
}

impl IsolationPolicy {
    /// How `backend` runs when the command's own default is `fallback`.
    pub fn for_backend(&self, backend: &str, fallback: Isolation) -> Isolation {
        self.backends.get(backend).copied().or(self.default).unwrap_or(fallback)
    }
}

/// One model and the files it can be loaded from.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelEntry {
    pub id: String,
    pub name: String,
    pub family: Option<String>,
    /// Parameter count as people say it, e.g. `8B`.
    pub parameters: Option<String>,
    pub context_size: u32,
    /// Files in order of preference; each names the backends that can load it.
    pub artifacts: Vec<Artifact>,
    /// Per-model overrides of the idle policy.
    pub soft_timeout: Option<Duration>,
    pub hard_timeout: Option<Duration>,
}

/// One downloadable (or hand-placed) file of a model or adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Artifact {
    /// Backend ids that can load this file.
    pub backends: Vec<String>,
    /// File format, matched against the formats a backend reports, e.g. `gguf`.
    pub format: String,
    /// A plain relative file name inside the models folder.
    pub file: String,
    pub url: Option<String>,
    /// Lower-case hex.
    pub sha256: Option<String>,
    pub size_bytes: Option<u64>,
    pub quantization: Option<String>,
    /// The other files of a model that is a folder (an MLX-format model: `config.json`,
    /// the tokenizer's files, further shards): plain names, kept beside `file` and
    /// fetched from beside its URL, before it, so a model whose `file` is in place is
    /// whole.
    pub companions: Vec<String>,
}

impl Artifact {
    /// Whether `backend`, which reads `formats`, can load this file.
    pub fn loads_on(&self, backend: &str, formats: &[String]) -> bool {
        self.backends.iter().any(|b| b == backend)
            && formats.iter().any(|f| f.eq_ignore_ascii_case(&self.format))
    }
}

/// Which memory a tier table's requirement is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryKind {
    /// System RAM (unified memory on Apple Silicon).
    Ram,
    /// The memory of the backend's best GPU.
    GpuMemory,
}

/// One row of a backend's tier table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    pub backend: String,
    pub tier: u8,
    /// Alternatives in order of preference; the first installed one is used.
    pub models: Vec<String>,
    pub memory_required_bytes: u64,
    pub memory_kind: MemoryKind,
    /// Written `"64+ GB"`: the tier wants at least this much, more is better.
    pub open_ended: bool,
}

impl Tier {
    /// The requirement as the catalog writes it, e.g. `64+ GB`.
    pub fn memory_label(&self) -> String {
        let size = units::format_size(self.memory_required_bytes);
        if self.open_ended {
            size.replacen(' ', "+ ", 1)
        } else {
            size
        }
    }
}

/// A LoRA adapter for one base model.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterEntry {
    pub name: String,
    pub title: String,
    pub base_model: String,
    pub purpose: String,
    /// Empty when the adapter cannot be downloaded and must be placed by hand.
    pub artifacts: Vec<Artifact>,
}

/// Which of a backend's devices models run on and how a model is divided between them:
/// the catalog's `[placement]`, and `--device`, `--split-mode` and `--main-device` over
/// it. The llama.cpp plugin places models by it; MLX and WebGPU run on one device.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Placement {
    /// A device name as `hearth plugins` lists it, a comma-separated list of them, or
    /// `none` for the CPU alone; unset is every GPU.
    pub devices: Option<String>,
    /// Unset is `layer`.
    pub split: Option<SplitMode>,
    /// The device that holds what a `row` split does not divide, or everything with
    /// `none`; unset is the first.
    pub main: Option<String>,
}

impl Placement {
    /// Each setting of `self`, else `fallback`'s: the command line over the catalog.
    pub fn over(&self, fallback: &Placement) -> Placement {
        Placement {
            devices: self.devices.clone().or_else(|| fallback.devices.clone()),
            split: self.split.or(fallback.split),
            main: self.main.clone().or_else(|| fallback.main.clone()),
        }
    }

    /// One line for `hearth profile`.
    pub fn describe(&self) -> String {
        let split = self.split.unwrap_or_default();
        let devices = self.devices.as_deref().unwrap_or("every GPU");
        match &self.main {
            Some(main) => format!("{devices}, split by {split}, main device {main}"),
            None => format!("{devices}, split by {split}"),
        }
    }
}

/// A parsed and cross-checked catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    pub idle: IdlePolicy,
    pub isolation: IsolationPolicy,
    /// `[rpc] servers`: other machines' `hearth rpc-server`s (`host:port`) whose devices
    /// join this one's for llama.cpp models, unless `--rpc` names others. Read once at
    /// start, before any thread (the plugin reads them from the environment).
    pub rpc_servers: Vec<String>,
    /// `[placement]`: which devices models run on and how they are divided, unless the
    /// command line says otherwise.
    pub placement: Placement,
    pub models: Vec<ModelEntry>,
    /// Every backend's tiers, each backend's in ascending order.
    pub tiers: Vec<Tier>,
    pub adapters: Vec<AdapterEntry>,
}

impl Catalog {
    /// Reads, parses and validates the catalog at `path`.
    pub fn from_path(path: &Path) -> Result<Catalog, CatalogError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| CatalogError::Read { path: path.to_path_buf(), source })?;
        Catalog::parse(&text, path)
    }

    /// Parses and validates catalog text; `origin` only names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Catalog, CatalogError> {
        validate::parse(text, origin)
    }

    pub fn model(&self, id: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.id == id)
    }

    pub fn adapter(&self, name: &str) -> Option<&AdapterEntry> {
        self.adapters.iter().find(|a| a.name == name)
    }

    /// The adapters whose base is `model_id`.
    pub fn adapters_for<'a>(
        &'a self,
        model_id: &'a str,
    ) -> impl Iterator<Item = &'a AdapterEntry> + 'a {
        self.adapters.iter().filter(move |a| a.base_model == model_id)
    }

    /// `backend`'s tiers in ascending tier number (validation guarantees the order).
    pub fn tiers_for<'a>(&'a self, backend: &'a str) -> impl Iterator<Item = &'a Tier> + 'a {
        self.tiers.iter().filter(move |t| t.backend == backend)
    }

    /// The models of a tier joined by their display names, e.g. `Qwen3 8B / Gemma 3 12B`.
    pub fn tier_label(&self, tier: &Tier) -> String {
        let names: Vec<&str> = tier
            .models
            .iter()
            .map(|id| self.model(id).map_or(id.as_str(), |m| m.name.as_str()))
            .collect();
        names.join(" / ")
    }
}

#[cfg(test)]
mod tests;
