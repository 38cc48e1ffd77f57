//! `hearth rpc-server`: ggml's RPC server, from the llama.cpp plugin's own build, for
//! another machine's `--rpc`. The program lives in the plugin's companion folder
//! (setup installs it there with the modules it serves from), so it always speaks the
//! protocol of the llama.cpp that clients of the same release run; this verb finds it
//! and becomes it.

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use super::GlobalArgs;
use crate::catalog::Isolation;

/// ggml's default RPC port (llama.cpp's `rpc-server`).
pub const DEFAULT_RPC_PORT: u16 = 50052;

/// The program's name in the companion folder.
const PROGRAM: &str = "hearth-rpc-server";

#[derive(Debug, Args)]
pub struct RpcServerArgs {
    /// The address to listen on: loopback unless another is asked for, since the
    /// protocol has no authentication.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: Ipv4Addr,
    #[arg(long, default_value_t = DEFAULT_RPC_PORT)]
    pub port: u16,
    /// Keep the large tensors clients send on this machine's disk, by hash (ggml's
    /// `rpc-server -c`), so a model loaded again is not sent over the network again.
    #[arg(long)]
    pub cache: bool,
    /// Where `--cache` keeps them (implies it; default: `$HEARTH_HOME/rpc-cache`).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// The llama.cpp plugin's RPC server program in `plugins`.
fn program(plugins: &std::path::Path) -> PathBuf {
    plugins.join("libhearth_llamacpp").join(PROGRAM)
}

/// Why listening on `host` deserves a warning, if it does.
fn exposure(host: Ipv4Addr) -> Option<String> {
    (!host.is_loopback()).then(|| {
        format!(
            "warning: ggml's RPC protocol has no authentication and no encryption: anyone who \
             can reach {host} can use this machine's devices, read what they hold and run \
             computations on them. Serve it on a network you trust."
        )
    })
}

/// Become the RPC server; returns only when it cannot start.
pub fn run(global: &GlobalArgs, args: &RpcServerArgs) -> anyhow::Result<()> {
    let plugins = global.config(Isolation::InProcess).plugins;
    let program = program(&plugins);
    if !program.is_file() {
        bail!(
            "no llama.cpp RPC server at {}: it comes with the llama.cpp plugin \
             (scripts/setup.sh installs it)",
            program.display()
        );
    }
    if let Some(warning) = exposure(args.host) {
        eprintln!("{warning}");
    }
    let mut command = std::process::Command::new(&program);
    command.arg("--endpoint").arg(format!("{}:{}", args.host, args.port));
    if let Some(device) = global.device.as_deref().filter(|device| !device.is_empty()) {
        command.arg("--device").arg(device);
    }
    if args.cache || args.cache_dir.is_some() {
        let home = global.home.clone().unwrap_or_else(crate::service::default_home);
        let cache = args.cache_dir.clone().unwrap_or_else(|| home.join("rpc-cache"));
        std::fs::create_dir_all(&cache)
            .with_context(|| format!("cannot make the tensor cache {}", cache.display()))?;
        command.arg("--cache").arg(cache);
    }
    if global.threads > 0 {
        command.arg("--threads").arg(global.threads.to_string());
    }
    // It serves clients, never is one.
    command.env_remove(super::RPC_ENV);
    Err(command.exec()).with_context(|| format!("cannot start {}", program.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_address_other_than_loopback_is_warned_about() {
        assert_eq!(exposure(Ipv4Addr::LOCALHOST), None);
        let warning = exposure(Ipv4Addr::UNSPECIFIED).unwrap();
        assert!(warning.contains("no authentication"), "{warning}");
        assert!(exposure(Ipv4Addr::new(192, 168, 1, 20)).is_some());
    }

    #[test]
    fn the_program_is_looked_for_in_the_llama_cpp_plugins_companion_folder() {
        assert_eq!(
            program(std::path::Path::new("/h/plugins")),
            PathBuf::from("/h/plugins/libhearth_llamacpp/hearth-rpc-server")
        );
    }
}
