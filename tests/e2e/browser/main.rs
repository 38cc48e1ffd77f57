//! The web app in a real browser: headless Debian `chromium`, driven by the npm package
//! `playwright-core` (pinned, installed by `scripts/setup.sh` under the cache,
//! `HEARTH_BROWSER_NODE`), opens the page a real `hearth serve` serves and chats as a
//! person would. In server mode (`web_app.mjs`) the real llama.cpp plugin answers with
//! SmolLM2; in browser mode (`browser_mode.mjs`) the page's own engine does, on
//! Chromium's WebGPU (SwiftShader), and its greedy tokens are checked against this
//! build's native WebGPU plugin. A static export of the app (`static_export.mjs`),
//! served by a plain web server under a sub-path with the model on another origin, gives
//! the same tokens with no hearth behind the page. Each script prints each check it
//! passes and exits non-zero at the first that fails.
//!
//! Under CI (`CI=true`) a missing browser or package fails the test; elsewhere the test
//! is skipped with a line saying what to install.

mod static_server;
#[path = "../support/mod.rs"]
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use static_server::StaticServer;
use support::server::Server;
use support::{
    built_binary, copy_built_plugin, copy_companion, installed_plugins, test_models_dir,
};

/// One browser at a time: each keeps the machine's cores busy, and the scripts time
/// their steps.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

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

/// Run the script `name` in this folder against `server`, with `env` added to its
/// environment; fails with its output and the server's log when a check fails.
fn run_script(browser: &Browser, server: &Server, name: &str, env: &[(&str, &str)]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/browser").join(name);
    let started = Instant::now();
    let output = Command::new(&browser.node)
        .arg(&script)
        .env("HEARTH_URL", &server.base)
        .env("HEARTH_BROWSER_NODE", &browser.packages)
        .env("CHROMIUM", &browser.chromium)
        .envs(env.iter().copied())
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

#[test]
fn the_web_app_fills_its_picker_streams_an_answer_stops_one_and_shows_the_loaded_model() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let Some(browser) = browser() else { return };
    let _one = ONE_BROWSER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let plugins = tempfile::tempdir().unwrap();
    let server = serve(plugins.path());
    run_script(&browser, &server, "web_app.mjs", &[]);
}

/// The catalog with a WebGPU tier table whose tier 2 is a model the in-page engine
/// refuses (all-MiniLM-L6-v2, a BERT encoder) above SmolLM2 in tier 1.
fn catalog_with_a_failing_tier(into: &Path) -> PathBuf {
    let tiers =
        "tiers = [\n  { tier = 1, models = [\"smollm2-135m\"], memory_required = \"4 GB\" },\n  \
                 { tier = 2, models = [\"all-minilm-l6-v2\"], memory_required = \"8 GB\" },\n";
    catalog_with_webgpu_tiers(into, tiers)
}

/// The catalog with its WebGPU tier table's rows replaced by `tiers` (`tiers = [` and
/// the rows, the closing bracket left).
fn catalog_with_webgpu_tiers(into: &Path, tiers: &str) -> PathBuf {
    let catalog =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog.toml"))
            .expect("read catalog.toml");
    let start = catalog.find("backend = \"webgpu\"").expect("the catalog has a WebGPU tier table");
    let table_start = catalog[start..].find("tiers = [").unwrap() + start;
    // The table's closing bracket, on a line of its own.
    let table_end = catalog[table_start..].find("\n]\n").unwrap() + table_start + 1;
    let edited = format!("{}{tiers}{}", &catalog[..table_start], &catalog[table_end..]);
    let path = into.join("catalog.toml");
    std::fs::write(&path, edited).unwrap();
    path
}

/// `hearth serve` with the built native WebGPU plugin on its software kernels (as the
/// page picks them on SwiftShader) and its KV cache in f32 (as the page keeps it), for
/// the greedy tokens the page must match.
fn serve_native_webgpu(plugins: &Path, catalog: &Path) -> Server {
    copy_built_plugin("hearth_webgpu", plugins);
    let mut command = Command::new(built_binary());
    command
        .env("HEARTH_HOME", plugins.join("home"))
        .env("HEARTH_PLUGINS", plugins)
        .env("HEARTH_MODELS", test_models_dir())
        .env("HEARTH_CATALOG", catalog)
        .env("HEARTH_WEBGPU_KERNELS", "software")
        .env("HEARTH_WEBGPU_KV_CACHE", "f32");
    Server::spawn(command)
}

#[test]
fn in_browser_mode_smollm2_answers_on_the_pages_webgpu_with_the_native_plugins_greedy_tokens() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let Some(browser) = browser() else { return };
    let _one = ONE_BROWSER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let plugins = tempfile::tempdir().unwrap();
    let catalog = catalog_with_a_failing_tier(plugins.path());
    let server = serve_native_webgpu(plugins.path(), &catalog);
    run_script(&browser, &server, "browser_mode.mjs", &[]);
}

#[test]
fn a_static_export_on_a_plain_web_server_runs_smollm2_in_the_page_with_the_native_greedy_tokens() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let Some(browser) = browser() else { return };
    let _one = ONE_BROWSER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let work = tempfile::tempdir().unwrap();
    let tiers =
        "tiers = [\n  { tier = 1, models = [\"smollm2-135m\"], memory_required = \"4 GB\" },\n";
    let catalog = catalog_with_webgpu_tiers(work.path(), tiers);
    // Idle timeouts short enough for the page to free and reload the model in the test.
    let text = std::fs::read_to_string(&catalog).unwrap();
    let short = text
        .replace("soft_timeout = \"2m\"", "soft_timeout = \"2s\"")
        .replace("hard_timeout = \"5m\"", "hard_timeout = \"4s\"");
    assert_ne!(short, text, "the catalog's idle timeouts are where the test expects them");
    std::fs::write(&catalog, short).unwrap();
    // The model on another origin than the page, as a model host would be.
    let models = StaticServer::start(&test_models_dir().join("smollm2-135m"), "/models/", true);
    let export = work.path().join("export");
    let output = Command::new(built_binary())
        .arg("export-web")
        .arg(&export)
        .args(["--models-url", &models.url])
        .env("HEARTH_CATALOG", &catalog)
        .env("HEARTH_HOME", work.path().join("home"))
        .output()
        .expect("run hearth export-web");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("smollm2-135m"), "{stdout}");
    let site = StaticServer::start(&export, "/some/dir/", false);
    let plugins = work.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let native = serve_native_webgpu(&plugins, &catalog);
    let env = [("EXPORT_URL", site.url.as_str()), ("MODELS_URL", models.url.as_str())];
    run_script(&browser, &native, "static_export.mjs", &env);
}
