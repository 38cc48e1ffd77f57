//! `hearth pull`: install a catalog model's (or adapter's) files into the store, from
//! their URL or from local files, verified against the catalog either way.

use std::path::PathBuf;

use anyhow::Context;

use crate::service::Hearth;
use crate::store::TerminalProgress;

/// Install every artifact of `name` (a model id or an adapter name) usable by `backend`,
/// or by any backend when none is given; with `from`, only the first such artifact, from
/// those local files.
pub async fn pull(
    hearth: &Hearth,
    name: &str,
    backend: Option<&str>,
    from: Vec<PathBuf>,
) -> anyhow::Result<()> {
    let plan = hearth.install_plan(name, backend, &from)?;
    for path in &plan.installed {
        println!("{} is installed (the catalog gives no URL to fetch it from)", path.display());
    }
    for spec in plan.specs {
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
