//! Other machines' devices, on ggml's RPC protocol: the client side of `--rpc` and the
//! server that `hearth rpc-server` runs.
//!
//! **Client.** `HEARTH_RPC` (which `hearth --rpc host:port,…` sets) names servers whose
//! devices join this process's own: each is added to ggml's device list (as
//! llama-server's `--rpc` does), appears in the probe as `RPC0`, `RPC1`, … with its
//! memory, and takes a share of the layers like a local GPU. ggml aborts the whole
//! process on a server it cannot reach or whose protocol differs, so each server is
//! first greeted here, with a timeout: an unreachable, silent or mismatched one is
//! refused with its reason and nothing is handed to ggml. A server serves one client at
//! a time, so while a model of this process holds the connection no greeting is tried
//! (it would wait behind that client); and a server that dies under a loaded model still
//! ends the process, in ggml, which is why `serve` runs models in worker processes.
//!
//! **Server.** [`serve`] runs ggml's own RPC server (`ggml_backend_rpc_start_server`
//! in the RPC module) on this build's devices: every GPU by default, else the CPU, or
//! the devices named. The protocol has no authentication and executes what a client
//! sends; `hearth rpc-server` says so when asked for an address other than loopback.

use std::ffi::{c_char, CString};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hearth_sdk::{DeviceKind, PluginError};
use llama_cpp_sys_2::{ggml_backend_dev_t, ggml_backend_reg_t};

/// The environment variable naming the RPC servers, `host:port,…`.
pub const RPC_ENV: &str = "HEARTH_RPC";

/// The version of ggml's RPC protocol this build speaks (`RPC_PROTO_*_VERSION` in
/// `ggml-rpc.h`): a server must have the same major and no newer minor.
pub const PROTOCOL: (u8, u8) = (7, 0);

/// How long a server has to answer the greeting.
const GREETING_TIMEOUT: Duration = Duration::from_secs(5);

/// ggml's `RPC_CMD_HELLO`, the first command of every connection.
const HELLO: u8 = 14;
/// The size of the transport capabilities in the greeting (`RPC_CONN_CAPS_SIZE`); all
/// zero asks for plain TCP.
const CAPS_SIZE: usize = 24;

/// Models of this process that hold RPC connections (see the module's documentation).
static MODELS_ON_RPC: AtomicUsize = AtomicUsize::new(0);

/// The servers ggml has been given in this process.
static ADDED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The servers `HEARTH_RPC` names; empty when it is unset or empty.
pub fn servers_from_env() -> Result<Vec<String>, PluginError> {
    match std::env::var(RPC_ENV) {
        Err(_) => Ok(Vec::new()),
        Ok(text) => parse_servers(&text)
            .map_err(|why| PluginError::invalid_request(format!("{RPC_ENV}={text:?}: {why}"))),
    }
}

/// `host:port,host:port` as a list; each must name a port.
pub fn parse_servers(text: &str) -> Result<Vec<String>, String> {
    let mut servers = Vec::new();
    for server in text.split(',').map(str::trim).filter(|server| !server.is_empty()) {
        let port = server
            .rsplit_once(':')
            .filter(|(host, _)| !host.is_empty())
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .filter(|port| *port != 0);
        if port.is_none() {
            return Err(format!("`{server}` is not host:port"));
        }
        if !servers.iter().any(|known| known == server) {
            servers.push(server.to_string());
        }
    }
    Ok(servers)
}

/// What a server said to the greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerVersion {
    pub major: u8,
    pub minor: u8,
    pub patch: u8,
}

