//! The `hearth` command line: argument parsing and one function per verb. The binary's
//! `main` only calls [`main`].

mod bench;
mod listing;
mod pull;
mod remote;
mod run;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::api::ApiConfig;
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
    /// A running server, for `ps` and `stop`.
    #[arg(long, global = true, env = "HEARTH_SERVER", default_value_t = format!("http://127.0.0.1:{DEFAULT_PORT}"))]
    pub server: String,
}

impl GlobalArgs {
    pub fn config(&self) -> HearthConfig {
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
        config
    }

    pub fn open(&self) -> anyhow::Result<Arc<Hearth>> {
        let config = self.config();
        let catalog = config.catalog.describe();
        let hearth = Hearth::open(config).with_context(|| format!("cannot use the catalog {catalog}"))?;
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
        /// Require `Authorization: Bearer KEY` on every request but /health.
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
    /// Download a catalog model's or adapter's files into the store.
    Pull {
        /// A model id or adapter name from the catalog.
        name: String,
        /// Only the files this backend loads.
        #[arg(long)]
        backend: Option<String>,
    },
}

/// Parse the arguments and run the verb.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(matches!(cli.command, Command::Serve { .. }));
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(dispatch(cli))
}

fn init_logging(serving: bool) {
    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HEARTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let global = &cli.global;
    match cli.command {
        Command::Serve { host, port, api_key, cors_origins, max_queue } => {
            let hearth = global.open()?;
            // Serving goes on without live reload rather than not at all.
            let _watching = hearth
                .watch()
                .inspect_err(|error| tracing::warn!(%error, "cannot watch the plugins folder and catalog; changes need a restart"))
                .ok();
            let config = ApiConfig { api_key, cors_origins, max_queue_per_model: max_queue, ..ApiConfig::for_bind(host) };
            crate::api::serve(hearth, SocketAddr::new(host, port), config).await.context("the server stopped")
        }
        Command::Run(args) => run::run(global.open()?, args).await,
        Command::Profile { json } => listing::profile(&*global.open()?, json),
        Command::Models { json } => listing::models(&*global.open()?, json),
        Command::Plugins { json } => listing::plugins(&*global.open()?, json),
        Command::Ps { json } => remote::ps(&global.server, json).await,
        Command::Stop { model } => remote::stop(&global.server, &model).await,
        Command::Bench(args) => bench::bench(&*global.open()?, args).await,
        Command::Pull { name, backend } => pull::pull(&*global.open()?, &name, backend.as_deref()).await,
    }
}
