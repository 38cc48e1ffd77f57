//! What installing a catalog model or adapter means: which of its files to fetch from
//! where, for `hearth pull` and Ollama's `/api/pull` alike.

use std::path::PathBuf;

use super::Hearth;
use crate::catalog::Artifact;
use crate::store::{ArtifactKind, PullSpec, StoreError};

/// The files one install fetches, and those it has no source for that are in place.
#[derive(Debug)]
pub struct InstallPlan {
    pub kind: ArtifactKind,
    /// Each file to fetch (or verify, when already installed) through the store.
    pub specs: Vec<PullSpec>,
    /// Files with no source to fetch from that are installed already.
    pub installed: Vec<PathBuf>,
}

/// Why nothing can be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("`{name}` is neither a model nor an adapter in the catalog ({catalog})")]
    NotInCatalog { name: String, catalog: String },
    #[error(
        "the catalog gives no download URL for `{name}`{}; put its file at {} by hand",
        backend.as_ref().map(|backend| format!(" on backend {backend}")).unwrap_or_default(),
        places_text(places)
    )]
    NoSource { name: String, backend: Option<String>, places: Vec<PathBuf> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn places_text(places: &[PathBuf]) -> String {
    match places.len() {
        0 => "(no file of it is listed for this backend)".to_string(),
        _ => {
            places.iter().map(|place| place.display().to_string()).collect::<Vec<_>>().join(" or ")
        }
    }
}

/// The installs of one artifact: from `from` when given (any artifact qualifies; its
/// file alone), else its companions from beside its URL, then the file itself, last, so
/// that a folder whose file is in place is whole. `None`: no source (no URL, no `from`).
fn specs_for(
    artifact: &Artifact,
    kind: ArtifactKind,
    name: &str,
    from: &[PathBuf],
) -> Option<Vec<PullSpec>> {
    let url = artifact.url.as_deref().unwrap_or_default();
    if from.is_empty() && url.is_empty() {
        return None;
    }
    let pull = |file: &str, url: &str| match kind {
        ArtifactKind::Model => PullSpec::model(name, file, url),
        ArtifactKind::Adapter => PullSpec::adapter(name, file, url),
    };
    let mut specs = Vec::new();
    if from.is_empty() {
        let url_folder = url.split('?').next().unwrap_or(url);
        let url_folder = &url_folder[..url_folder.rfind('/').map_or(0, |at| at + 1)];
        let folder = &artifact.file[..artifact.file.rfind('/').map_or(0, |at| at + 1)];
        for companion in &artifact.companions {
            specs.push(pull(&format!("{folder}{companion}"), &format!("{url_folder}{companion}")));
        }
    }
    let mut spec = pull(&artifact.file, url);
    if !from.is_empty() {
        spec = spec.from_files(from.to_vec());
    }
    if let Some(sha256) = &artifact.sha256 {
        spec = spec.with_sha256(sha256.clone());
    }
    if let Some(size) = artifact.size_bytes {
        spec = spec.with_size(size);
    }
    specs.push(spec);
    Some(specs)
}

impl Hearth {
    /// How to install every artifact of `name` (a model id or an adapter name) usable
    /// by `backend`, or by any backend when none is given; with `from`, only the first
    /// such artifact, from those local files.
    pub fn install_plan(
        &self,
        name: &str,
        backend: Option<&str>,
        from: &[PathBuf],
    ) -> Result<InstallPlan, InstallError> {
        let catalog = self.catalog();
        let (kind, artifacts) = if let Some(model) = catalog.model(name) {
            (ArtifactKind::Model, &model.artifacts)
        } else if let Some(adapter) = catalog.adapter(name) {
            (ArtifactKind::Adapter, &adapter.artifacts)
        } else {
            return Err(InstallError::NotInCatalog {
                name: name.to_string(),
                catalog: self.config().catalog.describe(),
            });
        };
        let usable: Vec<&Artifact> = artifacts
            .iter()
            .filter(|artifact| {
                backend.is_none_or(|backend| artifact.backends.iter().any(|b| b == backend))
            })
            .collect();
        let mut specs = Vec::new();
        let mut installed = Vec::new();
        for artifact in &usable {
            match specs_for(artifact, kind, name, from) {
                Some(artifact_specs) => specs.extend(artifact_specs),
                None if self.store().is_installed(kind, name, &artifact.file) => {
                    installed.push(self.store().path(kind, name, &artifact.file)?);
                }
                None => {}
            }
        }
        if !from.is_empty() {
            specs.truncate(1);
        }
        if specs.is_empty() && installed.is_empty() {
            let places = usable
                .iter()
                .map(|artifact| self.store().path(kind, name, &artifact.file))
                .collect::<Result<Vec<PathBuf>, _>>()?;
            return Err(InstallError::NoSource {
                name: name.to_string(),
                backend: backend.map(str::to_string),
                places,
            });
        }
        Ok(InstallPlan { kind, specs, installed })
    }
}