/// Greet the server at `endpoint` as ggml's client does, and read its protocol version.
pub fn greet(endpoint: &str, timeout: Duration) -> Result<ServerVersion, String> {
    let addresses: Vec<SocketAddr> = endpoint
        .to_socket_addrs()
        .map_err(|error| format!("the RPC server {endpoint} is unknown: {error}"))?
        .collect();
    let mut last_error = None;
    let mut stream = None;
    for address in addresses {
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(connected) => {
                stream = Some(connected);
                break;
            }
            Err(error) => last_error = Some(error),
        }
    }
    let mut stream = stream.ok_or_else(|| {
        let why = last_error.map_or_else(|| "no address".to_string(), |e| e.to_string());
        format!("the RPC server {endpoint} is unreachable: {why}")
    })?;
    let io = |error: std::io::Error| {
        if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
            format!(
                "the RPC server {endpoint} did not answer within {}s (it serves one client at \
                 a time: is another one using it?)",
                timeout.as_secs()
            )
        } else {
            format!(
                "the RPC server {endpoint} closed the connection during the greeting ({error}): \
                 it speaks another version of ggml's RPC protocol than {}.{}, or is no RPC \
                 server",
                PROTOCOL.0, PROTOCOL.1
            )
        }
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut request = vec![HELLO];
    request.extend_from_slice(&(CAPS_SIZE as u64).to_le_bytes());
    request.extend_from_slice(&[0; CAPS_SIZE]);
    stream.write_all(&request).map_err(io)?;
    let mut size = [0u8; 8];
    stream.read_exact(&mut size).map_err(io)?;
    let size = u64::from_le_bytes(size);
    if !(3..=1024).contains(&size) {
        return Err(format!(
            "the RPC server {endpoint} answered the greeting with {size} bytes: it speaks \
             another version of ggml's RPC protocol than {}.{}, or is no RPC server",
            PROTOCOL.0, PROTOCOL.1
        ));
    }
    let mut answer = vec![0u8; size as usize];
    stream.read_exact(&mut answer).map_err(io)?;
    Ok(ServerVersion { major: answer[0], minor: answer[1], patch: answer[2] })
}

/// Why a server of `version` cannot serve this build; None when it can.
pub fn mismatch(endpoint: &str, version: ServerVersion) -> Option<String> {
    let ServerVersion { major, minor, patch } = version;
    (major != PROTOCOL.0 || minor > PROTOCOL.1).then(|| {
        format!(
            "the RPC server {endpoint} speaks ggml's RPC protocol {major}.{minor}.{patch}, and \
             this llama.cpp build speaks {}.{}: run `hearth rpc-server` of the same hearth \
             release there",
            PROTOCOL.0, PROTOCOL.1
        )
    })
}

/// ggml's RPC module, registered by `backends::load` when it was installed.
fn rpc_module() -> Result<ggml_backend_reg_t, PluginError> {
    // SAFETY: a valid C string; ggml looks it up in its registry.
    let reg = unsafe { llama_cpp_sys_2::ggml_backend_reg_by_name(c"RPC".as_ptr()) };
    if reg.is_null() {
        return Err(PluginError::unsupported(
            "ggml's RPC module (libggml-rpc.so) is not in the llama.cpp plugin's folder; \
             scripts/setup.sh builds and installs it",
        ));
    }
    Ok(reg)
}

/// A function the RPC module exports by name.
fn rpc_function(name: &std::ffi::CStr) -> Result<*mut std::ffi::c_void, PluginError> {
    let reg = rpc_module()?;
    // SAFETY: a registered module and a valid C string.
    let function =
        unsafe { llama_cpp_sys_2::ggml_backend_reg_get_proc_address(reg, name.as_ptr()) };
    if function.is_null() {
        return Err(PluginError::internal(format!(
            "ggml's RPC module has no {}",
            name.to_string_lossy()
        )));
    }
    Ok(function)
}

