//! Failures come back as the right `PluginError` kind, never as a crash.

use std::io::Write;

use hearth_llamacpp::LlamaCppBackend;
use hearth_sdk::abi_stable::std_types::{ROption, RVec};
use hearth_sdk::{AdapterUse, Backend, ErrorKind};

use crate::common::{chat, load, load_request, model_path, run, SMOLLM2};

fn load_error(path: &str) -> hearth_sdk::PluginError {
    match LlamaCppBackend::new().unwrap().load(&load_request(path, 256)) {
        Ok(_) => panic!("{path} loaded"),
        Err(error) => error,
    }
}

/// A scratch file of the given bytes, removed when dropped.
struct ScratchFile(std::path::PathBuf);

impl ScratchFile {
    fn new(name: &str, bytes: &[u8]) -> Self {
        let path =
            std::env::temp_dir().join(format!("hearth-llamacpp-{}-{name}", std::process::id()));
        std::fs::File::create(&path).unwrap().write_all(bytes).unwrap();
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_truncated_gguf_file_is_a_model_file_error() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let whole = std::fs::read(model_path(SMOLLM2)).unwrap();
    let truncated = ScratchFile::new("truncated.gguf", &whole[..whole.len() / 3]);
    let error = load_error(truncated.path());
    assert_eq!(error.kind, ErrorKind::ModelFile, "{error}");
}

#[test]
fn a_file_that_is_not_gguf_is_a_model_file_error() {
    let garbage = ScratchFile::new("garbage.gguf", b"this is not a model at all");
    let error = load_error(garbage.path());
    assert_eq!(error.kind, ErrorKind::ModelFile, "{error}");
}

#[test]
fn a_missing_model_file_is_a_model_file_error() {
    let error = load_error("/nonexistent/hearth/model.gguf");
    assert_eq!(error.kind, ErrorKind::ModelFile, "{error}");
}

#[test]
fn a_prompt_longer_than_the_context_is_an_invalid_request() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = load(SMOLLM2, 32);
    let error = run(&*model, &chat(&"word ".repeat(100), 4)).unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidRequest, "{error}");
}

fn with_adapter(path: &str) -> hearth_sdk::GenerateRequest {
    let mut request = chat("Hello", 4);
    request.adapters =
        RVec::from(vec![AdapterUse { name: "tone".into(), path: path.into(), scale: 1.0 }]);
    request
}

#[test]
fn a_missing_adapter_file_is_a_model_file_error_naming_the_adapter() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = load(SMOLLM2, 256);
    let error = run(&*model, &with_adapter("/nonexistent/tone.gguf")).unwrap_err();
    assert_eq!(error.kind, ErrorKind::ModelFile, "{error}");
    assert!(error.message.contains("tone"), "{error}");
    // The failed request leaves the model usable.
    run(&*model, &chat("Hello", 2)).unwrap();
}

#[test]
fn a_gguf_that_is_not_a_lora_adapter_is_refused_naming_the_adapter() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = load(SMOLLM2, 256);
    let base = model_path(SMOLLM2);
    let error = run(&*model, &with_adapter(base.to_str().unwrap())).unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidRequest, "{error}");
    assert!(error.message.contains("tone"), "{error}");
}

#[test]
fn an_unknown_device_is_an_invalid_request_and_the_cpu_by_name_loads() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let backend = LlamaCppBackend::new().unwrap();
    let path = model_path(SMOLLM2);
    let mut request = load_request(path.to_str().unwrap(), 256);
    request.device = ROption::RSome("NoSuchGPU9".into());
    let error = backend.load(&request).err().expect("an unknown device must fail");
    assert_eq!(error.kind, ErrorKind::InvalidRequest, "{error}");
    request.device = ROption::RSome("CPU".into());
    let model = backend.load(&request).unwrap();
    assert_eq!(model.memory().device_bytes, 0);
}
