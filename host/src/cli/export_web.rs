//! `hearth export-web DIR [--models-url BASE]`: the web app as a folder of static
//! files that any web server can serve, with no hearth behind it. The page then runs in
//! browser mode alone and reads each model's GGUF file by HTTP Range from its URL.
//!
//! The folder holds the page (`index.html`), every file it loads under `app/` (the bytes
//! `hearth serve` serves, from the one table in `api::web`), and static stand-ins for
//! what browser mode reads from the API: `catalog.json` (the models with a GGUF file
//! the in-page engine reads, each with its URL, the WebGPU tier table, the adapters and
//! the idle timeouts) and `architectures.json` (`GET /api/architectures`).
//! `app/site.json` replaces the served one and tells the page it is an export.
//!
//! A model file's URL is `BASE/<file name>` with `--models-url`, else the catalog's
//! `url`; a model with neither is left out and named in the command's output.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

use super::GlobalArgs;
use crate::api::static_app::{idle_view, static_files, tier_view, SITE_FILE};
use crate::catalog::{Artifact, Catalog};
use crate::service::{default_home, CatalogSource};

/// The backend whose models and tiers browser mode runs.
const BROWSER_BACKEND: &str = "webgpu";
/// The stand-in for `/api/profile`'s catalog, beside the page.
const CATALOG_FILE: &str = "catalog.json";
/// The stand-in for `GET /api/architectures`, beside the page.
const ARCHITECTURES_FILE: &str = "architectures.json";

#[derive(Debug, Args)]
pub struct ExportWebArgs {
    /// The folder to write; it must not exist yet or be empty.
    pub dir: PathBuf,
    /// Where the model files are served: each file's URL becomes BASE/<file name>,
    /// over the catalog's `url` (relative to the folder, or absolute; that server must
    /// answer Range requests and, on another origin, allow them by CORS).
    #[arg(long, value_name = "BASE")]
    pub models_url: Option<String>,
}

/// What an export wrote.
#[derive(Debug, PartialEq, Eq)]
pub struct Exported {
    pub files: usize,
    /// The models the page can run, by id.
    pub models: Vec<String>,
    /// Models with a GGUF file for WebGPU but no URL to read it from.
    pub without_url: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: &ExportWebArgs) -> anyhow::Result<()> {
    let home = global.home.clone().unwrap_or_else(default_home);
    let source = CatalogSource::resolve(global.catalog.clone(), &home);
    let catalog =
        source.load().with_context(|| format!("cannot use the catalog {}", source.describe()))?;
    let exported = export(&catalog, &args.dir, args.models_url.as_deref())?;
    println!("wrote {} files to {}", exported.files, args.dir.display());
    println!("models: {}", list(&exported.models));
    if !exported.without_url.is_empty() {
        println!(
            "left out, with no URL for their file (give --models-url): {}",
            exported.without_url.join(", ")
        );
    }
    Ok(())
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// Write the export of `catalog` into `dir`, which must not exist or be empty.
pub fn export(catalog: &Catalog, dir: &Path, models_url: Option<&str>) -> anyhow::Result<Exported> {
    refuse_a_folder_in_use(dir)?;
    let (catalog_json, models, without_url) = catalog_view(catalog, models_url);
    let site = json!({
        "static_export": true,
        "hearth_version": env!("CARGO_PKG_VERSION"),
        "catalog": CATALOG_FILE,
        "architectures": ARCHITECTURES_FILE,
    });
    let pretty = |value: &Value| {
        let mut text = serde_json::to_vec_pretty(value).expect("JSON values serialize");
        text.push(b'\n');
        text
    };
    let site_path = format!("app/{SITE_FILE}");
    let mut files: Vec<(String, Vec<u8>)> = static_files()
        .filter(|(name, _)| *name != site_path)
        .map(|(name, body)| (name, body.to_vec()))
        .collect();
    files.push((site_path, pretty(&site)));
    files.push((CATALOG_FILE.to_string(), pretty(&catalog_json)));
    files.push((ARCHITECTURES_FILE.to_string(), pretty(&hearth_model::arch::as_json())));
    for (name, body) in &files {
        let path = dir.join(name);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("cannot create the folder {}", folder.display()))?;
        }
        std::fs::write(&path, body).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(Exported { files: files.len(), models, without_url })
}

/// An export never mixes with other files: `dir` must be absent or an empty folder.
fn refuse_a_folder_in_use(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!("{} is not empty: export into a new or empty folder", dir.display());
            }
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => {
            Err(error).with_context(|| format!("cannot use {} as the folder", dir.display()))
        }
    }
}

/// `catalog.json`, the ids of the models in it, and the ids of those left out for want
/// of a URL.
fn catalog_view(catalog: &Catalog, models_url: Option<&str>) -> (Value, Vec<String>, Vec<String>) {
    let mut exported = Vec::new();
    let mut without_url = Vec::new();
    let mut models = Vec::new();
    for model in &catalog.models {
        let readable: Vec<&Artifact> = catalog_files(&model.artifacts).collect();
        if readable.is_empty() {
            continue;
        }
        let artifacts: Vec<Value> =
            readable.iter().filter_map(|artifact| artifact_view(artifact, models_url)).collect();
        if artifacts.is_empty() {
            without_url.push(model.id.clone());
            continue;
        }
        exported.push(model.id.clone());
        models.push(json!({
            "id": model.id,
            "name": model.name,
            "family": model.family,
            "parameters": model.parameters,
            "context_size": model.context_size,
            "artifacts": artifacts,
        }));
    }
    let tiers: Vec<Value> = catalog.tiers_for(BROWSER_BACKEND).map(tier_view).collect();
    let adapters: Vec<Value> = catalog
        .adapters
        .iter()
        .map(|adapter| {
            let artifacts: Vec<Value> = adapter
                .artifacts
                .iter()
                .filter_map(|artifact| artifact_view(artifact, models_url))
                .collect();
            json!({
                "name": adapter.name,
                "title": adapter.title,
                "base_model": adapter.base_model,
                "purpose": adapter.purpose,
                "artifacts": artifacts,
            })
        })
        .collect();
    let view = json!({
        "models": models,
        "tiers": tiers,
        "adapters": adapters,
        "idle": idle_view(catalog),
    });
    (view, exported, without_url)
}

/// The files of a model the in-page engine reads: GGUF, listed for WebGPU.
fn catalog_files(artifacts: &[Artifact]) -> impl Iterator<Item = &Artifact> {
    artifacts.iter().filter(|artifact| artifact.loads_on(BROWSER_BACKEND, &["gguf".to_string()]))
}

/// An artifact with the URL the page reads it from; `None` when it has none.
fn artifact_view(artifact: &Artifact, models_url: Option<&str>) -> Option<Value> {
    let url = match models_url {
        Some(base) => format!("{}/{}", base.trim_end_matches('/'), url_segment(&artifact.file)),
        None => artifact.url.clone()?,
    };
    Some(json!({
        "file": artifact.file,
        "format": artifact.format,
        "backends": artifact.backends,
        "quantization": artifact.quantization,
        "size_bytes": artifact.size_bytes,
        "sha256": artifact.sha256,
        "url": url,
    }))
}

/// `name` as one segment of a URL path: bytes other than unreserved characters are
/// percent-encoded (a file name with a space or `#` must still name that file).
fn url_segment(name: &str) -> String {
    name.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests;
