//! ggml's RPC server on this build's devices, which `hearth rpc-server` runs from the
//! llama.cpp plugin's companion folder (see the crate's `rpc` module):
//!
//! `hearth-rpc-server --endpoint HOST:PORT [--device NAME,…] [--threads N] [--cache DIR]`

use std::process::ExitCode;

use hearth_llamacpp::{rpc, LlamaCppBackend};

/// The command line, as `hearth rpc-server` passes it.
struct Args {
    endpoint: String,
    device: Option<String>,
    threads: usize,
    /// Where ggml keeps the large tensors clients sent, by hash, so a model loaded
    /// again is read from this machine's disk instead of the network.
    cache: Option<String>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args { endpoint: String::new(), device: None, threads: 0, cache: None };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--endpoint" => parsed.endpoint = value,
            "--device" => parsed.device = Some(value),
            "--cache" => parsed.cache = Some(value),
            "--threads" => {
                parsed.threads = value.parse().map_err(|_| format!("--threads {value:?}"))?;
            }
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if parsed.endpoint.is_empty() {
        return Err("--endpoint HOST:PORT is required".into());
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    let run = || -> Result<(), String> {
        let args = parse(std::env::args().skip(1))?;
        LlamaCppBackend::new().map_err(|error| error.message.to_string())?;
        let mut devices =
            rpc::server_devices(args.device.as_deref()).map_err(|e| e.message.to_string())?;
        let threads = if args.threads == 0 { num_cpus::get_physical() } else { args.threads };
        rpc::serve(&args.endpoint, args.cache.as_deref(), &mut devices, threads)
            .map_err(|e| e.message.to_string())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("hearth-rpc-server: {why}");
            ExitCode::FAILURE
        }
    }
}
