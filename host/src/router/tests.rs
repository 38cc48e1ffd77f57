//! The routing rules on a table of imaginary machines, against the shipped catalog.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use hearth_sdk::{DeviceInfo, DeviceKind, HostProfile, Probe};

use super::*;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

const FIXTURE_MODEL: &str = r#"
[[models]]
id = "fixture-echo"
name = "Fixture echo"
context_size = 256
[[models.artifacts]]
backends = ["fixture"]
format = "fixture"
file = "echo.fixture"
"#;

fn catalog() -> Catalog {
    let text = format!("{}{FIXTURE_MODEL}", include_str!("../../../catalog.toml"));
    Catalog::parse(&text, Path::new("catalog.toml")).unwrap()
}

/// Installed model ids; every artifact of an installed model is present.
struct Have(HashSet<&'static str>);

impl Have {
    fn only(ids: &[&'static str]) -> Have {
        Have(ids.iter().copied().collect())
    }
}

impl Installed for Have {
    fn path_of(&self, model_id: &str, artifact: &Artifact) -> Option<PathBuf> {
        self.0.contains(model_id).then(|| Path::new("/models").join(&artifact.file))
    }
}

fn host(ram_bytes: u64, apple_silicon: bool) -> HostProfile {
    HostProfile {
        os: if apple_silicon { "macos" } else { "linux" }.into(),
        arch: if apple_silicon { "aarch64" } else { "x86_64" }.into(),
        cpu_cores: 8,
        ram_total_bytes: ram_bytes,
        ram_available_bytes: ram_bytes / 2,
        apple_silicon,
        ..HostProfile::default()
    }
}

fn device(kind: DeviceKind, name: &str, memory: u64) -> DeviceInfo {
    DeviceInfo { kind, name: name.into(), memory_total_bytes: memory, memory_free_bytes: memory }
}

fn cpu() -> DeviceInfo {
    device(DeviceKind::Cpu, "CPU", 0)
}

fn backend(id: &str, devices: Vec<DeviceInfo>) -> BackendProbe {
    let formats =
        if id == "fixture" { vec!["fixture".to_string()] } else { vec!["gguf".to_string()] };
    BackendProbe {
        backend: id.into(),
        formats,
        probe: Probe { available: true, devices: devices.into_iter().collect(), reason: "".into() },
    }
}

fn unavailable(id: &str, reason: &str) -> BackendProbe {
    let mut b = backend(id, Vec::new());
    b.probe.available = false;
    b.probe.reason = reason.into();
    b
}

fn laptop_4gb() -> DeviceProfile {
    DeviceProfile {
        host: host(3891 * MIB, false),
        backends: vec![
            backend("llamacpp", vec![cpu()]),
            unavailable("webgpu", "no Vulkan adapter"),
        ],
    }
}

fn cpu_box_24gb() -> DeviceProfile {
    DeviceProfile {
        host: host(23 * GIB + 400 * MIB, false),
        backends: vec![backend("llamacpp", vec![cpu()])],
    }
}

fn mac_64gb() -> DeviceProfile {
    let m2 = || device(DeviceKind::IntegratedGpu, "Apple M2 Max", 48 * GIB);
    DeviceProfile {
        host: host(64 * GIB, true),
        backends: vec![backend("llamacpp", vec![m2()]), backend("mlx", vec![m2()])],
    }
}

fn gpu_box_16gb() -> DeviceProfile {
    let rtx = || device(DeviceKind::DiscreteGpu, "RTX 4080", 16 * GIB - 300 * MIB);
    DeviceProfile {
        host: host(32 * GIB, false),
        backends: vec![backend("webgpu", vec![rtx()]), backend("llamacpp", vec![cpu(), rtx()])],
    }
}

fn software_webgpu_box() -> DeviceProfile {
    DeviceProfile {
        host: host(8 * GIB, false),
        backends: vec![
            backend("webgpu", vec![device(DeviceKind::SoftwareGpu, "llvmpipe", 8 * GIB)]),
            backend("llamacpp", vec![cpu()]),
        ],
    }
}

fn order(plan: &RoutePlan) -> Vec<&str> {
    plan.backend_order.iter().map(|b| b.backend.as_str()).collect()
}

fn picks(plan: &RoutePlan) -> Vec<(&str, Option<u8>, &str)> {
    plan.candidates.iter().map(|c| (c.backend.as_str(), c.tier, c.model_id.as_str())).collect()
}

fn auto() -> RouteRequest {
    RouteRequest::default()
}

#[test]
fn a_4_gb_laptop_gets_llamacpp_tier_1() {
    let have = Have::only(&["qwen3-0.6b", "smollm2-135m"]);
    let p = plan(&catalog(), &laptop_4gb(), &have, &auto()).unwrap();
    assert_eq!(order(&p), ["llamacpp"]);
    let r = p.recommended.as_ref().unwrap();
    assert_eq!((r.backend.as_str(), r.tier), ("llamacpp", 1));
    assert_eq!(
        picks(&p),
        [("llamacpp", Some(1), "qwen3-0.6b"), ("llamacpp", Some(1), "smollm2-135m")]
    );
    assert!(
        p.notes.iter().any(|n| n == "webgpu: unavailable — no Vulkan adapter"),
        "{:?}",
        p.notes
    );
}

#[test]
fn a_24_gb_cpu_box_gets_llamacpp_tier_3_and_takes_its_installed_alternative() {
    let have = Have::only(&["gemma3-12b", "smollm2-135m"]);
    let p = plan(&catalog(), &cpu_box_24gb(), &have, &auto()).unwrap();
    let r = p.recommended.as_ref().unwrap();
    assert_eq!(r.tier, 3);
    assert!(
        r.reason.contains("tier 3 needs 16 GB") && r.reason.contains("tier 4 needs 32 GB"),
        "{}",
        r.reason
    );
    assert_eq!(
        picks(&p),
        [("llamacpp", Some(3), "gemma3-12b"), ("llamacpp", Some(1), "smollm2-135m")]
    );
    assert!(p.candidates[1].reason.contains("fallback to tier 1"));
}

#[test]
fn a_recommended_tier_that_is_not_installed_falls_back_with_a_note() {
    let p = plan(&catalog(), &cpu_box_24gb(), &Have::only(&["smollm2-135m"]), &auto()).unwrap();
    assert_eq!(picks(&p), [("llamacpp", Some(1), "smollm2-135m")]);
    let expected = "recommended llamacpp tier 3 (Qwen3 8B / Gemma 3 12B, 16 GB) — not installed; using tier 1 SmolLM2-135M";
    assert!(p.notes.iter().any(|n| n == expected), "{:?}", p.notes);
}

#[test]
fn nothing_installed_still_recommends_and_says_so() {
    let p = plan(&catalog(), &laptop_4gb(), &Have::only(&[]), &auto()).unwrap();
    assert!(p.candidates.is_empty());
    assert_eq!(p.recommended.as_ref().map(|r| r.tier), Some(1));
    assert!(
        p.notes.iter().any(|n| n.ends_with("not installed, nor any smaller tier")),
        "{:?}",
        p.notes
    );
}

#[test]
fn an_apple_silicon_mac_with_64_gb_puts_mlx_first_at_tier_5() {
    let have = Have::only(&["smollm2-135m", "qwen3-235b-a22b"]);
    let p = plan(&catalog(), &mac_64gb(), &have, &auto()).unwrap();
    assert_eq!(order(&p), ["mlx", "llamacpp"]);
    assert!(p.backend_order[0].reason.contains("Apple Silicon"));
    assert!(p.backend_order[1].reason.contains("GPU offload to Apple M2 Max"));
    let r = p.recommended.as_ref().unwrap();
    assert_eq!((r.backend.as_str(), r.tier), ("mlx", 5));
    assert_eq!(
        picks(&p),
        [
            ("mlx", Some(5), "qwen3-235b-a22b"),
            ("mlx", Some(1), "smollm2-135m"),
            ("llamacpp", Some(1), "smollm2-135m")
        ]
    );
}

#[test]
fn a_16_gb_gpu_box_prefers_llamacpp_offload_then_webgpu_on_the_gpu() {
    let have = Have::only(&["qwen3-8b", "smollm2-135m"]);
    let p = plan(&catalog(), &gpu_box_16gb(), &have, &auto()).unwrap();
    assert_eq!(order(&p), ["llamacpp", "webgpu"]);
    assert!(p.backend_order[1].reason.contains("hardware adapter, RTX 4080"));
    // llama.cpp's table is measured in system RAM (32 GB), WebGPU's in GPU memory (16 GB).
    assert_eq!(p.recommended.as_ref().map(|r| r.tier), Some(4));
    assert_eq!(
        picks(&p),
        [
            ("llamacpp", Some(3), "qwen3-8b"),
            ("llamacpp", Some(1), "smollm2-135m"),
            ("webgpu", Some(3), "qwen3-8b"),
            ("webgpu", Some(1), "smollm2-135m"),
        ]
    );
    // Both take the first file the catalog lists, the K-quant, which both read.
    assert_eq!(p.candidates[0].artifact.quantization.as_deref(), Some("Q4_K_M"));
    assert_eq!(p.candidates[2].artifact.quantization.as_deref(), Some("Q4_K_M"));
}

#[test]
fn a_software_webgpu_adapter_is_the_last_resort() {
    let p =
        plan(&catalog(), &software_webgpu_box(), &Have::only(&["smollm2-135m"]), &auto()).unwrap();
    assert_eq!(order(&p), ["llamacpp", "webgpu"]);
    assert!(p.backend_order[1].reason.contains("software adapter"));
    assert_eq!(
        picks(&p),
        [("llamacpp", Some(1), "smollm2-135m"), ("webgpu", Some(1), "smollm2-135m")]
    );
}

/// This project's machine with the Vulkan module: lavapipe listed by llama.cpp and WebGPU.
fn lavapipe_box() -> DeviceProfile {
    let llvmpipe = |name: &str| device(DeviceKind::SoftwareGpu, name, 8 * GIB);
    DeviceProfile {
        host: host(8 * GIB, false),
        backends: vec![
            backend("webgpu", vec![llvmpipe("llvmpipe (LLVM 15.0.6, 256 bits)")]),
            backend("llamacpp", vec![cpu(), llvmpipe("Vulkan0")]),
        ],
    }
}

#[test]
fn a_named_device_keeps_only_the_backends_that_list_it_whatever_its_case() {
    let req = RouteRequest { device: Some("vulkan0".into()), ..auto() };
    let p = plan(&catalog(), &lavapipe_box(), &Have::only(&["smollm2-135m"]), &req).unwrap();
    assert_eq!(order(&p), ["llamacpp"]);
    assert_eq!(p.backend_order[0].reason, "it has the device asked for, `vulkan0`");
    assert!(p.notes.contains(&"webgpu: left out — it has no device `vulkan0`".to_string()));
}

#[test]
fn device_none_keeps_the_backends_that_run_on_the_cpu() {
    let req = RouteRequest { device: Some("none".into()), ..auto() };
    let p = plan(&catalog(), &gpu_box_16gb(), &Have::only(&["smollm2-135m"]), &req).unwrap();
    assert_eq!(order(&p), ["llamacpp"]);
}

#[test]
fn an_unknown_device_is_refused_naming_it_and_every_backends_devices() {
    let req = RouteRequest { device: Some("CUDA0".into()), ..auto() };
    let err = plan(&catalog(), &lavapipe_box(), &Have::only(&[]), &req).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no usable backend has a device `CUDA0` (devices: webgpu: llvmpipe (LLVM 15.0.6, 256 \
         bits); llamacpp: CPU, Vulkan0; or `none` for the CPU alone)"
    );
    let forced = RouteRequest { backend: Some("webgpu".into()), ..req };
    let forced = RouteRequest { device: Some("Vulkan0".into()), ..forced };
    let err = plan(&catalog(), &lavapipe_box(), &Have::only(&[]), &forced).unwrap_err();
    assert!(matches!(err, RouteError::NoSuchDevice { .. }), "{err}");
}

#[test]
fn a_forced_backend_is_the_only_one_tried() {
    let req = RouteRequest { backend: Some("webgpu".into()), ..auto() };
    let p = plan(&catalog(), &gpu_box_16gb(), &Have::only(&["smollm2-135m"]), &req).unwrap();
    assert_eq!(order(&p), ["webgpu"]);
    assert!(p.backend_order[0].reason.starts_with("forced by the request"));
    assert_eq!(p.recommended.as_ref().map(|r| (r.backend.as_str(), r.tier)), Some(("webgpu", 3)));
}

#[test]
fn a_forced_backend_that_is_unavailable_or_missing_is_an_error_naming_why() {
    let req = RouteRequest { backend: Some("webgpu".into()), ..auto() };
    let err = plan(&catalog(), &laptop_4gb(), &Have::only(&[]), &req).unwrap_err();
    assert_eq!(
        err.to_string(),
        "backend `webgpu` is not available on this machine: no Vulkan adapter"
    );
    let req = RouteRequest { backend: Some("mlx".into()), ..auto() };
    let err = plan(&catalog(), &laptop_4gb(), &Have::only(&[]), &req).unwrap_err();
    assert_eq!(err.to_string(), "backend `mlx` is not loaded (loaded: llamacpp, webgpu)");
}

#[test]
fn a_forced_tier_is_where_the_walk_down_starts() {
    let req = RouteRequest { tier: Some(2), ..auto() };
    let have = Have::only(&["qwen3-8b", "qwen3-4b", "smollm2-135m"]);
    let p = plan(&catalog(), &cpu_box_24gb(), &have, &req).unwrap();
    assert_eq!(
        picks(&p),
        [("llamacpp", Some(2), "qwen3-4b"), ("llamacpp", Some(1), "smollm2-135m")]
    );
    assert!(p.recommended.unwrap().reason.starts_with("tier 2 forced by the request"));
}

#[test]
fn a_forced_tier_above_what_fits_is_allowed_with_a_warning() {
    let req = RouteRequest { tier: Some(5), ..auto() };
    let p = plan(&catalog(), &laptop_4gb(), &Have::only(&[]), &req).unwrap();
    assert!(p.recommended.unwrap().reason.contains("more than fits"));
}

#[test]
fn a_forced_tier_no_table_has_is_an_error() {
    let req = RouteRequest { tier: Some(9), ..auto() };
    let err = plan(&catalog(), &cpu_box_24gb(), &Have::only(&[]), &req).unwrap_err();
    assert_eq!(err, RouteError::NoSuchTier { tier: 9, tables: "llamacpp 1..=5".into() });
}

#[test]
fn a_forced_model_is_tried_on_each_backend_that_reads_it() {
    let req = RouteRequest { model: Some("gemma3-270m".into()), ..auto() };
    let p = plan(&catalog(), &gpu_box_16gb(), &Have::only(&["gemma3-270m"]), &req).unwrap();
    assert_eq!(picks(&p), [("llamacpp", Some(1), "gemma3-270m"), ("webgpu", None, "gemma3-270m")]);
    assert!(p.recommended.is_none());
}

#[test]
fn a_forced_model_outside_every_tier_table_runs_on_its_own_backend() {
    let mut dev = laptop_4gb();
    dev.backends.push(backend("fixture", vec![cpu()]));
    let req = RouteRequest { model: Some("fixture-echo".into()), ..auto() };
    let p = plan(&catalog(), &dev, &Have::only(&["fixture-echo"]), &req).unwrap();
    assert_eq!(order(&p), ["llamacpp", "fixture"]);
    assert_eq!(picks(&p), [("fixture", None, "fixture-echo")]);
    assert_eq!(p.candidates[0].path, Path::new("/models/echo.fixture"));
}

#[test]
fn a_forced_model_that_is_not_installed_says_how_to_get_it() {
    let req = RouteRequest { model: Some("qwen3-4b".into()), ..auto() };
    let p = plan(&catalog(), &laptop_4gb(), &Have::only(&[]), &req).unwrap();
    assert!(p.candidates.is_empty());
    assert!(
        p.notes.iter().any(|n| n == "llamacpp: Qwen3 4B is not installed (hearth pull qwen3-4b)"),
        "{:?}",
        p.notes
    );
}

#[test]
fn an_unknown_model_is_an_error() {
    let req = RouteRequest { model: Some("gpt-5".into()), ..auto() };
    let err = plan(&catalog(), &laptop_4gb(), &Have::only(&[]), &req).unwrap_err();
    assert_eq!(err, RouteError::UnknownModel("gpt-5".into()));
}

#[test]
fn tiers_fit_installed_memory_with_a_ten_percent_allowance() {
    assert!(fits(16 * GIB, 15 * GIB + 512 * MIB));
    assert!(fits(4 * GIB, 3891 * MIB));
    assert!(!fits(32 * GIB, 24 * GIB));
}

#[test]
fn the_description_lists_order_recommendation_candidates_and_notes() {
    let p = plan(&catalog(), &cpu_box_24gb(), &Have::only(&["smollm2-135m"]), &auto()).unwrap();
    let text = p.to_string();
    assert!(text.contains("  1. llamacpp — llama.cpp on the CPU: no GPU device found"), "{text}");
    assert!(text.contains("recommended: llamacpp tier 3 [qwen3-8b, gemma3-12b]"), "{text}");
    assert!(text.contains("/models/SmolLM2-135M-Instruct.Q4_1.gguf"), "{text}");
    assert!(text.contains("note: recommended llamacpp tier 3"), "{text}");
    serde_json::to_string(&p).unwrap();
}

#[test]
fn a_list_of_devices_keeps_the_backends_that_list_every_one() {
    let two_gpus = DeviceProfile {
        host: host(64 * GIB, false),
        backends: vec![
            backend("webgpu", vec![device(DeviceKind::DiscreteGpu, "CUDA0", 16 * GIB)]),
            backend(
                "llamacpp",
                vec![
                    cpu(),
                    device(DeviceKind::DiscreteGpu, "CUDA0", 16 * GIB),
                    device(DeviceKind::DiscreteGpu, "CUDA1", 16 * GIB),
                ],
            ),
        ],
    };
    let req = RouteRequest { device: Some("CUDA0, cuda1".into()), ..auto() };
    let p = plan(&catalog(), &two_gpus, &Have::only(&["smollm2-135m"]), &req).unwrap();
    assert_eq!(order(&p), ["llamacpp"]);
    let req = RouteRequest { device: Some("CUDA0,CUDA2".into()), ..auto() };
    assert!(plan(&catalog(), &two_gpus, &Have::only(&["smollm2-135m"]), &req).is_err());
}
