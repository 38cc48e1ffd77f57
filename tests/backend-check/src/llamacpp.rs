//! llama.cpp, the reference backend, two ways: the llama.cpp plugin loaded from its
//! shared library through the ABI, as the host loads it (linking its rlib is not
//! possible: every plugin crate exports the same abi_stable root-module symbol), and
//! llama.cpp's logits and tokens, which the plugin's API does not expose, from the
//! `hearth-llama-logits` program. That runs in a process of its own because a test
//! binary that links libmlx must not link llama.cpp: both define `gguf_*` functions of
//! the same names, and libmlx's calls would land in llama.cpp's.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hearth_sdk::abi::{BackendBox, ModelBox, PluginModuleRef};
use hearth_sdk::abi_stable::library::lib_header_from_path;
use hearth_sdk::abi_stable::std_types::{ROption, RVec};
use hearth_sdk::{
    Embedding, GenerateRequest, GenerateStats, LoadRequest, MemoryUsage, Model, PluginError,
    TokenSink,
};

/// A model loaded by the llama.cpp plugin, with the backend that loaded it (which must
/// outlive its models).
pub struct PluginModel {
    model: ModelBox,
    _backend: BackendBox,
}

impl Model for PluginModel {
    fn generate(
        &self,
        request: &GenerateRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<GenerateStats, PluginError> {
        hearth_sdk::abi::generate(&self.model, request, sink)
    }
    fn embed(&self, text: &str, truncate: bool) -> Result<Embedding, PluginError> {
        self.model.embed(text.into(), truncate).into_result()
    }
    fn trim(&self) {
        self.model.trim().into_result().expect("trim");
    }
    fn memory(&self) -> MemoryUsage {
        self.model.memory().into_result().expect("memory")
    }
}

/// Load llama.cpp's shared libraries from the plugin's companion folder before the
/// plugin, each resolving its symbols in its own libraries first (`RTLD_DEEPBIND`); the
/// plugin then links these. The MLX plugin's test binaries link libmlx, whose `gguf_*`
/// functions share names (not signatures) with ggml's and, being in the binary's global
/// scope, would otherwise take libllama's and libggml-base's calls to them. (The host
/// has no such clash: it loads every plugin with its libraries in a scope of its own.)
fn preload_with_own_symbols_first(companion: &Path) {
    for name in ["libggml-base.so.0", "libggml.so.0", "libllama.so.0"] {
        let path = companion.join(name);
        let c_path = std::ffi::CString::new(path.to_string_lossy().as_bytes()).unwrap();
        let flags = libc::RTLD_NOW | libc::RTLD_LOCAL | libc::RTLD_DEEPBIND;
        // SAFETY: a valid C string; the handle is kept for the process's life, as the
        // plugin's own load of these libraries keeps them.
        let handle = unsafe { libc::dlopen(c_path.as_ptr(), flags) };
        assert!(!handle.is_null(), "cannot load {} (run scripts/setup.sh)", path.display());
    }
}

/// Load the GGUF at `path` with the llama.cpp plugin found in `HEARTH_TEST_PLUGINS`
/// (failing the test, with what to set, when it is not there).
pub fn load_with_plugin(path: &str) -> PluginModel {
    let folder = std::env::var("HEARTH_TEST_PLUGINS")
        .expect("HEARTH_TEST_PLUGINS must name a folder holding libhearth_llamacpp.so, the reference backend");
    let library = PathBuf::from(folder)
        .join(format!("libhearth_llamacpp.{}", std::env::consts::DLL_EXTENSION));
    assert!(library.is_file(), "reference plugin missing: {}", library.display());
    preload_with_own_symbols_first(&library.with_extension(""));
    let module =
        lib_header_from_path(&library).unwrap().init_root_module::<PluginModuleRef>().unwrap();
    let backend = module.new_backend()().into_result().unwrap();
    let request = LoadRequest {
        model_id: "reference".into(),
        paths: RVec::from(vec![path.into()]),
        format: "gguf".into(),
        context_size: 512,
        threads: 2,
        device: ROption::RNone,
        ..Default::default()
    };
    let model = backend.load(request.view()).into_result().unwrap();
    PluginModel { model, _backend: backend }
}

/// llama.cpp's logits after the whole of `tokens` (evaluated as one batch from position
/// 0), with the LoRA adapter file `adapter` at `scale` when given.
pub fn logits(model_path: &str, tokens: &[u32], adapter: Option<(&str, f32)>) -> Vec<f32> {
    let mut command = Command::new(logits_program());
    command.arg(model_path);
    if let Some((file, scale)) = adapter {
        command.arg("--adapter").arg(format!("{file}:{scale}"));
    }
    let output =
        command.args(tokens.iter().map(u32::to_string)).output().expect("run hearth-llama-logits");
    assert!(
        output.status.success(),
        "hearth-llama-logits failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
        .stdout
        .chunks_exact(4)
        .map(|bytes| f32::from_le_bytes(bytes.try_into().expect("4 bytes")))
        .collect()
}

/// llama.cpp's tokens for `text` with the model at `model_path`: BOS as the model adds
/// it, special-token texts parsed as their tokens.
pub fn tokens(model_path: &str, text: &str) -> Vec<u32> {
    let mut child = Command::new(logits_program())
        .args(["--tokenize", model_path])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hearth-llama-logits --tokenize");
    child
        .stdin
        .take()
        .expect("its stdin")
        .write_all(text.as_bytes())
        .expect("write the text to hearth-llama-logits");
    let output = child.wait_with_output().expect("wait for hearth-llama-logits");
    assert!(
        output.status.success(),
        "hearth-llama-logits --tokenize failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("token ids as text")
        .split_whitespace()
        .map(|id| id.parse().expect("a token id"))
        .collect()
}

/// ggml's own expansion of `bytes`, whole blocks of the type whose GGUF id is `type_id`,
/// through the type's `to_float` (`hearth-llama-logits --dequantize`).
pub fn ggml_dequantize(type_id: u32, bytes: &[u8]) -> Vec<f32> {
    let mut child = Command::new(logits_program())
        .args(["--dequantize", &type_id.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hearth-llama-logits --dequantize");
    let mut stdin = child.stdin.take().expect("a piped stdin");
    // Written from a thread of its own, so a large output cannot stall the input.
    let output = std::thread::scope(|scope| {
        scope.spawn(move || stdin.write_all(bytes).expect("write the blocks"));
        child.wait_with_output().expect("hearth-llama-logits --dequantize's output")
    });
    assert!(
        output.status.success(),
        "hearth-llama-logits --dequantize {type_id} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
        .stdout
        .chunks_exact(4)
        .map(|bytes| f32::from_le_bytes(bytes.try_into().expect("4 bytes")))
        .collect()
}

/// The `hearth-llama-logits` program of this test's profile, built once per test
/// process (cargo is quick when it is up to date, and a stale one must not be used).
fn logits_program() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            // Test binaries live in <target>/<profile>/deps.
            let exe = std::env::current_exe().expect("the test binary's path");
            let profile =
                exe.parent().and_then(Path::parent).expect("<target>/<profile>/deps/<test>");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut build = Command::new(cargo);
            // The whole workspace, as setup builds it: a build of one package resolves
            // llama.cpp's build dependencies with other features and would build
            // llama.cpp a second time (and its libraries collide with the first's).
            build.args(["build", "--quiet", "--workspace"]);
            if profile.file_name().is_some_and(|name| name == "release") {
                build.arg("--release");
            }
            let program = profile.join("hearth-llama-logits");
            let status = build.status().expect("run cargo build");
            assert!(status.success() && program.is_file(), "could not build {}", program.display());
            program
        })
        .clone()
}
