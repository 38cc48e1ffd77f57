//! Verbs that describe the host: `profile`, `models`, `plugins`.

use serde::Serialize;
use serde_json::json;

use crate::router::RouteRequest;
use crate::service::Hearth;

/// A refused catalog edit, where the listings show it: before anything else.
fn print_catalog_problem(hearth: &Hearth) {
    if let Some(problem) = hearth.catalog_problem() {
        println!("catalog edit refused, the previous catalog stays in force: {}", problem.message);
    }
}

fn gigabytes(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

/// `hearth profile`: the device and the routing decision with its reasons.
pub fn profile(hearth: &Hearth, json: bool) -> anyhow::Result<()> {
    let device = hearth.device();
    let plan = hearth.route(&RouteRequest::default());
    if json {
        let route = match &plan {
            Ok(plan) => json!({ "summary": plan.describe(), "plan": plan }),
            Err(error) => json!({ "error": error.to_string() }),
        };
        let body = json!({
            "device": device.view(),
            "catalog": hearth.config().catalog.describe(),
            "catalog_error": hearth.catalog_problem(),
            "placement": hearth.placement(),
            "route": route,
        });
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    let host = &device.host;
    println!("host:    {} {} ({} cores: {})", host.os, host.arch, host.cpu_cores, host.cpu_brand);
    println!(
        "memory:  {} total, {} available{}",
        gigabytes(host.ram_total_bytes),
        gigabytes(host.ram_available_bytes),
        if host.apple_silicon { ", Apple Silicon (unified)" } else { "" }
    );
    let features: Vec<String> =
        host.cpu_features.iter().map(abi_stable::std_types::RString::to_string).collect();
    println!("cpu:     {}", if features.is_empty() { "-".to_string() } else { features.join(" ") });
    println!("catalog: {}", hearth.config().catalog.describe());
    print_catalog_problem(hearth);
    println!("backends:");
    if device.backends.is_empty() {
        println!("  none: no plugin in {}", hearth.config().plugins.display());
    }
    for backend in &device.backends {
        let state = if backend.probe.available { "available" } else { "unavailable" };
        println!("  {:<10} {state}: {}", backend.backend, backend.probe.reason);
        for view in backend.device_views() {
            println!(
                "    {} {} ({})",
                view.kind.as_str(),
                view.name,
                gigabytes(view.memory_total_bytes)
            );
        }
    }
    println!("placement: {} (llama.cpp)", hearth.placement().describe());
    println!("routing:");
    match plan {
        Ok(plan) => plan.describe().iter().for_each(|line| println!("  {line}")),
        Err(error) => println!("  no route: {error}"),
    }
    Ok(())
}

#[derive(Serialize)]
struct ModelRow {
    id: String,
    name: String,
    tiers: Vec<String>,
    backends: Vec<String>,
    size_bytes: Option<u64>,
    installed: bool,
    /// Loaded backends that can run an installed file of the model, by what each states
    /// it runs.
    runs_on: Vec<String>,
    /// Loaded backends the catalog names for an installed file that state they cannot
    /// run it, with why.
    cannot_run: Vec<String>,
    recommended: bool,
}

/// `hearth models`: every catalog model with tiers, backends, size, installed, which
/// loaded backends can run it (and which cannot, with why), recommended.
pub fn models(hearth: &Hearth, json: bool) -> anyhow::Result<()> {
    let catalog = hearth.catalog();
    let plan = hearth.route(&RouteRequest::default()).ok();
    let recommended_models: Vec<String> = plan
        .iter()
        .flat_map(|plan| plan.recommended.iter())
        .flat_map(|rec| rec.models.clone())
        .collect();
    let chosen = plan
        .as_ref()
        .and_then(|plan| plan.candidates.first())
        .map(|candidate| candidate.model_id.clone());
    let rows: Vec<ModelRow> = catalog
        .models
        .iter()
        .map(|model| {
            let mut backends: Vec<String> =
                model.artifacts.iter().flat_map(|artifact| artifact.backends.clone()).collect();
            backends.sort();
            backends.dedup();
            let (mut runs_on, mut cannot_run) = (Vec::new(), Vec::new());
            let loaded = hearth.registry();
            for artifact in &model.artifacts {
                let Some(path) = hearth
                    .store()
                    .model_path(&model.id, &artifact.file)
                    .ok()
                    .filter(|path| path.is_file())
                else {
                    continue;
                };
                for backend in &artifact.backends {
                    if !loaded.plugins.iter().any(|plugin| &plugin.info.id == backend) {
                        continue;
                    }
                    match hearth.unmet_needs(backend, &path, &artifact.format) {
                        None => runs_on.push(backend.clone()),
                        Some(why) => cannot_run.push(format!("{backend}: {why}")),
                    }
                }
            }
            runs_on.sort();
            runs_on.dedup();
            ModelRow {
                id: model.id.clone(),
                name: model.name.clone(),
                tiers: catalog
                    .tiers
                    .iter()
                    .filter(|tier| tier.models.contains(&model.id))
                    .map(|tier| format!("{}:{}", tier.backend, tier.tier))
                    .collect(),
                backends,
                size_bytes: model.artifacts.iter().filter_map(|artifact| artifact.size_bytes).max(),
                installed: model.artifacts.iter().any(|artifact| {
                    hearth
                        .store()
                        .model_path(&model.id, &artifact.file)
                        .is_ok_and(|path| path.is_file())
                }),
                runs_on,
                cannot_run,
                recommended: recommended_models.contains(&model.id)
                    || chosen.as_ref() == Some(&model.id),
            }
        })
        .collect();
    if json {
        // The JSON stays a plain list for scripts; the refusal goes to stderr.
        if let Some(problem) = hearth.catalog_problem() {
            eprintln!(
                "catalog edit refused, the previous catalog stays in force: {}",
                problem.message
            );
        }
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    print_catalog_problem(hearth);
    println!(
        "{:<22} {:<28} {:<30} {:>9} {:<9} {:<22} RECOMMENDED",
        "ID", "NAME", "TIERS", "SIZE", "INSTALLED", "RUNS ON"
    );
    for row in rows {
        let size = row.size_bytes.map(gigabytes).unwrap_or_else(|| "-".into());
        let recommended = match (row.recommended, chosen.as_ref() == Some(&row.id)) {
            (_, true) => "yes (in use)",
            (true, false) => "yes",
            _ => "",
        };
        let runs_on = if row.runs_on.is_empty() { "-".to_string() } else { row.runs_on.join(",") };
        println!(
            "{:<22} {:<28} {:<30} {:>9} {:<9} {runs_on:<22} {recommended}",
            row.id,
            row.name,
            row.tiers.join(" "),
            size,
            if row.installed { "yes" } else { "no" }
        );
        for why in &row.cannot_run {
            println!("{:<22} cannot run: {why}", "");
        }
    }
    Ok(())
}

/// `hearth plugins`: what loaded, with devices, and what was refused with why.
pub fn plugins(hearth: &Hearth, json: bool) -> anyhow::Result<()> {
    let view = hearth.plugins();
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    println!("plugins folder: {}", view.folder.display());
    print_catalog_problem(hearth);
    if view.plugins.is_empty() {
        println!("no plugins loaded");
    }
    for plugin in &view.plugins {
        let state = if plugin.available { "available" } else { "unavailable" };
        println!(
            "{:<10} {} {} (API {}), formats: {}; {state}: {}",
            plugin.info.id,
            plugin.info.name,
            plugin.info.version,
            plugin.info.api_version,
            plugin.info.formats.join(", "),
            plugin.reason
        );
        for device in &plugin.devices {
            println!(
                "    {} {} ({})",
                device.kind,
                device.name,
                gigabytes(device.memory_total_bytes)
            );
        }
    }
    for failure in &view.refused {
        println!("refused    {}: {}", failure.path.display(), failure.reason);
    }
    Ok(())
}
