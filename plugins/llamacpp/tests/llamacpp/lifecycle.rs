//! The backend's identity and probe, and a model's memory across `trim`.

use hearth_llamacpp::LlamaCppBackend;
use hearth_sdk::{Backend, DeviceKind, FinishReason, HostProfile};

use crate::common::{chat, load, run, SMOLLM2};

#[test]
fn the_backend_is_called_llamacpp_and_reads_gguf() {
    let info = LlamaCppBackend::new().unwrap().info();
    assert_eq!(info.id.as_str(), "llamacpp");
    assert_eq!(info.name.as_str(), "llama.cpp");
    assert!(info.formats.iter().any(|format| format.as_str() == "gguf"));
    assert!(info.features.iter().any(|feature| feature.as_str() == "lora"));
}

#[test]
fn the_probe_is_available_and_lists_the_cpu() {
    let host = HostProfile {
        ram_total_bytes: 8 << 30,
        ram_available_bytes: 4 << 30,
        ..HostProfile::default()
    };
    let probe = LlamaCppBackend::new().unwrap().probe(&host);
    assert!(probe.available, "{probe:?}");
    let cpu =
        probe.devices.iter().find(|device| device.kind == DeviceKind::Cpu).expect("a CPU device");
    assert_eq!(cpu.memory_total_bytes, 8 << 30);
}

#[test]
fn memory_is_real_and_shrinks_after_trim_and_generation_works_again() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = load(SMOLLM2, 1024);
    let loaded = model.memory();
    assert!(loaded.host_bytes > 50_000_000, "weights: {loaded:?}");
    run(&*model, &chat("Say hi.", 4)).unwrap();
    let busy = model.memory();
    assert!(busy.host_bytes > loaded.host_bytes, "a context adds its KV cache: {busy:?}");
    model.trim();
    assert_eq!(model.memory(), loaded);
    let (text, stats) =
        run(&*model, &chat("What is the capital of France? Answer in one word.", 16)).unwrap();
    assert!(text.contains("Paris"), "after trim: {text:?}");
    assert_ne!(stats.finish_reason, FinishReason::Cancelled);
}
