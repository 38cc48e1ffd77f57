//! The web app in a real browser: headless Debian `chromium`, driven by the npm package
//! `playwright-core` (pinned, installed by `scripts/setup.sh` under the cache,
//! `HEARTH_BROWSER_NODE`), opens the page a real `hearth serve` serves with the real
//! llama.cpp plugin and SmolLM2, and chats with it as a person would: `web_app.mjs`
//! prints each check it passes and exits non-zero at the first that fails.
//!
//! Under CI (`CI=true`) a missing browser or package fails the test; elsewhere the test
//! is skipped with a line saying what to install.

#[path = "../support/mod.rs"]
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use support::server::Server;
use support::{built_binary, copy_companion, installed_plugins, test_models_dir};

/// The pinned `playwright-core` that setup installs; `scripts/env.sh` names its folder.
const PLAYWRIGHT_FOLDER: &str = "node/playwright-core-1.65.2";

/// What driving a browser takes.
struct Browser {
    node: PathBuf,
    chromium: PathBuf,
    /// The folder whose `node_modules/` holds `playwright-core`.
    packages: PathBuf,
}

fn cache_dir() -> PathBuf {
    std::env::var_os("HEARTH_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/hearth")
    })
}

/// The browser, Node and playwright-core where setup put them; `None` (after saying
/// what is missing) outside CI, a failure under it.
fn browser() -> Option<Browser> {
    let env_path =
        |name: &str, default: PathBuf| std::env::var_os(name).map_or(default, PathBuf::from);
    let browser = Browser {
        node: env_path("NODE", PathBuf::from("/usr/bin/node")),
        chromium: env_path("CHROMIUM", PathBuf::from("/usr/bin/chromium")),
        packages: env_path("HEARTH_BROWSER_NODE", cache_dir().join(PLAYWRIGHT_FOLDER)),
    };
    let missing: Vec<String> = [
        (&browser.node, "node"),
        (&browser.chromium, "chromium"),
        (&browser.packages.join(".complete"), "playwright-core"),
    ]
    .into_iter()
    .filter(|(path, _)| !path.is_file())
    .map(|(path, what)| format!("{what} ({})", path.display()))
    .collect();
    if missing.is_empty() {
        return Some(browser);
    }
    let message = format!("missing {} (run scripts/setup.sh)", missing.join(", "));
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
    // Past the test harness's capture, so the run lists what it did not test.
    let _ = writeln!(std::io::stderr(), "skipped the browser test: {message}");
    None
}

/// `hearth serve` with the installed llama.cpp plugin alone and the test models.
fn serve(plugins: &Path) -> Server {
    let name = "hearth_llamacpp";
    let file = format!("lib{name}.so");
    std::fs::copy(installed_plugins().join(&file), plugins.join(&file)).unwrap();
    copy_companion(name, plugins);
    let mut command = Command::new(built_binary());
    command
        .env("HEARTH_HOME", plugins.join("home"))
        .env("HEARTH_PLUGINS", plugins)
        .env("HEARTH_MODELS", test_models_dir())
        // One thread: llama.cpp's threads wait for each other at every step, and with
        // the browser busy on the same cores a second thread makes generation stall.
        .env("HEARTH_THREADS", "1")
        .env_remove("HEARTH_CATALOG");
    Server::spawn(command)
}

#[test]
fn the_web_app_fills_its_picker_streams_an_answer_stops_one_and_shows_the_loaded_model() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let Some(browser) = browser() else { return };
    let plugins = tempfile::tempdir().unwrap();
    let server = serve(plugins.path());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/browser/web_app.mjs");
    let started = Instant::now();
    let output = Command::new(&browser.node)
        .arg(&script)
        .env("HEARTH_URL", &server.base)
        .env("HEARTH_BROWSER_NODE", &browser.packages)
        .env("CHROMIUM", &browser.chromium)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}the browser took {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        output.status.success(),
        "{} failed ({}):\n{stdout}\n{}\nserver log:\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr),
        server.log()
    );
}
