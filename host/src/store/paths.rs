//! Name validation and symlink containment for store paths.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::{ArtifactKind, StoreError, ADAPTERS_DIR};

/// Suffix of a download in progress.
pub(super) const PARTIAL_SUFFIX: &str = ".partial";

/// Builds `<root>/<id>/<file>` or `<root>/adapters/<id>/<file>` after checking that the
/// id is a plain component and the file a relative path of plain components (a model
/// that is a folder, or split files, keep their files in a subfolder). Touches no file.
pub(super) fn build(
    root: &Path,
    kind: ArtifactKind,
    id: &str,
    file: &str,
) -> Result<PathBuf, StoreError> {
    let id_what = match kind {
        ArtifactKind::Model => "model id",
        ArtifactKind::Adapter => "adapter name",
    };
    check_component(id_what, id)?;
    if file.is_empty() {
        return Err(invalid("file name", file, "is empty"));
    }
    for part in file.split('/') {
        check_component("file name", part)
            .map_err(|_| invalid("file name", file, "has a part that is not a plain name"))?;
    }
    if file.ends_with(PARTIAL_SUFFIX) {
        // It would be mistaken for, and clobbered by, another file's download.
        return Err(invalid("file name", file, "ends in .partial, reserved for downloads"));
    }
    Ok(match kind {
        ArtifactKind::Model => {
            if id == ADAPTERS_DIR {
                return Err(invalid(id_what, id, "is reserved for the adapters folder"));
            }
            root.join(id).join(file)
        }
        ArtifactKind::Adapter => root.join(ADAPTERS_DIR).join(id).join(file),
    })
}

fn invalid(what: &'static str, name: &str, reason: &'static str) -> StoreError {
    StoreError::InvalidName { what, name: name.to_owned(), reason }
}

/// A name must be exactly one normal path component, or joining it onto the root could
/// climb out (`..`), replace the root (`/etc/passwd`) or reach into a subfolder (`a/b`).
fn check_component(what: &'static str, name: &str) -> Result<(), StoreError> {
    let reason = if name.is_empty() {
        "is empty"
    } else if name.contains('\0') {
        "contains a NUL byte"
    } else if name.starts_with('/') || name.starts_with('\\') {
        "is an absolute path"
    } else if name.contains('/') || name.contains('\\') {
        "contains a path separator"
    } else if name == "." || name == ".." {
        "is a relative folder reference"
    } else if name.len() > 255 {
        "is longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(invalid(what, name, reason))
}

/// Refuses `path` (a path under `root`) when any existing component of it is a symlink
/// that resolves outside the store, or does not resolve at all (writing through a
/// dangling link would create its target, wherever that is). Links that stay inside
/// the store are fine, and so is a root that is itself a link (a models folder moved
/// to another disk).
pub(super) fn check_contained(root: &Path, path: &Path) -> Result<(), StoreError> {
    let canon_root = match std::fs::canonicalize(root) {
        Ok(r) => r,
        // No root yet: nothing under it exists, so nothing can lead out.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(StoreError::Io { op: "resolve", path: root.to_owned(), source }),
    };
    let Ok(rel) = path.strip_prefix(root) else {
        return Err(escape(root, path, "not under the store root".into()));
    };
    let mut cur = root.to_path_buf();
    for comp in rel.components() {
        cur.push(comp);
        let meta = match std::fs::symlink_metadata(&cur) {
            Ok(m) => m,
            // Nothing deeper exists either.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(StoreError::Io { op: "inspect", path: cur, source }),
        };
        if !meta.file_type().is_symlink() {
            continue;
        }
        match std::fs::canonicalize(&cur) {
            Ok(target) if target.starts_with(&canon_root) => {}
            Ok(target) => {
                return Err(escape(root, &cur, format!("symlink to {}", target.display())))
            }
            Err(e) => {
                return Err(escape(root, &cur, format!("symlink that does not resolve: {e}")))
            }
        }
    }
    Ok(())
}

fn escape(root: &Path, path: &Path, detail: String) -> StoreError {
    StoreError::Escape { path: path.to_owned(), root: root.to_owned(), detail }
}
