//! `hearth pull`: install a catalog model's (or adapter's) files into the store, from
//! their URL or from local files, verified against the catalog either way.

use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::catalog::Artifact;
use crate::service::Hearth;
use crate::store::{ArtifactKind, PullSpec, TerminalProgress};

/// The install of one artifact: from `from` when given (any artifact qualifies), else
/// from its URL (an artifact without one is skipped).
fn spec_for(
    artifact: &Artifact,
    kind: ArtifactKind,
    name: &str,
    from: &[PathBuf],
) -> Option<PullSpec> {
    let url = artifact.url.as_deref().unwrap_or_default();
    if from.is_empty() && url.is_empty() {
        return None;
    }
    let mut spec = match kind {
        ArtifactKind::Model => PullSpec::model(name, &artifact.file, url),
        ArtifactKind::Adapter => PullSpec::adapter(name, &artifact.file, url),
    };
    if !from.is_empty() {
        spec = spec.from_files(from.to_vec());
    }
    if let Some(sha256) = &artifact.sha256 {
        spec = spec.with_sha256(sha256.clone());
    }
    if let Some(size) = artifact.size_bytes {
        spec = spec.with_size(size);
    }
    Some(spec)
}

/// Install every artifact of `name` (a model id or an adapter name) usable by `backend`,
/// or by any backend when none is given; with `from`, only the first such artifact, from
/// those local files.
pub async fn pull(
    hearth: &Hearth,
    name: &str,
    backend: Option<&str>,
    from: Vec<PathBuf>,
) -> anyhow::Result<()> {
    let catalog = hearth.catalog();
    let (kind, artifacts) = if let Some(model) = catalog.model(name) {
        (ArtifactKind::Model, &model.artifacts)
    } else if let Some(adapter) = catalog.adapter(name) {
        (ArtifactKind::Adapter, &adapter.artifacts)
    } else {
        bail!(
            "`{name}` is neither a model nor an adapter in the catalog ({})",
            hearth.config().catalog.describe()
        );
    };
    let usable: Vec<&Artifact> = artifacts
        .iter()
        .filter(|artifact| {
            backend.is_none_or(|backend| artifact.backends.iter().any(|b| b == backend))
        })
        .collect();
    let mut specs: Vec<PullSpec> =
        usable.iter().filter_map(|artifact| spec_for(artifact, kind, name, &from)).collect();
    if !from.is_empty() {
        specs.truncate(1);
    }
    // Where each usable file goes, for the message when none can be downloaded.
    let places = usable
        .iter()
        .map(|artifact| hearth.store().path(kind, name, &artifact.file))
        .collect::<Result<Vec<PathBuf>, _>>()?;
    if specs.is_empty() {
        let places: Vec<String> = places.iter().map(|place| place.display().to_string()).collect();
        bail!(
            "the catalog gives no download URL for `{name}`{}; put its file at {} by hand",
            backend.map(|backend| format!(" on backend {backend}")).unwrap_or_default(),
            match places.len() {
                0 => "(no file of it is listed for this backend)".to_string(),
                _ => places.join(" or "),
            }
        );
    }
    for spec in specs {
        let mut progress = TerminalProgress::new(spec.file.clone());
        let path = hearth
            .store()
            .pull(&spec, &mut progress)
            .await
            .with_context(|| format!("installing {}", spec.file))?;
        println!("{} → {}", spec.file, path.display());
    }
    Ok(())
}
