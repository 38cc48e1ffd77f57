//! `hearth pull`: fetch a catalog model's (or adapter's) files into the store.

use anyhow::{bail, Context};

use crate::catalog::Artifact;
use crate::service::Hearth;
use crate::store::{PullSpec, TerminalProgress};

fn spec_for(artifact: &Artifact, make: impl Fn(&str, &str) -> PullSpec) -> Option<PullSpec> {
    let url = artifact.url.as_deref()?;
    let mut spec = make(&artifact.file, url);
    if let Some(sha256) = &artifact.sha256 {
        spec = spec.with_sha256(sha256.clone());
    }
    if let Some(size) = artifact.size_bytes {
        spec = spec.with_size(size);
    }
    Some(spec)
}

/// Download every artifact of `name` (a model id or an adapter name) usable by
/// `backend`, or by any backend when none is given.
pub async fn pull(hearth: &Hearth, name: &str, backend: Option<&str>) -> anyhow::Result<()> {
    let catalog = hearth.catalog();
    let specs: Vec<PullSpec> = if let Some(model) = catalog.model(name) {
        model
            .artifacts
            .iter()
            .filter(|artifact| {
                backend.is_none_or(|backend| artifact.backends.iter().any(|b| b == backend))
            })
            .filter_map(|artifact| spec_for(artifact, |file, url| PullSpec::model(name, file, url)))
            .collect()
    } else if let Some(adapter) = catalog.adapter(name) {
        adapter
            .artifacts
            .iter()
            .filter(|artifact| {
                backend.is_none_or(|backend| artifact.backends.iter().any(|b| b == backend))
            })
            .filter_map(|artifact| {
                spec_for(artifact, |file, url| PullSpec::adapter(name, file, url))
            })
            .collect()
    } else {
        bail!(
            "`{name}` is neither a model nor an adapter in the catalog ({})",
            hearth.config().catalog.describe()
        );
    };
    if specs.is_empty() {
        bail!(
            "the catalog gives no download URL for `{name}`{}; put its file into {} by hand",
            backend.map(|backend| format!(" on backend {backend}")).unwrap_or_default(),
            hearth.store().root().display()
        );
    }
    for spec in specs {
        let mut progress = TerminalProgress::new(spec.file.clone());
        let path = hearth
            .store()
            .pull(&spec, &mut progress)
            .await
            .with_context(|| format!("pulling {}", spec.file))?;
        println!("{} → {}", spec.file, path.display());
    }
    Ok(())
}