/// Add the servers `HEARTH_RPC` names to ggml's devices, each greeted first (see the
/// module's documentation). A server already added is greeted again while no model of
/// this process holds it, so one that went away since is refused, not aborted on.
pub fn join_from_env() -> Result<(), PluginError> {
    let servers = servers_from_env()?;
    if servers.is_empty() {
        return Ok(());
    }
    let mut added = ADDED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let held = MODELS_ON_RPC.load(Ordering::SeqCst) > 0;
    for endpoint in &servers {
        if held && added.contains(endpoint) {
            continue;
        }
        let version = greet(endpoint, GREETING_TIMEOUT).map_err(PluginError::unsupported)?;
        if let Some(why) = mismatch(endpoint, version) {
            return Err(PluginError::unsupported(why));
        }
        if added.contains(endpoint) {
            continue;
        }
        let add_server = rpc_function(c"ggml_backend_rpc_add_server")?;
        // SAFETY: the module exports `ggml_backend_reg_t ggml_backend_rpc_add_server(const
        // char *)` under this name.
        let add_server: extern "C" fn(*const c_char) -> ggml_backend_reg_t =
            unsafe { std::mem::transmute(add_server) };
        let c_endpoint = CString::new(endpoint.as_str())
            .map_err(|_| PluginError::invalid_request(format!("{endpoint:?} has a NUL byte")))?;
        let reg = add_server(c_endpoint.as_ptr());
        if reg.is_null() {
            return Err(PluginError::unsupported(format!(
                "the RPC server {endpoint} offers no device"
            )));
        }
        // SAFETY: a registry entry ggml made for this server; it lives for the process.
        unsafe { llama_cpp_sys_2::ggml_backend_register(reg) };
        added.push(endpoint.clone());
    }
    Ok(())
}

/// Held by a model whose layers are on RPC servers, for as long as it is loaded.
pub struct RpcHold;

impl RpcHold {
    /// Counted from now until dropped.
    pub fn acquire() -> Self {
        MODELS_ON_RPC.fetch_add(1, Ordering::SeqCst);
        Self
    }
}

