//! Backends in worker processes: a crash, an abort or a hang inside a plugin fails only
//! its own request, the next request gets a fresh worker, the hard idle timeout ends
//! the worker, a replaced plugin gets new workers while the host never maps any build of
//! it, and everything else — streaming, cancelling, trimming, the plugin's own errors —
//! behaves as it does in-process.

use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

use crate::generate::{chat, collect};
use crate::helpers::{fixture_home, fixture_model_entry, TestHost};
use crate::live_plugins::{rebuilt_fixture, FIXTURE, REBUILT_VERSION};
use crate::support::server::Server;

const MIB: u64 = 1024 * 1024;

/// A fixture home whose backends run in worker processes that count as hung after
/// `stall`, with three more models: `long` (eight seconds of tokens), `big` (holding
/// 256 MiB) and `queued` (1.5 s of tokens, one generation at a time).
fn isolated_home(stall: &str, soft: &str, hard: &str) -> tempfile::TempDir {
    let home = fixture_home(&["hearth_fixture_plugin"], soft, hard);
    let mut catalog = std::fs::read_to_string(home.path().join("catalog.toml")).unwrap();
    for (id, contents) in [
        ("long", "tokens = 400\ndelay_ms = 20\n"),
        ("big", "tokens = 4\nweights_mb = 256\n"),
        ("queued", "tokens = 10\ndelay_ms = 150\nserial = true\n"),
    ] {
        let dir = home.path().join("models").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{id}.fixture")), contents).unwrap();
        catalog.push_str(&fixture_model_entry(id, 512));
    }
    catalog.push_str(&format!("[isolation]\ndefault = \"process\"\nstall_timeout = \"{stall}\"\n"));
    std::fs::write(home.path().join("catalog.toml"), catalog).unwrap();
    home
}

/// The live processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let parent_of = |child: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
        // `pid (name) state ppid …`; the name may hold spaces and parentheses.
        stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| parent_of(*child) == Some(pid))
        .collect()
}

/// Whether process `pid` has (a private copy of) the fixture plugin mapped.
fn maps_the_fixture(pid: u32) -> bool {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    maps.lines().any(|line| line.contains(FIXTURE))
}

/// A process's resident memory.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line =
        status.lines().find(|line| line.starts_with("VmRSS:")).expect("VmRSS in /proc/PID/status");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[tokio::test]
async fn a_backend_that_segfaults_aborts_or_hangs_fails_only_that_request_while_another_model_keeps_streaming(
) {
    let home = isolated_home("2s", "2m", "5m");
    let server = Server::start(home.path());
    let long = server.chat("long", "tick tock");
    let crashes = async {
        server
            .eventually(Duration::from_secs(10), "the long generation is under way", || async {
                let ps = server.get("/api/ps").await;
                let models = ps["models"].as_array().unwrap().clone();
                models
                    .iter()
                    .any(|model| model["key"]["model_id"] == "long" && model["state"] == "busy")
                    .then_some(())
            })
            .await;
        for (trigger, cause, last_words) in [
            ("#segfault", "SIGSEGV", "fixture: writing through a null pointer"),
            ("#abort", "SIGABRT", "fixture: aborting"),
            ("#hang", "stall timeout", ""),
        ] {
            let body =
                json!({ "model": "echo", "messages": [{ "role": "user", "content": trigger }] });
            let (status, answer) = server.post("/v1/chat/completions", &body).await;
            assert_eq!(status, 500, "{trigger}: {answer}");
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(message.contains("the `fixture` worker"), "{trigger}: {message}");
            assert!(message.contains(cause), "{trigger}: {message}");
            assert!(
                message.contains(last_words),
                "{trigger}: the worker's last log lines: {message}"
            );
            let (status, text) = server.chat("echo", "after the crash").await;
            assert_eq!(
                (status, text.as_str()),
                (200, "after the crash after the crash "),
                "{trigger}: a fresh worker"
            );
        }
    };
    let ((status, text), ()) = tokio::join!(long, crashes);
    assert_eq!(status, 200, "{}", server.log());
    assert_eq!(text, "tick tock ".repeat(200), "the other model's generation finished whole");
    assert!(server.log().contains("a fresh worker took over"), "{}", server.log());
}

