//! The `hearth` binary as a person at a shell meets it: errors as one clean line, chat
//! commands, and server logs without terminal colours when they go to a file.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::{built_binary, fixture_home};

fn hearth(home: &std::path::Path) -> Command {
    let mut command = Command::new(built_binary());
    command
        .arg("--home")
        .arg(home)
        .env_remove("HEARTH_CATALOG")
        .env_remove("HEARTH_PLUGINS")
        .env_remove("HEARTH_MODELS")
        .env_remove("NO_COLOR");
    command
}

#[test]
fn a_pull_of_a_model_without_a_url_says_the_full_path_in_one_line_even_with_rust_backtrace_set() {
    let home = fixture_home(&["hearth_fixture_plugin"], "2m", "5m");
    let expected = home.path().join("models").join("echo").join("echo.fixture");
    // Installed, it would be reported as installed; missing, there is nothing to fetch.
    std::fs::remove_file(&expected).unwrap();
    let output =
        hearth(home.path()).args(["pull", "echo"]).env("RUST_BACKTRACE", "1").output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&expected.display().to_string()), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line, no backtrace: {stderr}");
}

#[test]
fn a_pull_of_an_installed_model_without_a_url_says_it_is_installed() {
    let home = fixture_home(&["hearth_fixture_plugin"], "2m", "5m");
    let output = hearth(home.path()).args(["pull", "echo"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("echo.fixture is installed"), "{stdout}");
}

#[test]
fn bye_exit_and_quit_end_a_chat_without_being_sent_to_the_model() {
    let home = fixture_home(&["hearth_fixture_plugin"], "2m", "5m");
    for command in ["/bye", "/exit", "/quit"] {
        let mut child = hearth(home.path())
            .args(["run", "echo"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The chat must end on the command, with the input still open after it.
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "hello there\n{command}\nnot this").unwrap();
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("`{command}` did not end the chat");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(status.success(), "{command}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains("hello there"), "{command}: {stdout}");
        assert!(!stdout.contains("not this") && !stdout.contains(command), "{command}: {stdout}");
    }
}

#[test]
fn a_servers_log_written_to_a_pipe_has_no_terminal_colours() {
    let home = fixture_home(&["hearth_fixture_plugin"], "2m", "5m");
    let mut child = hearth(home.path())
        .args(["serve", "--port", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("hearth is listening") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(log.contains("hearth is listening"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a piped log: {log:?}");
}
