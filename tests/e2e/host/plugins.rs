//! Plugin discovery and loading through the real ABI.

use hearth::plugin::PluginRegistry;
use hearth_sdk::{GenerateRequest, HostProfile, LoadRequest, SinkControl, TokenSink};

use crate::helpers::plugins_dir;

#[test]
fn the_fixture_plugin_loads_through_the_abi_and_generates() {
    let dir = plugins_dir(&["hearth_fixture_plugin"]);
    let registry = PluginRegistry::scan(dir.path());
    assert!(registry.failures.is_empty(), "{:?}", registry.failures);
    let plugin = registry.get("fixture").expect("fixture plugin registered");
    assert_eq!(plugin.info.api_version, "1.0");
    assert!(plugin.probe(&HostProfile::default()).available);

    let model_file = dir.path().join("echo.fixture");
    std::fs::write(&model_file, "tokens = 4\n").unwrap();
    let request = LoadRequest {
        model_id: "echo".into(),
        paths: vec![model_file.display().to_string().into()].into(),
        format: "fixture".into(),
        context_size: 0,
        threads: 0,
        device: None.into(),
    };
    let model = plugin.backend.load(&request).into_result().expect("load");
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
        messages: Default::default(),
        prompt: Some("one two three".into()).into(),
        sampling: Default::default(),
        stop: Default::default(),
        max_tokens: 100,
        adapters: Default::default(),
    };
    let stats = runner.generate(&generate, &mut sink).expect("generate");
    assert_eq!(sink.0, "one two three one ");
    assert_eq!(stats.completion_tokens, 4);
    assert!(runner.memory().host_bytes >= 1024 * 1024);
}

#[test]
fn a_non_plugin_and_an_incompatible_plugin_are_refused_with_reasons_while_the_rest_load() {
    let dir = plugins_dir(&["hearth_fixture_plugin", "hearth_fixture_incompatible"]);
    std::fs::write(dir.path().join("garbage.so"), b"this is not an ELF file").unwrap();
    std::fs::write(dir.path().join("README.txt"), b"ignored: not a library").unwrap();
    let libm = ["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6", "/lib64/libm.so.6"]
        .into_iter()
        .find(|path| std::path::Path::new(path).is_file());
    if let Some(libm) = libm {
        std::fs::copy(libm, dir.path().join("libm.so")).unwrap();
    }

    let registry = PluginRegistry::scan(dir.path());
    assert_eq!(registry.plugins.len(), 1);
    assert_eq!(registry.plugins[0].info.id, "fixture");
    let reason_for = |file: &str| {
        registry
            .failures
            .iter()
            .find(|failure| failure.path.file_name().unwrap() == file)
            .map(|failure| failure.reason.clone())
            .unwrap_or_else(|| panic!("no failure recorded for {file}: {:?}", registry.failures))
    };
    assert!(reason_for("garbage.so").contains("cannot open as a shared library"));
    assert!(reason_for("libhearth_fixture_incompatible.so").contains("incompatible hearth SDK"));
    if libm.is_some() {
        assert!(reason_for("libm.so").contains("not a hearth plugin"));
    }
    assert_eq!(registry.failures.len(), 2 + usize::from(libm.is_some()));
}
