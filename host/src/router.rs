//! Routing: which backend, which tier, and which installed file to try, in order.
//!
//! [`plan`] is a pure function of the catalog, the device profile, what is installed
//! and the request, so every rule is unit-testable without plugins or files. Every
//! decision carries a human-readable reason; `hearth profile` prints them through
//! [`RoutePlan::describe`].
//!
//! The rules:
//! - Backend order: MLX first on Apple Silicon; llama.cpp when it has a GPU device;
//!   MLX on a non-Apple GPU; WebGPU on a real (hardware) adapter; llama.cpp on the
//!   CPU; MLX on the CPU; WebGPU on a software adapter last. Plugins the router knows
//!   nothing about come after those. Only loaded backends whose probe says available
//!   count.
//! - Tier: the highest tier of the backend's table whose requirement fits the
//!   device (see [`fits`]).
//! - Fallback: from that tier downward, each tier's models in order, the first
//!   installed file the backend reads; then the same on the next backend.
//! - Device: when one is asked for (`--device`), only the backends that list it take
//!   part, and `none` (the CPU alone) keeps those with a CPU device.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;

use hearth_sdk::DeviceKind;
use serde::Serialize;

use crate::catalog::units::format_size;
use crate::catalog::{Artifact, Catalog, MemoryKind, ModelEntry, Tier};
use crate::device::{BackendProbe, DeviceProfile};

/// What the caller asks for; every field left `None` is chosen by the router.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteRequest {
    pub model: Option<String>,
    pub backend: Option<String>,
    pub tier: Option<u8>,
    /// The device models must run on, by the name a backend's probe lists (llama.cpp's
    /// `Vulkan0`, `CUDA0`), or [`NO_DEVICE`]; the service sets it from `--device`.
    pub device: Option<String>,
}

/// The device name that means the CPU alone, no GPU (llama-server's `--device none`).
pub const NO_DEVICE: &str = "none";

/// Where model files are; implemented by the store, faked in tests.
pub trait Installed {
    /// The absolute path of `artifact` of `model_id`, or `None` when it is not installed.
    fn path_of(&self, model_id: &str, artifact: &Artifact) -> Option<PathBuf>;
}

/// Why routing cannot even start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("backend `{backend}` is not loaded (loaded: {loaded})")]
    BackendNotLoaded { backend: String, loaded: String },
    #[error("backend `{backend}` is not available on this machine: {reason}")]
    BackendUnavailable { backend: String, reason: String },
    #[error("model `{0}` is not in the catalog")]
    UnknownModel(String),
    #[error("no usable backend has a tier {tier} (tier tables: {tables})")]
    NoSuchTier { tier: u8, tables: String },
    #[error(
        "no usable backend has a device `{device}` (devices: {known}; or `none` for the CPU alone)"
    )]
    NoSuchDevice { device: String, known: String },
}

/// A backend in the fallback order, with why it sits there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendChoice {
    pub backend: String,
    pub reason: String,
}

/// The tier the device should run, before looking at what is installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recommendation {
    pub backend: String,
    pub tier: u8,
    pub models: Vec<String>,
    pub memory_required_bytes: u64,
    pub memory_kind: MemoryKind,
    pub reason: String,
}

/// One installed file to try, in plan order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub backend: String,
    /// The tier of `backend`'s table the model came from; `None` for a named model
    /// outside that table.
    pub tier: Option<u8>,
    pub model_id: String,
    pub artifact: Artifact,
    pub path: PathBuf,
    pub reason: String,
}

/// The outcome of routing: try `candidates` in order until one loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoutePlan {
    pub backend_order: Vec<BackendChoice>,
    pub recommended: Option<Recommendation>,
    pub candidates: Vec<Candidate>,
    /// Backends left out, tiers skipped, and similar remarks.
    pub notes: Vec<String>,
    /// Installed files left out because their backend states it cannot run them, each
    /// with the reason (filled in by the service, which reads the files' headers).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unrunnable: Vec<String>,
}

