//! Plugin discovery and loading through the real ABI.

use hearth::isolation::WorkerDescriber;
use hearth::plugin::{Describe, InProcess, PluginRegistry};
use hearth_sdk::{GenerateRequest, HostProfile, LoadRequest, SinkControl, TokenSink};

use crate::helpers::{built_binary, plugins_dir};

/// The two ways the host describes plugins: loading them here, or asking a worker.
pub fn describers() -> [(&'static str, Box<dyn Describe>); 2] {
    let worker = WorkerDescriber {
        program: built_binary(),
        host: HostProfile::default(),
        timeout: std::time::Duration::from_secs(30),
    };
    [
        ("in process", Box::new(InProcess { host: HostProfile::default() })),
        ("in a worker", Box::new(worker)),
    ]
}

#[test]
fn the_fixture_plugin_loads_through_the_abi_and_generates() {
    let dir = plugins_dir(&["hearth_fixture_plugin"]);
    let registry = PluginRegistry::scan(dir.path(), &InProcess { host: HostProfile::default() });
    assert!(registry.failures.is_empty(), "{:?}", registry.failures);
    let plugin = registry.get("fixture").expect("fixture plugin registered");
    assert_eq!(
        plugin.info.api_version,
        format!("{}.{}", hearth_sdk::API_VERSION.major, hearth_sdk::API_VERSION.minor)
    );
    assert!(plugin.probe.available);

    let model_file = dir.path().join("echo.fixture");
    std::fs::write(&model_file, "tokens = 4\n").unwrap();
    let request = LoadRequest {
        model_id: "echo".into(),
        paths: vec![model_file.display().to_string().into()].into(),
        format: "fixture".into(),
        context_size: 0,
        threads: 0,
        device: None.into(),
        ..Default::default()
    };
    let model =
        plugin.in_process().expect("the library").load(request.view()).into_result().expect("load");
    let runner = hearth::plugin::PluginRunner::new(model);

    struct Collect(String);
    impl TokenSink for Collect {
        fn on_token(&mut self, piece: &str) -> SinkControl {
            self.0.push_str(piece);
            SinkControl::Continue
        }
    }
    let mut sink = Collect(String::new());
    let generate = GenerateRequest {
        prompt: Some("one two three".into()).into(),
        max_tokens: 100,
        ..GenerateRequest::default()
    };
    let stats = runner.generate(&generate, &mut sink).expect("generate");
    assert_eq!(sink.0, "one two three one ");
    assert_eq!(stats.completion_tokens, 4);
    assert!(runner.memory().host_bytes >= 1024 * 1024);
}

#[test]
fn a_worker_describes_a_plugin_exactly_as_loading_it_here_does_probing_the_host_it_was_given() {
    let dir = plugins_dir(&["hearth_fixture_plugin"]);
    let library = dir.path().join("libhearth_fixture_plugin.so");
    let host = HostProfile {
        cpu_brand: "Described CPU".into(),
        ram_total_bytes: 1 << 33,
        ..HostProfile::default()
    };
    let here = InProcess { host: host.clone() }.describe(&library).expect("described here");
    let worker = WorkerDescriber {
        program: built_binary(),
        host,
        timeout: std::time::Duration::from_secs(30),
    };
    let there = worker.describe(&library).expect("described by a worker");
    assert_eq!(there.info, here.info);
    assert_eq!(there.probe, here.probe);
    assert_eq!(there.probe.devices[0].name.as_str(), "Described CPU");
    assert!(
        here.library.is_some() && there.library.is_none(),
        "only the host's own description maps the library"
    );
}

#[test]
fn a_non_plugin_and_an_incompatible_plugin_are_refused_with_reasons_while_the_rest_load_described_here_or_in_a_worker(
) {
    let dir = plugins_dir(&["hearth_fixture_plugin", "hearth_fixture_incompatible"]);
    std::fs::write(dir.path().join("garbage.so"), b"this is not an ELF file").unwrap();
    std::fs::write(dir.path().join("README.txt"), b"ignored: not a library").unwrap();
    let libm = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
    ]
    .into_iter()
    .find(|path| std::path::Path::new(path).is_file());
    if let Some(libm) = libm {
        std::fs::copy(libm, dir.path().join("libm.so")).unwrap();
    }

    for (how, describer) in describers() {
        let registry = PluginRegistry::scan(dir.path(), &*describer);
        check_refusals(how, &registry, libm.is_some());
    }
}

fn check_refusals(how: &str, registry: &PluginRegistry, libm: bool) {
    assert_eq!(registry.plugins.len(), 1, "{how}: {:?}", registry.failures);
    assert_eq!(registry.plugins[0].info.id, "fixture");
    let reason_for = |file: &str| {
        registry
            .failures
            .iter()
            .find(|failure| failure.path.file_name().unwrap() == file)
            .map(|failure| failure.reason.clone())
            .unwrap_or_else(|| {
                panic!("{how}: no failure recorded for {file}: {:?}", registry.failures)
            })
    };
    assert!(reason_for("garbage.so").contains("cannot open as a shared library"), "{how}");
    assert!(
        reason_for("libhearth_fixture_incompatible.so").contains("incompatible hearth SDK"),
        "{how}"
    );
    if libm {
        assert!(reason_for("libm.so").contains("not a hearth plugin"), "{how}");
    }
    assert_eq!(registry.failures.len(), 2 + usize::from(libm), "{how}");
}

#[test]
fn a_plugin_file_cut_short_is_refused_with_the_reason_by_plugins_profile_and_run_instead_of_a_bus_error(
) {
    let home = crate::helpers::fixture_home(&["hearth_fixture_plugin"], "2m", "5m");
    let whole = std::fs::read(crate::helpers::built_library("hearth_fixture_plugin")).unwrap();
    std::fs::write(home.path().join("plugins/libcut.so"), &whole[..whole.len() / 2]).unwrap();
    for args in [&["plugins"][..], &["profile"], &["run", "echo", "still answering"]] {
        let output = std::process::Command::new(built_binary())
            .arg("--home")
            .arg(home.path())
            .args(args)
            .env_remove("HEARTH_CATALOG")
            .env_remove("HEARTH_PLUGINS")
            .env_remove("HEARTH_MODELS")
            .output()
            .unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{args:?}: {:?}\n{printed}", output.status);
        if args[0] == "plugins" {
            assert!(printed.contains("libcut.so"), "{printed}");
            assert!(printed.contains("cut short"), "{printed}");
        }
        if args[0] == "run" {
            assert!(printed.contains("still answering"), "{printed}");
        }
    }
}
