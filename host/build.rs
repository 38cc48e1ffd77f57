//! Puts `@huggingface/jinja`'s browser build (installed by `scripts/setup.sh`, pinned,
//! under the cache) where `src/api/web.rs` embeds it: the web app's in-page engine
//! renders chat templates with it. Without it the embedded module is one that throws,
//! naming what to install, so the page says why browser mode cannot render a chat.

use std::path::PathBuf;

/// The pinned package's folder under the cache; `scripts/env.sh` names it too.
const JINJA_FOLDER: &str = "node/huggingface-jinja-0.5.13";

fn main() {
    println!("cargo:rerun-if-env-changed=HEARTH_CACHE");
    println!("cargo:rerun-if-env-changed=HEARTH_JINJA_NODE");
    let cache = std::env::var_os("HEARTH_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/hearth")
    });
    let folder = std::env::var_os("HEARTH_JINJA_NODE")
        .map_or_else(|| cache.join(JINJA_FOLDER), PathBuf::from);
    let source = folder.join("node_modules/@huggingface/jinja/dist/index.js");
    println!("cargo:rerun-if-changed={}", source.display());
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("jinja.js");
    let module = std::fs::read(&source).unwrap_or_else(|_| {
        format!(
            "throw new Error('@huggingface/jinja was not installed when this hearth was built \
             (expected at {}): run scripts/setup.sh and rebuild');\n",
            source.display().to_string().replace('\'', "")
        )
        .into_bytes()
    });
    std::fs::write(out, module).expect("write jinja.js");
}
