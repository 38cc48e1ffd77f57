//! Other machines' devices on ggml's RPC protocol: two `hearth rpc-server`s on loopback
//! stand in for two machines, and `--rpc` splits SmolLM2 across them, or puts it on the
//! main one with `--split-mode none`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{stdout, RealHost, PARIS_QUESTION};
use crate::support::server::Server;

/// A `hearth rpc-server` on a free loopback port, stopped when dropped.
struct RpcServer {
    child: Child,
    endpoint: String,
}

impl RpcServer {
    fn start(host: &RealHost) -> Self {
        Self::start_with(host, &[])
    }

    /// Started with these extra arguments.
    fn start_with(host: &RealHost, extra: &[&str]) -> Self {
        let port = free_port();
        let port_text = port.to_string();
        let mut args = vec!["rpc-server", "--port", &port_text];
        args.extend_from_slice(extra);
        let child = host
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hearth rpc-server");
        let mut server = Self { child, endpoint: format!("127.0.0.1:{port}") };
        let started = Instant::now();
        // A connection closed unused is one the server drops before waiting for the next.
        while TcpStream::connect(&server.endpoint).is_err() {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("hearth rpc-server ended ({status}):\n{}", server.output());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{} never listened",
                server.endpoint
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// What it printed, once it has been stopped.
    fn output(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut text = String::new();
        self.child.stdout.take().unwrap().read_to_string(&mut text).unwrap();
        self.child.stderr.take().unwrap().read_to_string(&mut text).unwrap();
        text
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `hearth run` of the Paris question at temperature 0, with these extra arguments.
fn paris(host: &RealHost, extra: &[&str]) -> Output {
    let mut args =
        vec!["run", "smollm2-135m", PARIS_QUESTION, "--temperature", "0", "--max-tokens", "24"];
    args.extend_from_slice(extra);
    host.command(&args).output().expect("run hearth")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn smollm2_split_across_two_rpc_servers_gives_the_local_greedy_answer() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::with_installed_plugins(&["hearth_llamacpp"]);
    let local = paris(&host, &[]);
    assert!(local.status.success(), "{}", stderr(&local));
    assert!(stderr(&local).contains("(100% CPU)"), "{}", stderr(&local));

    let mut servers = [RpcServer::start(&host), RpcServer::start(&host)];
    let both = format!("{},{}", servers[0].endpoint, servers[1].endpoint);
    let listing = stdout(&host.cli(&["plugins", "--rpc", &both]));
    for (index, server) in servers.iter().enumerate() {
        let listed = format!("RPC{index} = {} (remote, on ggml's RPC)", server.endpoint);
        assert!(listing.contains(&listed), "{listed} not in:\n{listing}");
    }
    let split = paris(&host, &["--rpc", &both]);
    assert!(split.status.success(), "{}", stderr(&split));
    assert_eq!(stdout(&split), stdout(&local), "{}", stderr(&split));
    // The layers went to the servers: llama.cpp counts their devices as GPUs.
    assert!(stderr(&split).contains("GPU)"), "{}", stderr(&split));
    for server in &mut servers {
        let said = server.output();
        assert!(said.contains("Accepted client connection"), "{}: {said}", server.endpoint);
    }
}

#[test]
fn split_mode_none_runs_smollm2_on_the_main_rpc_server_alone_and_row_is_refused_where_no_device_divides_rows(
) {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::with_installed_plugins(&["hearth_llamacpp"]);
    let local = paris(&host, &[]);
    assert!(local.status.success(), "{}", stderr(&local));
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    let servers =
        [RpcServer::start(&host), RpcServer::start_with(&host, &["--cache-dir", cache_dir])];
    let both = format!("{},{}", servers[0].endpoint, servers[1].endpoint);

    let on_main = paris(&host, &["--rpc", &both, "--split-mode", "none", "--main-device", "RPC1"]);
    assert!(on_main.status.success(), "{}", stderr(&on_main));
    assert_eq!(stdout(&on_main), stdout(&local), "{}", stderr(&on_main));
    assert!(stderr(&on_main).contains("GPU)"), "{}", stderr(&on_main));
    // The main server kept the large tensors it was sent (the token embeddings, 30 MB),
    // by hash, for the next load.
    let cached = std::fs::read_dir(cache.path()).unwrap().count();
    assert!(cached > 0, "nothing in the tensor cache of {}", servers[1].endpoint);

    // ggml's RPC module has no split buffers, so llama.cpp would refuse the load; the
    // plugin says why before it tries.
    let by_row = paris(&host, &["--rpc", &both, "--split-mode", "row"]);
    assert_eq!(by_row.status.code(), Some(1), "{}", stderr(&by_row));
    let said = "split mode `row` needs devices whose ggml module has split buffers; RPC0 (RPC) has none in this llama.cpp build";
    assert!(stderr(&by_row).contains(said), "{}", stderr(&by_row));

    let elsewhere =
        paris(&host, &["--rpc", &both, "--split-mode", "none", "--main-device", "CUDA3"]);
    assert_eq!(elsewhere.status.code(), Some(1), "{}", stderr(&elsewhere));
    let said = "the main device `CUDA3` is not one the model runs on (RPC0, RPC1)";
    assert!(stderr(&elsewhere).contains(said), "{}", stderr(&elsewhere));
}

#[test]
fn an_unreachable_rpc_server_is_refused_by_name_and_the_process_ends_normally() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::with_installed_plugins(&["hearth_llamacpp"]);
    let closed = format!("127.0.0.1:{}", free_port());
    let output = paris(&host, &["--rpc", &closed]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let said = format!("the RPC server {closed} is unreachable");
    assert!(stderr(&output).contains(&said), "{}", stderr(&output));
}

#[test]
fn an_rpc_server_of_another_protocol_version_is_refused_with_both_versions() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::with_installed_plugins(&["hearth_llamacpp"]);
    // Answers the greeting as a server of protocol 6.1.0 would.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut greeting = [0u8; 1 + 8 + 24];
            if stream.read_exact(&mut greeting).is_ok() {
                let mut answer = 28u64.to_le_bytes().to_vec();
                answer.extend_from_slice(&[6, 1, 0, 0]);
                answer.extend_from_slice(&[0; 24]);
                let _ = stream.write_all(&answer);
            }
        }
    });
    let output = paris(&host, &["--rpc", &endpoint]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let said = format!("the RPC server {endpoint} speaks ggml's RPC protocol 6.1.0");
    assert!(stderr(&output).contains(&said), "{}", stderr(&output));
    assert!(stderr(&output).contains("this llama.cpp build speaks"), "{}", stderr(&output));
}

#[tokio::test]
async fn a_server_told_of_an_unreachable_rpc_server_answers_each_request_with_why_and_keeps_serving(
) {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::with_installed_plugins(&["hearth_llamacpp"]);
    let closed = format!("127.0.0.1:{}", free_port());
    let server = Server::spawn(host.command(&["--rpc", &closed]));
    let chat = serde_json::json!({
        "model": "smollm2-135m",
        "messages": [{ "role": "user", "content": "Hi" }],
        "max_tokens": 4,
    });
    for _ in 0..2 {
        let (status, answer) = server.post("/v1/chat/completions", &chat).await;
        assert!(!(200..300).contains(&status), "{status}: {answer}");
        let said = format!("the RPC server {closed} is unreachable");
        assert!(answer.to_string().contains(&said), "{answer}");
    }
    server.get("/health").await;
}

#[test]
fn the_catalogs_rpc_servers_are_joined_unless_the_command_line_names_others_or_none() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let host = RealHost::with_installed_plugins(&["hearth_llamacpp"]);
    let closed = format!("127.0.0.1:{}", free_port());
    let catalog = host.plugins.path().join("catalog.toml");
    let shipped = include_str!("../../../catalog.toml");
    std::fs::write(&catalog, format!("{shipped}\n[rpc]\nservers = [\"{closed}\"]\n")).unwrap();
    let listing = |extra: &[&str]| {
        let mut args = vec!["plugins"];
        args.extend_from_slice(extra);
        let mut command = host.command(&args);
        command.env("HEARTH_CATALOG", &catalog);
        stdout(&command.output().expect("run hearth"))
    };
    let unreachable = format!("the RPC server {closed} is unreachable");
    let from_catalog = listing(&[]);
    assert!(from_catalog.contains(&unreachable), "{from_catalog}");
    let none = listing(&["--rpc", ""]);
    assert!(!none.contains("RPC server"), "{none}");
    let server = RpcServer::start(&host);
    let other = listing(&["--rpc", &server.endpoint]);
    assert!(other.contains(&format!("RPC0 = {} (remote", server.endpoint)), "{other}");
    assert!(!other.contains(&unreachable), "{other}");
}
