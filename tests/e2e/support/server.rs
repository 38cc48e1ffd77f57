//! The built `hearth` binary serving as a child process: a real `hearth serve` on an
//! ephemeral loopback port, with its log captured for the tests to read.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::built_binary;

/// A running server; dropping it kills the process.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    log: Arc<Mutex<String>>,
    client: reqwest::Client,
}

impl Server {
    /// Serve the hearth home `home` (its `plugins/`, `models/` and `catalog.toml`).
    pub fn start(home: &Path) -> Self {
        Self::start_program(&built_binary(), home)
    }

    /// Serve `home` with the `hearth` binary at `program`.
    pub fn start_program(program: &Path, home: &Path) -> Self {
        let mut command = Command::new(program);
        command
            .arg("--home")
            .arg(home)
            // The test scripts export these for the real models; this server uses `home`.
            .env_remove("HEARTH_CATALOG")
            .env_remove("HEARTH_PLUGINS")
            .env_remove("HEARTH_MODELS");
        Self::spawn(command)
    }

    /// `hearth serve` on an ephemeral port, as `command` (the `hearth` binary with its
    /// global options and environment) starts it.
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .args(["serve", "--port", "0"])
            .env("HEARTH_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hearth serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (address_tx, address_rx) = mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("hearth is listening") {
                    let address = line
                        .split("address=")
                        .nth(1)
                        .and_then(|rest| rest.split_whitespace().next());
                    let _ = address_tx.send(address.unwrap_or_default().to_string());
                }
                let mut log = lines.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let Ok(address) = address_rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!("hearth serve did not start:\n{}", log.lock().unwrap());
        };
        Self { child, base: format!("http://{address}"), log, client: reqwest::Client::new() }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub async fn get(&self, path: &str) -> Value {
        let response = self.client.get(format!("{}{path}", self.base)).send().await.expect("GET");
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("JSON body")
    }

    /// POST a JSON body; the status and the JSON answer.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response =
            self.client.post(format!("{}{path}", self.base)).json(body).send().await.expect("POST");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A chat completion's status and text.
    pub async fn chat(&self, model: &str, prompt: &str) -> (u16, String) {
        let body = serde_json::json!({ "model": model, "messages": [{ "role": "user", "content": prompt }], "seed": 0 });
        let (status, answer) = self.post("/v1/chat/completions", &body).await;
        (
            status,
            answer["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_string(),
        )
    }

    /// Wait until `check` finds what it looks for in the server's state, or fail after
    /// `within`, showing the log.
    pub async fn eventually<T, F, Fut>(&self, within: Duration, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let started = Instant::now();
        loop {
            if let Some(found) = check().await {
                return found;
            }
            assert!(
                started.elapsed() < within,
                "{what}: not within {within:?}; server log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