#[tokio::test]
async fn a_backend_that_keeps_crashing_waits_before_its_next_worker_and_recovers_after() {
    let home = isolated_home("10s", "2m", "5m");
    let server = Server::start(home.path());
    let segfault =
        json!({ "model": "echo", "messages": [{ "role": "user", "content": "#segfault" }] });
    for _ in 0..2 {
        assert_eq!(server.post("/v1/chat/completions", &segfault).await.0, 500);
    }
    let (status, answer) = server
        .post(
            "/v1/chat/completions",
            &json!({ "model": "echo", "messages": [{ "role": "user", "content": "hello" }] }),
        )
        .await;
    assert_eq!(status, 500, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("crashed 2 times in a row"), "{message}");
    assert!(message.contains("SIGSEGV"), "the last crash's cause: {message}");
    let text = server
        .eventually(Duration::from_secs(5), "a worker starts once the backoff is over", || async {
            let (status, text) = server.chat("echo", "hello").await;
            (status == 200).then_some(text)
        })
        .await;
    assert_eq!(text, "hello ".repeat(6));
}

#[tokio::test]
async fn a_worker_that_stops_answering_health_checks_is_killed_and_replaced() {
    let home = isolated_home("2s", "2m", "5m");
    let server = Server::start(home.path());
    assert_eq!(server.chat("echo", "hello").await.0, 200);
    let workers = children(server.pid());
    assert_eq!(workers.len(), 1);
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &workers[0].to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    server
        .eventually(Duration::from_secs(15), "the frozen worker is killed", || async {
            children(server.pid()).is_empty().then_some(())
        })
        .await;
    assert!(server.log().contains("left a health check unanswered"), "{}", server.log());
    assert_eq!(server.chat("echo", "hello").await, (200, "hello ".repeat(6)));
}

#[tokio::test]
async fn requests_waiting_their_turn_behind_streaming_ones_are_not_stalled_and_a_killed_worker_shows_as_exited(
) {
    let home = isolated_home("2s", "2m", "5m");
    let server = Server::start(home.path());
    // Four at once on a backend that runs one at a time: the last waits 4.5 s for its
    // turn, more than twice the stall timeout, while the worker streams the others.
    let prompts = ["one two", "three four", "five six", "seven eight"];
    let answers =
        futures::future::join_all(prompts.iter().map(|prompt| server.chat("queued", prompt))).await;
    for (prompt, answer) in prompts.iter().zip(answers) {
        let expected = format!("{prompt} ").repeat(5);
        assert_eq!(answer, (200, expected), "{}", server.log());
    }
    assert!(!server.log().contains("stall timeout"), "{}", server.log());
    let workers = children(server.pid());
    assert_eq!(workers.len(), 1);
    let killed =
        std::process::Command::new("kill").args(["-KILL", &workers[0].to_string()]).status();
    assert!(killed.unwrap().success());
    server
        .eventually(Duration::from_secs(10), "`ps` shows the dead worker's model", || async {
            let ps = server.get("/api/ps").await;
            let model = ps["models"].as_array()?.first()?.clone();
            (model["state"] != "ready").then_some(model)
        })
        .await;
    let ps = server.get("/api/ps").await;
    assert_eq!(ps["models"][0]["state"], "exited", "{ps}");
    assert_eq!(server.chat("queued", "again").await, (200, "again ".repeat(10)));
    assert_eq!(server.get("/api/ps").await["models"][0]["state"], "ready");
}

#[tokio::test]
async fn a_server_whose_binary_was_replaced_on_disk_still_starts_workers_from_the_binary_it_runs() {
    let home = isolated_home("10s", "2m", "5m");
    let installed = tempfile::tempdir().unwrap();
    let program = installed.path().join("hearth");
    std::fs::copy(crate::helpers::built_binary(), &program).unwrap();
    let server = Server::start_program(&program, home.path());
    // An upgrade: the file is deleted, and another takes its name.
    std::fs::remove_file(&program).unwrap();
    std::fs::write(&program, "#!/bin/sh\nexit 3\n").unwrap();
    assert_eq!(server.chat("echo", "hello").await, (200, "hello ".repeat(6)), "{}", server.log());
}

#[tokio::test]
async fn after_the_hard_timeout_the_worker_is_gone_and_the_host_is_back_to_its_baseline_memory() {
    let home = isolated_home("10s", "1s", "2s");
    let server = Server::start(home.path());
    let baseline = resident_bytes(server.pid());
    assert_eq!(server.chat("big", "heavy").await.0, 200);
    let workers = children(server.pid());
    assert_eq!(workers.len(), 1, "one worker for the one model");
    assert!(resident_bytes(workers[0]) >= 256 * MIB, "the worker holds the weights");
    assert!(resident_bytes(server.pid()) < baseline + 64 * MIB, "the host never held them");

    server
        .eventually(Duration::from_secs(10), "the worker exits at the hard timeout", || async {
            let unloaded = server.get("/api/ps").await["models"].as_array().unwrap().is_empty();
            (unloaded && children(server.pid()).is_empty()).then_some(())
        })
        .await;
    let now = resident_bytes(server.pid());
    assert!(
        now < baseline + 32 * MIB,
        "host resident memory {} MiB, baseline {} MiB",
        now / MIB,
        baseline / MIB
    );
}