/// A tier fits when its requirement is at most the budget plus 10 %.
///
/// The tier tables speak of installed memory ("16 GB" means a 16 GB machine), while
/// the OS reports what is left after firmware, the kernel and integrated-GPU carve-outs:
/// a 16 GB laptop shows about 15.5 GiB, a 64 GB Linux box about 62.8 GiB. Measuring
/// against total rather than available memory keeps the recommendation stable from one
/// run to the next; the lifecycle's memory budget and the plugins' out-of-memory
/// errors (which make the host fall back a tier) cover the moment-to-moment state.
pub fn fits(required_bytes: u64, budget_bytes: u64) -> bool {
    required_bytes <= budget_bytes.saturating_add(budget_bytes / 10)
}

/// Routes `request`; see the module documentation for the rules.
pub fn plan(
    catalog: &Catalog,
    device: &DeviceProfile,
    installed: &dyn Installed,
    request: &RouteRequest,
) -> Result<RoutePlan, RouteError> {
    let mut notes = Vec::new();
    let order =
        backend_order(device, request.backend.as_deref(), request.device.as_deref(), &mut notes)?;
    let backend_order: Vec<BackendChoice> = order
        .iter()
        .map(|(b, reason)| BackendChoice { backend: b.backend.clone(), reason: reason.clone() })
        .collect();

    if let Some(model_id) = &request.model {
        let model =
            catalog.model(model_id).ok_or_else(|| RouteError::UnknownModel(model_id.clone()))?;
        if request.tier.is_some() {
            notes.push(format!("tier ignored: model `{model_id}` was named"));
        }
        let candidates = named_model_candidates(catalog, model, &order, installed, &mut notes);
        return Ok(RoutePlan {
            backend_order,
            recommended: None,
            candidates,
            notes,
            unrunnable: Vec::new(),
        });
    }

    let mut recommended = None;
    let mut candidates = Vec::new();
    let mut any_table_has_tier = request.tier.is_none();
    for (backend, _) in &order {
        let tiers: Vec<&Tier> = catalog.tiers_for(&backend.backend).collect();
        if tiers.is_empty() {
            notes.push(format!(
                "{}: no tier table in the catalog; name a model to use it",
                backend.backend
            ));
            continue;
        }
        let Some((start, reason)) = choose_tier(&tiers, device, backend, request.tier) else {
            notes.push(format!(
                "{}: has no tier {}",
                backend.backend,
                request.tier.unwrap_or_default()
            ));
            continue;
        };
        any_table_has_tier = true;
        let top = tiers[start];
        if recommended.is_none() {
            recommended = Some(Recommendation {
                backend: backend.backend.clone(),
                tier: top.tier,
                models: top.models.clone(),
                memory_required_bytes: top.memory_required_bytes,
                memory_kind: top.memory_kind,
                reason: reason.clone(),
            });
        }
        let before = candidates.len();
        tier_candidates(catalog, backend, &tiers[..=start], installed, &mut candidates);
        let label = format!(
            "{} tier {} ({}, {})",
            backend.backend,
            top.tier,
            catalog.tier_label(top),
            top.memory_label()
        );
        match candidates.get(before) {
            Some(first) if first.tier != Some(top.tier) => notes.push(format!(
                "recommended {label} — not installed; using tier {} {}",
                first.tier.unwrap_or_default(),
                display_name(catalog, &first.model_id)
            )),
            Some(_) => {}
            None => {
                notes.push(format!("recommended {label} — not installed, nor any smaller tier"));
            }
        }
    }
    if !any_table_has_tier {
        let tables: Vec<String> = order
            .iter()
            .filter_map(|(b, _)| {
                catalog
                    .tiers_for(&b.backend)
                    .last()
                    .map(|t| format!("{} 1..={}", b.backend, t.tier))
            })
            .collect();
        return Err(RouteError::NoSuchTier {
            tier: request.tier.unwrap_or_default(),
            tables: tables.join(", "),
        });
    }
    Ok(RoutePlan { backend_order, recommended, candidates, notes, unrunnable: Vec::new() })
}