impl Drop for RpcHold {
    fn drop(&mut self) {
        MODELS_ON_RPC.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether a device is one of an RPC server's (ggml's RPC module names them `RPC<n>`).
pub fn is_remote(backend_name: &str) -> bool {
    backend_name == "RPC"
}

/// The same for a device handle, asked of ggml directly: listing the devices again
/// would ask every RPC server for its memory.
pub(crate) fn is_remote_device(device: ggml_backend_dev_t) -> bool {
    // SAFETY: a device ggml listed; its module's registry entry and name live for the
    // process.
    let name = unsafe {
        let reg = llama_cpp_sys_2::ggml_backend_dev_backend_reg(device);
        std::ffi::CStr::from_ptr(llama_cpp_sys_2::ggml_backend_reg_name(reg))
    };
    name.to_str().is_ok_and(is_remote)
}

/// The devices a server offers: those named (as `hearth plugins` lists them, the CPU
/// included), else every GPU, else the CPU.
pub fn server_devices(wanted: Option<&str>) -> Result<Vec<ggml_backend_dev_t>, PluginError> {
    let devices = crate::devices();
    let handle = |index: usize| {
        // SAFETY: the index comes from the current device list.
        unsafe { llama_cpp_sys_2::ggml_backend_dev_get(index) }
    };
    let Some(wanted) = wanted.filter(|wanted| !wanted.trim().is_empty()) else {
        let gpus: Vec<_> = devices
            .iter()
            .filter(|device| device.kind.is_accelerator() && device.same_as.is_none())
            .filter(|device| !is_remote(&device.device.backend))
            .map(|device| handle(device.device.index))
            .collect();
        if !gpus.is_empty() {
            return Ok(gpus);
        }
        return devices
            .iter()
            .find(|device| device.kind == DeviceKind::Cpu)
            .map(|device| vec![handle(device.device.index)])
            .ok_or_else(|| PluginError::internal("llama.cpp lists no CPU device"));
    };
    wanted
        .split(',')
        .map(str::trim)
        .map(|name| {
            crate::named_device(&devices, name)
                .filter(|device| !is_remote(&device.device.backend))
                .map(|device| handle(device.device.index))
                .ok_or_else(|| crate::no_such_device(&devices, name, ""))
        })
        .collect()
}

/// Run ggml's RPC server on `endpoint` (`host:port`) with `devices`, `threads` CPU
/// threads, and the tensors clients send cached by hash in `cache` when given; returns
/// only when it cannot start (its reason is on stderr, from ggml).
pub fn serve(
    endpoint: &str,
    cache: Option<&str>,
    devices: &mut [ggml_backend_dev_t],
    threads: usize,
) -> Result<(), PluginError> {
    let start = rpc_function(c"ggml_backend_rpc_start_server")?;
    // SAFETY: the module exports `void ggml_backend_rpc_start_server(const char *endpoint,
    // const char *cache_dir, size_t n_threads, size_t n_devices, ggml_backend_dev_t
    // *devices)` under this name.
    let start: extern "C" fn(*const c_char, *const c_char, usize, usize, *mut ggml_backend_dev_t) =
        unsafe { std::mem::transmute(start) };
    let c_endpoint = CString::new(endpoint)
        .map_err(|_| PluginError::invalid_request(format!("{endpoint:?} has a NUL byte")))?;
    let c_cache = cache
        .map(|cache| {
            CString::new(cache)
                .map_err(|_| PluginError::invalid_request(format!("{cache:?} has a NUL byte")))
        })
        .transpose()?;
    let cache = c_cache.as_ref().map_or(std::ptr::null(), |cache| cache.as_ptr());
    start(c_endpoint.as_ptr(), cache, threads, devices.len(), devices.as_mut_ptr());
    Err(PluginError::internal(format!("ggml's RPC server could not listen on {endpoint}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn servers_are_host_port_pairs_separated_by_commas_each_listed_once() {
        assert_eq!(
            parse_servers("127.0.0.1:50052, gpu-box:50053,127.0.0.1:50052").unwrap(),
            ["127.0.0.1:50052", "gpu-box:50053"]
        );
        assert_eq!(parse_servers("[::1]:50052").unwrap(), ["[::1]:50052"]);
        assert!(parse_servers("").unwrap().is_empty());
        for bad in ["127.0.0.1", "127.0.0.1:", ":50052", "host:port", "host:0", "host:70000"] {
            let why = parse_servers(bad).unwrap_err();
            assert!(why.contains("is not host:port"), "{bad}: {why}");
        }
    }

    /// A listener that answers one greeting with `answer` (after reading it whole).
    fn answering(answer: Vec<u8>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut greeting = [0u8; 1 + 8 + CAPS_SIZE];
            stream.read_exact(&mut greeting).unwrap();
            assert_eq!(greeting[0], HELLO);
            stream.write_all(&answer).unwrap();
        });
        endpoint
    }

    fn hello_answer(major: u8, minor: u8, patch: u8) -> Vec<u8> {
        let mut answer = (4 + CAPS_SIZE as u64).to_le_bytes().to_vec();
        answer.extend_from_slice(&[major, minor, patch, 0]);
        answer.extend_from_slice(&[0; CAPS_SIZE]);
        answer
    }

    #[test]
    fn a_server_of_the_same_protocol_is_greeted_and_one_of_another_is_refused_by_version() {
        let (major, minor) = PROTOCOL;
        let same = answering(hello_answer(major, minor, 3));
        let version = greet(&same, Duration::from_secs(5)).unwrap();
        assert_eq!(version, ServerVersion { major, minor, patch: 3 });
        assert_eq!(mismatch(&same, version), None);
        let older = answering(hello_answer(major - 1, 9, 0));
        let version = greet(&older, Duration::from_secs(5)).unwrap();
        let why = mismatch(&older, version).unwrap();
        assert!(why.contains(&format!("protocol {}.9.0", major - 1)), "{why}");
        let newer_minor = ServerVersion { major, minor: minor + 1, patch: 0 };
        assert!(mismatch("h:1", newer_minor).is_some());
    }

    #[test]
    fn a_closed_port_a_silent_server_and_a_hangup_are_each_refused_with_their_reason() {
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let why = greet(&closed, Duration::from_secs(5)).unwrap_err();
        assert!(why.contains(&format!("the RPC server {closed} is unreachable")), "{why}");

        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = silent.local_addr().unwrap().to_string();
        let why = greet(&endpoint, Duration::from_millis(200)).unwrap_err();
        assert!(why.contains("did not answer"), "{why}");
        drop(silent);

        let hangup = answering(Vec::new());
        let why = greet(&hangup, Duration::from_secs(5)).unwrap_err();
        assert!(why.contains("closed the connection during the greeting"), "{why}");
    }
}
