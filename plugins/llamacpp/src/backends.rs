//! ggml backend modules, for builds with the `dynamic-backends` feature.
//!
//! With that feature llama.cpp is built with `GGML_BACKEND_DL=ON`: `libggml-base`,
//! `libggml` and `libllama` are shared libraries, and every backend (the CPU one too) is
//! a module (`libggml-cpu*.so`, `libggml-cuda.so`, `libggml-vulkan.so`, …) that must be
//! loaded before llama.cpp is initialised. The plugin loads them once, from:
//!
//! 1. the folder named by `HEARTH_GGML_BACKENDS`, when it is set: e.g. a folder holding
//!    a `libggml-cuda.so` built from the same llama.cpp source on a machine with the
//!    CUDA toolkit, beside a CPU module;
//! 2. the folder the build installed its own modules into (`GGML_BACKENDS_DIR`, in the
//!    cargo target folder), when (1) is unset or left the CPU backend out.
//!
//! The shared libraries themselves (`libllama.so`, `libggml*.so`) are found by the
//! dynamic loader (`LD_LIBRARY_PATH`, or the folder they were installed in). A module
//! must come from the same llama.cpp source as those libraries: ggml's backend interface
//! is not a stable ABI.

use std::ffi::OsString;
use std::path::PathBuf;

/// The environment variable naming a folder of ggml backend modules.
pub const BACKENDS_ENV: &str = "HEARTH_GGML_BACKENDS";

/// The folders to load backend modules from, in order: the one the environment names
/// (if set and not empty), then the build's own (if any). Each is loaded with ggml's
/// `ggml_backend_load_all_from_path`, which picks the best variant of each backend
/// found there; the second only when the first left the CPU backend out.
pub fn backend_dirs(env: Option<OsString>, built_in: Option<&str>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = env.filter(|dir| !dir.is_empty()) {
        dirs.push(PathBuf::from(dir));
    }
    if let Some(dir) = built_in.filter(|dir| !dir.is_empty()) {
        let dir = PathBuf::from(dir);
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

/// Load the backend modules (see the module's documentation). Runs before
/// `llama_backend_init`, once per process. Returns an error when no folder gave ggml a
/// CPU backend: llama.cpp cannot run without one.
#[cfg(feature = "dynamic-backends")]
pub fn load() -> Result<(), String> {
    use std::ffi::CString;

    let dirs = backend_dirs(std::env::var_os(BACKENDS_ENV), llama_cpp_sys_2::BACKENDS_DIR);
    let has_cpu = || {
        // SAFETY: a valid C string; the registry lookup has no other precondition.
        !unsafe { llama_cpp_sys_2::ggml_backend_reg_by_name(c"CPU".as_ptr()) }.is_null()
    };
    for dir in &dirs {
        if has_cpu() {
            break;
        }
        if !dir.is_dir() {
            continue;
        }
        let path = CString::new(dir.to_string_lossy().as_bytes())
            .map_err(|_| format!("{} contains a NUL byte", dir.display()))?;
        // SAFETY: `path` is a valid C string naming a folder; ggml dlopens the modules
        // it finds there and registers them in its process-wide registry.
        unsafe { llama_cpp_sys_2::ggml_backend_load_all_from_path(path.as_ptr()) };
    }
    if has_cpu() {
        Ok(())
    } else {
        let searched: Vec<String> = dirs.iter().map(|dir| dir.display().to_string()).collect();
        Err(format!(
            "no ggml CPU backend module (libggml-cpu*.so) in {}; set {BACKENDS_ENV} to a folder of \
             backend modules built from this plugin's llama.cpp source",
            if searched.is_empty() { "any folder".to_string() } else { searched.join(", ") }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_folder_comes_first() {
        let dirs = backend_dirs(Some("/opt/ggml".into()), Some("/build/backends"));
        assert_eq!(dirs, [PathBuf::from("/opt/ggml"), PathBuf::from("/build/backends")]);
    }

    #[test]
    fn empty_or_unset_environment_uses_the_build_folder() {
        for env in [None, Some(OsString::new())] {
            assert_eq!(
                backend_dirs(env, Some("/build/backends")),
                [PathBuf::from("/build/backends")]
            );
        }
        assert!(backend_dirs(None, None).is_empty());
    }

    #[test]
    fn one_folder_is_not_listed_twice() {
        let dirs = backend_dirs(Some("/build/backends".into()), Some("/build/backends"));
        assert_eq!(dirs, [PathBuf::from("/build/backends")]);
    }
}