/// Loaded, available backends that have the wanted device, fastest first, each with
/// its reason.
fn backend_order<'a>(
    device: &'a DeviceProfile,
    forced: Option<&str>,
    wanted: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<Vec<(&'a BackendProbe, String)>, RouteError> {
    let order = available_backends(device, forced, notes)?;
    let Some(wanted) = wanted else { return Ok(order) };
    let (with, without): (Vec<_>, Vec<_>) =
        order.into_iter().partition(|(backend, _)| has_device(backend, wanted));
    if with.is_empty() && !without.is_empty() {
        return Err(RouteError::NoSuchDevice {
            device: wanted.to_string(),
            known: device_list(device),
        });
    }
    for (backend, _) in without {
        notes.push(format!("{}: left out — it has no device `{wanted}`", backend.backend));
    }
    // The asked-for device, not the backend's best one, is what it runs on.
    let forced = if forced.is_some() { "forced by the request; " } else { "" };
    Ok(with
        .into_iter()
        .map(|(backend, _)| (backend, format!("{forced}it has the device asked for, `{wanted}`")))
        .collect())
}

/// Whether `backend` lists the device `wanted`, by name, or every device of a list
/// (`CUDA0,CUDA1`: the model is split across them); for [`NO_DEVICE`], whether it runs
/// on the CPU.
fn has_device(backend: &BackendProbe, wanted: &str) -> bool {
    if wanted.eq_ignore_ascii_case(NO_DEVICE) {
        return backend.probe.devices.iter().any(|d| d.kind == DeviceKind::Cpu);
    }
    wanted.split(',').map(str::trim).all(|name| {
        !name.is_empty() && backend.probe.devices.iter().any(|d| d.name.eq_ignore_ascii_case(name))
    })
}

/// Every available backend's devices, for an error: `llamacpp: CPU, Vulkan0; …`.
fn device_list(device: &DeviceProfile) -> String {
    let lists: Vec<String> = device
        .backends
        .iter()
        .filter(|backend| backend.probe.available)
        .map(|backend| {
            let names: Vec<&str> = backend.probe.devices.iter().map(|d| d.name.as_str()).collect();
            format!("{}: {}", backend.backend, names.join(", "))
        })
        .collect();
    lists.join("; ")
}

/// Loaded, available backends, fastest first, each with its reason.
fn available_backends<'a>(
    device: &'a DeviceProfile,
    forced: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<Vec<(&'a BackendProbe, String)>, RouteError> {
    if let Some(id) = forced {
        let backend = device.backend(id).ok_or_else(|| RouteError::BackendNotLoaded {
            backend: id.to_string(),
            loaded: loaded_list(device),
        })?;
        if !backend.probe.available {
            return Err(RouteError::BackendUnavailable {
                backend: id.to_string(),
                reason: non_empty(backend.probe.reason.as_str(), "its probe gave no reason"),
            });
        }
        let (_, why) = rank(backend, device);
        return Ok(vec![(backend, format!("forced by the request; {why}"))]);
    }
    let mut ranked = Vec::new();
    for backend in &device.backends {
        if backend.probe.available {
            let (rank, why) = rank(backend, device);
            ranked.push((rank, backend, why));
        } else {
            let reason = non_empty(backend.probe.reason.as_str(), "no reason given");
            notes.push(format!("{}: unavailable — {reason}", backend.backend));
        }
    }
    if ranked.is_empty() {
        notes.push(format!("no backend is available (loaded: {})", loaded_list(device)));
    }
    // Stable: equal ranks keep the plugin load order.
    ranked.sort_by_key(|(rank, _, _)| *rank);
    Ok(ranked.into_iter().map(|(_, b, why)| (b, why)).collect())
}

