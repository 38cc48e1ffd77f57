//! The backend object as the host sees it: identity, probe, and refusals at load that
//! let the router fall back to another backend.

use hearth_mlx::MlxBackend;
use hearth_sdk::abi_stable::std_types::{ROption, RVec};
use hearth_sdk::{Backend, DeviceKind, ErrorKind, HostProfile, LoadRequest};

fn load_request(path: &str, format: &str) -> LoadRequest {
    LoadRequest {
        model_id: "test".into(),
        paths: RVec::from(vec![path.into()]),
        format: format.into(),
        context_size: 128,
        threads: 0,
        device: ROption::RNone,
        ..Default::default()
    }
}

#[test]
fn the_backend_names_itself_mlx() {
    let info = MlxBackend.info();
    assert_eq!((info.id.as_str(), info.name.as_str()), ("mlx", "MLX"));
    assert!(info.features.iter().any(|f| f.as_str() == "lora"));
}

#[test]
fn the_probe_reports_its_device_and_the_libmlx_it_loaded() {
    let host = HostProfile {
        cpu_brand: "test cpu".into(),
        ram_total_bytes: 64 << 30,
        ram_available_bytes: 48 << 30,
        ..HostProfile::default()
    };
    let probe = MlxBackend.probe(&host);
    println!("{probe:?}");
    assert!(probe.available);
    let library = hearth_mlx::ffi::library_path().expect("libmlx's path");
    assert!(
        probe.reason.contains(&format!("libmlx from {}", library.display())),
        "{}",
        probe.reason
    );
    let device = &probe.devices[0];
    if hearth_mlx::ffi::gpu_available() {
        // The mlx-cuda build, where setup installed it (build.rs).
        assert_eq!(device.kind, DeviceKind::DiscreteGpu);
        assert!(device.memory_total_bytes > 0, "{device:?}");
        assert!(device.memory_free_bytes <= device.memory_total_bytes, "{device:?}");
    } else {
        // The mlx-cpu build: the host's CPU and memory, as the host measured them.
        assert_eq!(device.kind, DeviceKind::Cpu);
        assert_eq!(device.name.as_str(), "MLX CPU (test cpu)");
        assert_eq!((device.memory_total_bytes, device.memory_free_bytes), (64 << 30, 48 << 30));
    }
}

#[test]
fn a_q3_k_model_is_refused_as_unsupported_naming_the_type() {
    let path = std::env::temp_dir().join(format!("hearth-mlx-q3k-{}.gguf", std::process::id()));
    std::fs::write(&path, hearth_sdk::testing::one_tensor_gguf("llama", 11, 110)).unwrap();
    let error =
        MlxBackend.load(&load_request(path.to_str().unwrap(), "gguf")).err().expect("refused");
    std::fs::remove_file(&path).unwrap();
    assert_eq!(error.kind, ErrorKind::Unsupported);
    assert!(error.message.contains("Q3_K"), "{}", error.message);
}

#[test]
fn corrupt_files_and_other_formats_are_refused_with_the_right_kind() {
    let path = std::env::temp_dir().join(format!("hearth-mlx-bad-{}.gguf", std::process::id()));
    std::fs::write(&path, b"not a gguf file at all").unwrap();
    let error =
        MlxBackend.load(&load_request(path.to_str().unwrap(), "gguf")).err().expect("refused");
    std::fs::remove_file(&path).unwrap();
    assert_eq!(error.kind, ErrorKind::ModelFile);
    assert!(error.message.contains("not a GGUF file"), "{}", error.message);
    let error =
        MlxBackend.load(&load_request("/x.safetensors", "safetensors")).err().expect("refused");
    assert_eq!(error.kind, ErrorKind::ModelFile);
    let error = MlxBackend.load(&load_request("/x.onnx", "onnx")).err().expect("refused");
    assert_eq!(error.kind, ErrorKind::Unsupported);
}
