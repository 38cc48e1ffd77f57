//! Plugin faults, one per entry point, through the real ABI with the fixture plugin:
//! a plugin that fails or panics while starting up (init, info) or answers garbage is
//! refused at load with a named reason, whether the host loads it or a worker describes
//! it; one whose probe panics is listed unavailable; one that aborts while probing in a
//! worker is refused with the cause;
//! a panic in load, generate, trim, memory or drop, or impossible figures, stay with
//! the request or model concerned while the host keeps serving.

use hearth::plugin::PluginRegistry;
use hearth::service::ServiceError;
use serde_json::Value;

use crate::generate::{chat, collect};
use crate::helpers::{built_binary, built_library, TestHost};
use crate::plugins::describers;

/// Scan a folder holding only the fixture with `HEARTH_FIXTURE_FAULT=fault`, in a
/// child process (the variable must not reach this process's other tests), describing
/// it the given way (an index into [`describers`]); its report.
fn scan_with_fault(fault: &str, describer: usize) -> String {
    // Built before the child runs, so two children never race to build it.
    built_binary();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "faults::fault_child", "--nocapture", "--ignored"])
        .env("HEARTH_FIXTURE_FAULT", fault)
        .env("FIXTURE_DESCRIBER", describer.to_string())
        .env("FIXTURE_LIBRARY", built_library("hearth_fixture_plugin"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{fault}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
#[ignore = "run by the fault tests of this module in a child process"]
fn fault_child() {
    let library = std::path::PathBuf::from(std::env::var_os("FIXTURE_LIBRARY").unwrap());
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(library, dir.path().join("libfaulty.so")).unwrap();
    let describer: usize = std::env::var("FIXTURE_DESCRIBER").unwrap().parse().unwrap();
    let registry = PluginRegistry::scan(dir.path(), &*describers()[describer].1);
    for failure in &registry.failures {
        println!("REFUSED: {}", failure.reason);
    }
    for plugin in &registry.plugins {
        println!("LOADED: available={} reason={}", plugin.probe.available, plugin.probe.reason);
    }
}

#[test]
fn a_plugin_that_fails_or_panics_while_starting_or_describes_itself_with_garbage_is_refused_by_name(
) {
    let expected = [
        ("init-fail", "plugin failed to initialise: internal: fixture init failure requested"),
        ("init-panic", "plugin failed to initialise: panicked: plugin panicked in init: fixture init panic requested"),
        ("info-panic", "plugin failed to initialise: panicked: plugin panicked in info: fixture info panic requested"),
        ("info-garbage", "backend id \"../fixture\\n\" is unusable"),
    ];
    for (fault, reason) in expected {
        for describer in 0..2 {
            let report = scan_with_fault(fault, describer);
            assert!(
                report.contains(&format!("REFUSED: {reason}")),
                "{fault}, describer {describer}: {report}"
            );
            assert!(!report.contains("LOADED"), "{fault}, describer {describer}: {report}");
        }
    }
}

#[test]
fn a_plugin_whose_probe_panics_is_loaded_but_unavailable_with_the_reason() {
    for describer in 0..2 {
        let report = scan_with_fault("probe-panic", describer);
        assert!(
            report.contains("LOADED: available=false reason=probe failed: panicked: plugin panicked in probe: fixture probe panic requested"),
            "describer {describer}: {report}"
        );
    }
}

#[test]
fn a_plugin_that_aborts_while_a_worker_describes_it_is_refused_with_the_cause_and_the_host_goes_on()
{
    let report = scan_with_fault("probe-abort", 1);
    assert!(report.contains("REFUSED: the `libfaulty.so` worker"), "{report}");
    assert!(report.contains("SIGABRT"), "{report}");
    assert!(!report.contains("LOADED"), "{report}");
}

/// Fixture models whose faults are in the model's entry points.
const FAULTY: &[(&str, &str)] = &[
    ("load-panic", "load = panic\n"),
    ("memory-panic", "memory = panic\n"),
    ("memory-garbage", "memory = garbage\n"),
    ("drop-panic", "drop = panic\n"),
    ("garbage-stats", "stats = garbage\n"),
];

fn faulty_host() -> TestHost {
    TestHost::with_models(FAULTY, "memory_budget = \"1 GB\"")
}

#[tokio::test]
async fn a_panic_in_load_fails_that_request_with_the_reason_and_the_host_keeps_serving() {
    let host = faulty_host();
    let error = collect(&host, chat("load-panic", "hi", 4)).await.unwrap_err();
    assert!(matches!(error, ServiceError::NothingLoaded { .. }), "{error}");
    assert!(
        error.to_string().contains("plugin panicked in load: fixture load panic requested"),
        "{error}"
    );
    assert!(host.hearth.loaded_models().is_empty());
    assert_eq!(collect(&host, chat("echo", "still here", 2)).await.unwrap(), "here still ");
}

#[tokio::test]
async fn a_panic_in_trim_leaves_the_model_usable() {
    let host = faulty_host();
    collect(&host, chat("echo", "arm #trim-panic", 2)).await.unwrap();
    let key = host.hearth.loaded_models()[0].key.clone();
    assert!(host.hearth.scheduler().trim(&key).await.unwrap());
    assert_eq!(collect(&host, chat("echo", "after trim", 2)).await.unwrap(), "trim after ");
}

#[tokio::test]
async fn a_panic_in_memory_reads_as_holding_nothing() {
    let host = faulty_host();
    collect(&host, chat("memory-panic", "a b", 2)).await.unwrap();
    let loaded = host.hearth.loaded_models();
    assert_eq!((loaded[0].memory.host_bytes, loaded[0].memory.device_bytes), (0, 0));
}

#[tokio::test]
async fn impossible_memory_figures_neither_overflow_the_budget_nor_stop_other_models_loading() {
    let host = faulty_host();
    collect(&host, chat("memory-garbage", "a b", 2)).await.unwrap();
    // u64::MAX + u64::MAX bytes against a 1 GB budget: the idle garbage model is
    // evicted for the next one instead of the sum wrapping or panicking.
    collect(&host, chat("echo", "a b", 2)).await.unwrap();
    let loaded: Vec<String> =
        host.hearth.loaded_models().into_iter().map(|model| model.key.model_id).collect();
    assert_eq!(loaded, ["echo"]);
}

#[tokio::test]
async fn a_panic_while_unloading_is_contained_and_the_model_is_gone() {
    let host = faulty_host();
    collect(&host, chat("drop-panic", "a b", 2)).await.unwrap();
    assert_eq!(host.hearth.unload("drop-panic").await.unwrap(), 1);
    assert!(host.hearth.loaded_models().is_empty());
    assert_eq!(collect(&host, chat("drop-panic", "c d", 2)).await.unwrap(), "d c ");
}

#[tokio::test]
async fn impossible_generation_figures_reach_the_client_as_sane_numbers() {
    let host = faulty_host();
    let request = axum::http::Request::post("/v1/completions")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            r#"{"model":"garbage-stats","prompt":"a b","max_tokens":2,"seed":1}"#,
        ))
        .unwrap();
    let response =
        tower::ServiceExt::oneshot(hearth::api::app(host.hearth.clone()), request).await.unwrap();
    assert_eq!(response.status(), 200);
    let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(answer["usage"]["total_tokens"], 2 * u64::from(u32::MAX), "{answer}");
    assert_eq!(answer["choices"][0]["text"], "b a ");
}