/// Position in the backend order (lower is tried first) and why.
fn rank(backend: &BackendProbe, device: &DeviceProfile) -> (u8, String) {
    let gpu = backend.best_accelerator().map(|d| d.name.to_string());
    match (backend.backend.as_str(), gpu) {
        ("mlx", _) if device.host.apple_silicon => (0, "MLX on Apple Silicon: Metal on unified memory".into()),
        ("llamacpp", Some(gpu)) => (1, format!("llama.cpp with GPU offload to {gpu}")),
        ("mlx", Some(gpu)) => (2, format!("MLX on {gpu}")),
        ("webgpu", Some(gpu)) => (3, format!("WebGPU on a hardware adapter, {gpu}")),
        ("llamacpp", None) => (4, "llama.cpp on the CPU: no GPU device found".into()),
        // MLX's CPU quantized kernels are several times slower than llama.cpp's (its
        // quantized matvec ran at about 1 GB/s on the project's CPU machine).
        ("mlx", None) => (5, "MLX on the CPU: slower than llama.cpp there".into()),
        ("webgpu", None) if backend.software_gpu_only() => {
            (6, "WebGPU on a software adapter: correct but slow, the last resort".into())
        }
        ("webgpu", None) => (6, "WebGPU without a hardware adapter: the last resort".into()),
        (other, _) => (7, format!("`{other}` is a plugin the router has no speed knowledge of; tried after the built-in backends")),
    }
}

/// The index into `tiers` to start from, and why; `None` when a forced tier is missing.
fn choose_tier(
    tiers: &[&Tier],
    device: &DeviceProfile,
    backend: &BackendProbe,
    forced: Option<u8>,
) -> Option<(usize, String)> {
    let (budget, what) = budget(tiers[0].memory_kind, device, backend);
    let have = format!("{} of {what}", format_size(budget));
    if let Some(n) = forced {
        let index = tiers.iter().position(|t| t.tier == n)?;
        let t = tiers[index];
        let warning = if fits(t.memory_required_bytes, budget) { "" } else { ", more than fits" };
        return Some((
            index,
            format!("tier {n} forced by the request (needs {}; {have}{warning})", t.memory_label()),
        ));
    }
    match tiers.iter().rposition(|t| fits(t.memory_required_bytes, budget)) {
        Some(index) => {
            let t = tiers[index];
            let next = tiers
                .get(index + 1)
                .map_or(String::new(), |n| format!("; tier {} needs {}", n.tier, n.memory_label()));
            Some((
                index,
                format!(
                    "highest tier that fits: tier {} needs {}, {have}{next}",
                    t.tier,
                    t.memory_label()
                ),
            ))
        }
        None => Some((
            0,
            format!(
                "even tier {} needs {}, more than the {have}; trying it anyway",
                tiers[0].tier,
                tiers[0].memory_label()
            ),
        )),
    }
}

/// The memory a tier table is measured against, and its name for messages.
fn budget(kind: MemoryKind, device: &DeviceProfile, backend: &BackendProbe) -> (u64, String) {
    let ram = (device.host.ram_total_bytes, "system RAM".to_string());
    match kind {
        MemoryKind::Ram => ram,
        MemoryKind::GpuMemory => {
            match backend.best_accelerator().filter(|d| d.memory_total_bytes > 0) {
                Some(d) => (d.memory_total_bytes, format!("GPU memory on {}", d.name)),
                // A software adapter (or one that hides its size) works out of system RAM.
                None => ram,
            }
        }
    }
}

/// Candidates from `tiers`, highest first, skipping models already planned.
fn tier_candidates(
    catalog: &Catalog,
    backend: &BackendProbe,
    tiers: &[&Tier],
    installed: &dyn Installed,
    out: &mut Vec<Candidate>,
) {
    let top = tiers.last().map(|t| t.tier);
    let mut seen: HashSet<String> =
        out.iter().filter(|c| c.backend == backend.backend).map(|c| c.model_id.clone()).collect();
    for tier in tiers.iter().rev() {
        for model_id in &tier.models {
            let Some(model) = catalog.model(model_id) else {
                continue;
            };
            if seen.contains(model_id) {
                continue;
            }
            if let Some((artifact, path)) = installed_artifact(model, backend, installed) {
                seen.insert(model_id.clone());
                let role =
                    if Some(tier.tier) == top { "recommended tier" } else { "fallback to tier" };
                out.push(Candidate {
                    backend: backend.backend.clone(),
                    tier: Some(tier.tier),
                    model_id: model_id.clone(),
                    reason: format!(
                        "{} {role} {}: {} ({})",
                        backend.backend, tier.tier, model.name, artifact.file
                    ),
                    artifact: artifact.clone(),
                    path,
                });
            }
        }
    }
}