#[tokio::test]
async fn a_replaced_plugin_gets_new_workers_the_old_builds_worker_exits_and_the_host_never_maps_either_build(
) {
    let rebuilt = rebuilt_fixture();
    let home = isolated_home("10s", "2m", "5m");
    let server = Server::start(home.path());
    assert_eq!(server.chat("echo", "#version").await.0, 200);
    let old = children(server.pid());
    assert_eq!(old.len(), 1);
    assert!(maps_the_fixture(old[0]), "the worker runs the plugin");
    assert!(
        !maps_the_fixture(server.pid()),
        "a worker described the plugin, so the host never loaded it"
    );

    std::fs::copy(&rebuilt, home.path().join("plugins").join(FIXTURE)).unwrap();
    server
        .eventually(Duration::from_secs(5), "a request runs on the rebuilt plugin", || async {
            let (status, text) = server.chat("echo", "#version").await;
            (status == 200 && text == format!("{REBUILT_VERSION} ").repeat(6)).then_some(())
        })
        .await;
    let new = server
        .eventually(Duration::from_secs(10), "the old build's worker exits", || async {
            let workers = children(server.pid());
            (workers.len() == 1 && !workers.contains(&old[0])).then_some(workers[0])
        })
        .await;
    assert!(maps_the_fixture(new));
    assert!(!maps_the_fixture(server.pid()), "no build of the plugin stays resident in the host");
}

#[tokio::test]
async fn in_a_worker_process_a_model_answers_cancels_trims_and_reports_panics_as_it_does_in_process(
) {
    let host = TestHost::in_worker_processes();
    let text = collect(&host, chat("echo", "alpha beta gamma", 100)).await.unwrap();
    assert_eq!(text, "beta gamma alpha beta gamma alpha ");

    let prepared = host.hearth.prepare(chat("slow", "a b c", 200)).await.unwrap();
    let (tokens, mut pieces) = mpsc::unbounded_channel();
    let run = tokio::spawn(prepared.run(tokens));
    for _ in 0..3 {
        pieces.recv().await.expect("a piece");
    }
    drop(pieces);
    let completion = run.await.unwrap().unwrap();
    assert_eq!(completion.finish_reason, "cancelled");
    assert!(completion.completion_tokens < 200, "{completion:?}");

    let error = collect(&host, chat("echo", "please #panic now", 10)).await.unwrap_err();
    assert!(error.to_string().contains("plugin panicked in generate"), "{error}");
    assert_eq!(
        collect(&host, chat("echo", "still alive", 10)).await.unwrap(),
        "alive still alive still alive still "
    );

    let echo =
        host.hearth.loaded_models().into_iter().find(|model| model.key.model_id == "echo").unwrap();
    assert!(
        echo.memory.host_bytes > MIB,
        "weights and cache, as the worker reports them: {:?}",
        echo.memory
    );
    assert!(host.hearth.scheduler().trim(&echo.key).await.unwrap());
    let trimmed =
        host.hearth.loaded_models().into_iter().find(|model| model.key.model_id == "echo").unwrap();
    assert_eq!(trimmed.memory.host_bytes, MIB, "the cache went, the weights stayed");
}

#[tokio::test]
async fn a_backend_set_to_run_in_process_under_a_process_default_is_loaded_into_the_host_on_its_first_request(
) {
    let home = isolated_home("10s", "2m", "5m");
    let catalog = home.path().join("catalog.toml");
    let text = std::fs::read_to_string(&catalog).unwrap();
    std::fs::write(&catalog, format!("{text}[isolation.backends]\nfixture = \"in-process\"\n"))
        .unwrap();
    let server = Server::start(home.path());
    assert!(!maps_the_fixture(server.pid()), "described by a worker, not loaded at start");
    assert_eq!(server.chat("echo", "one two").await.0, 200);
    assert!(maps_the_fixture(server.pid()), "loaded into the host for its in-process model");
    assert!(children(server.pid()).is_empty(), "no worker runs the model");
}