/// Candidates for a model the request named, one per backend that has it installed.
fn named_model_candidates(
    catalog: &Catalog,
    model: &ModelEntry,
    order: &[(&BackendProbe, String)],
    installed: &dyn Installed,
    notes: &mut Vec<String>,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    for (backend, _) in order {
        if !model.artifacts.iter().any(|a| a.loads_on(&backend.backend, &backend.formats)) {
            notes.push(format!(
                "{}: {} has no file this backend reads",
                backend.backend, model.name
            ));
            continue;
        }
        let Some((artifact, path)) = installed_artifact(model, backend, installed) else {
            notes.push(format!(
                "{}: {} is not installed (hearth pull {})",
                backend.backend, model.name, model.id
            ));
            continue;
        };
        let tier = catalog
            .tiers_for(&backend.backend)
            .find(|t| t.models.contains(&model.id))
            .map(|t| t.tier);
        out.push(Candidate {
            backend: backend.backend.clone(),
            tier,
            model_id: model.id.clone(),
            reason: format!(
                "{} requested by name; {} reads {}",
                model.name, backend.backend, artifact.file
            ),
            artifact: artifact.clone(),
            path,
        });
    }
    out
}

/// The model's first installed file that `backend` can read.
fn installed_artifact<'m>(
    model: &'m ModelEntry,
    backend: &BackendProbe,
    installed: &dyn Installed,
) -> Option<(&'m Artifact, PathBuf)> {
    model
        .artifacts
        .iter()
        .filter(|a| a.loads_on(&backend.backend, &backend.formats))
        .find_map(|a| installed.path_of(&model.id, a).map(|p| (a, p)))
}

fn display_name<'a>(catalog: &'a Catalog, model_id: &'a str) -> &'a str {
    catalog.model(model_id).map_or(model_id, |m| m.name.as_str())
}

fn loaded_list(device: &DeviceProfile) -> String {
    if device.backends.is_empty() {
        return "none".into();
    }
    device.backends.iter().map(|b| b.backend.as_str()).collect::<Vec<_>>().join(", ")
}

fn non_empty(text: &str, fallback: &str) -> String {
    if text.trim().is_empty() {
        fallback.to_string()
    } else {
        text.to_string()
    }
}

impl RoutePlan {
    /// The plan as lines for `hearth profile` and logs.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec!["backends, first choice first:".to_string()];
        lines.extend(
            self.backend_order
                .iter()
                .enumerate()
                .map(|(i, b)| format!("  {}. {} — {}", i + 1, b.backend, b.reason)),
        );
        if let Some(r) = &self.recommended {
            lines.push(format!(
                "recommended: {} tier {} [{}] — {}",
                r.backend,
                r.tier,
                r.models.join(", "),
                r.reason
            ));
        }
        lines.push("candidates, in the order they will be tried:".to_string());
        if self.candidates.is_empty() {
            lines.push("  none installed".to_string());
        }
        lines.extend(
            self.candidates
                .iter()
                .enumerate()
                .map(|(i, c)| format!("  {}. {} — {}", i + 1, c.reason, c.path.display())),
        );
        lines.extend(self.unrunnable.iter().map(|n| format!("left out: {n}")));
        lines.extend(self.notes.iter().map(|n| format!("note: {n}")));
        lines
    }
}

impl fmt::Display for RoutePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.describe() {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
