//! ggml's backend modules: where the plugin finds them and which CPU variant it runs.
//!
//! llama.cpp is built with ggml's dynamic backends (`GGML_BACKEND_DL`): `libllama`,
//! `libggml` and `libggml-base` are shared libraries, and every backend is a module
//! loaded at start — the CPU backend once per x86 generation ggml knows
//! (`libggml-cpu-haswell.so` … `libggml-cpu-zen4.so`, `libggml-cpu-sapphirerapids.so`),
//! `libggml-cuda.so` or `libggml-vulkan.so` where they were built. Setup installs all of
//! them in the plugin's companion folder, `libhearth_llamacpp/` beside
//! `libhearth_llamacpp.so` in the plugins folder; the plugin's run path names that
//! folder and the host copies it with the plugin. The modules are loaded from the first
//! of these folders that holds a CPU module:
//!
//! 1. the folder named by `HEARTH_GGML_BACKENDS`, when it is set (e.g. a CUDA build's
//!    modules, from the same llama.cpp source, on a machine with the toolkit);
//! 2. the companion folder of the file the plugin was loaded from;
//! 3. the folder of that file itself, where it is the RPC server program (`rpc`),
//!    which setup installs in the companion folder;
//! 4. the folder the build installed its modules into (for tests that link the plugin).
//!
//! A module must come from the same llama.cpp source as the shared libraries: ggml's
//! backend interface is not a stable ABI. So modules are never mixed across folders.
//! Of that folder, the one CPU variant chosen below and every other module (GPU, RPC)
//! are loaded. A GPU module that cannot load here (`libggml-cuda.so` without NVIDIA's
//! driver, `libggml-vulkan.so` without a Vulkan loader) is left out, saying why; the
//! CPU runs.
//!
//! The CPU variant is chosen here rather than by ggml: each variant's own
//! `ggml_backend_score` says whether this CPU runs it and how well (0: it does not),
//! and the best one that is not [`left_out`] is loaded. ggml would take the best one
//! regardless, and on an Intel Xeon with AMX that is `sapphirerapids`, whose AMX
//! kernels GCC before 13 has built to crash on the first prompt, in
//! `ggml_backend_amx_mul_mat`: Ollama's GCC 11 builds (it moved to GCC 13 for it),
//! llama.cpp issue 20824 (GCC 11), and this project's GCC 12 `-march=native` build on
//! a Xeon. (This build's GCC 12 variant ran on the one AMX host we could try, the lent
//! H200's, at 2.6× the prompt speed of the best other variant; docs/BENCHMARKS.md has
//! the figures. Without a way to tell a good GCC 12 build from a bad one, it is left
//! out.) Which compiler built a module is read from the
//! module itself ([`compiler_in`]), so a module from another build is judged by its
//! own compiler. What was chosen and what was left out, and why, is part of the
//! plugin's probe, which `hearth plugins` prints.

use std::ffi::{c_int, CStr, CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The environment variable naming a folder of ggml backend modules.
pub const BACKENDS_ENV: &str = "HEARTH_GGML_BACKENDS";

/// The CPU variant with ggml's AMX kernels.
const AMX_VARIANT: &str = "sapphirerapids";

/// The folders to look for modules in, in order (see the module's documentation).
pub fn candidate_dirs(
    env: Option<OsString>,
    plugin_file: Option<&Path>,
    built_in: Option<&str>,
) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let env = env.filter(|dir| !dir.is_empty()).map(PathBuf::from);
    let companion = plugin_file.map(companion_dir);
    let own = plugin_file.and_then(Path::parent).map(Path::to_path_buf);
    let built_in = built_in.filter(|dir| !dir.is_empty()).map(PathBuf::from);
    for dir in [env, companion, own, built_in].into_iter().flatten() {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

/// A plugin file's companion folder: beside it, named as the file without extension.
pub fn companion_dir(plugin_file: &Path) -> PathBuf {
    plugin_file.with_extension("")
}

/// The file this code was loaded from: the plugin library (or a test binary).
fn own_file() -> Option<PathBuf> {
    // SAFETY: an all-zero Dl_info is valid (null pointers); dladdr fills it in.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let address = own_file as *const () as *const libc::c_void;
    // SAFETY: dladdr only reads the loader's tables and writes `info`.
    if unsafe { libc::dladdr(address, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    Some(PathBuf::from(OsStr::from_bytes(name.to_bytes())))
}

/// The CPU variant a module file provides: `libggml-cpu-zen4.so` → `zen4`; the one CPU
/// module of a build without variants (`libggml-cpu.so`) is `cpu`.
pub fn cpu_variant(file_name: &str) -> Option<&str> {
    let stem = file_name.strip_suffix(".so")?;
    if stem == "libggml-cpu" {
        return Some("cpu");
    }
    stem.strip_prefix("libggml-cpu-")
}

/// Whether a backend module that is not a CPU one: `libggml-cuda.so`, `libggml-vulkan.so`,
/// `libggml-rpc.so`.
fn is_other_module(file_name: &str) -> bool {
    file_name.starts_with("libggml-")
        && file_name.ends_with(".so")
        && file_name != "libggml-base.so"
        && cpu_variant(file_name).is_none()
}

/// The compiler that built a library, as far as its `.comment` strings tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compiler {
    Gcc(u32),
    Clang,
    Unknown,
}

/// The compiler in a library's bytes: compilers leave their name in every object's
/// `.comment` ("GCC: (Debian 12.2.0-14+deb12u1) 12.2.0", "clang version 14.0.6"). The
/// C runtime's start-up objects, linked into every library, say GCC whichever compiler
/// built the rest, so any clang means clang; otherwise the newest GCC named.
pub fn compiler_in(bytes: &[u8]) -> Compiler {
    const GCC: &[u8] = b"GCC: (";
    if bytes.windows(b"clang version ".len()).any(|window| window == b"clang version ") {
        return Compiler::Clang;
    }
    let newest_gcc = bytes
        .windows(GCC.len())
        .enumerate()
        .filter(|(_, window)| *window == GCC)
        .filter_map(|(at, _)| {
            // "GCC: (<vendor text>) <major>.<minor>.<patch>", NUL-terminated.
            let rest = &bytes[at..];
            let text = std::str::from_utf8(&rest[..rest.iter().position(|&b| b == 0)?]).ok()?;
            text.rsplit(") ").next()?.split('.').next()?.trim().parse::<u32>().ok()
        })
        .max();
    newest_gcc.map_or(Compiler::Unknown, Compiler::Gcc)
}

/// Why a CPU variant built by `compiler` must not run; None when it may.
pub fn left_out(variant: &str, compiler: Compiler) -> Option<String> {
    match compiler {
        Compiler::Gcc(major) if variant == AMX_VARIANT && major < 13 => Some(format!(
            "{variant} left out: its AMX kernels were built by GCC {major}, and GCC before 13 \
             has built them to crash (in ggml_backend_amx_mul_mat); GCC 13 or clang builds \
             are used"
        )),
        _ => None,
    }
}

/// A CPU variant on disk: its name, its `ggml_backend_score` on this CPU, and why it is
/// left out, if it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub name: String,
    pub score: i32,
    pub left_out: Option<String>,
}

/// The variant to run: the highest score above 0 among those not left out (the first
/// of equals).
pub fn choose(variants: &[Variant]) -> Option<&Variant> {
    let mut best: Option<&Variant> = None;
    for variant in variants.iter().filter(|v| v.score > 0 && v.left_out.is_none()) {
        if best.is_none_or(|best| variant.score > best.score) {
            best = Some(variant);
        }
    }
    best
}

/// Why no variant of a folder can run: the ones this CPU runs were left out (each
/// reason), or it runs none (each score).
fn no_variant(folder: &Path, variants: &[Variant]) -> String {
    let reasons: Vec<&str> = variants
        .iter()
        .filter(|variant| variant.score > 0)
        .filter_map(|variant| variant.left_out.as_deref())
        .collect();
    if reasons.is_empty() {
        let scores: Vec<String> =
            variants.iter().map(|v| format!("{} {}", v.name, v.score)).collect();
        format!(
            "no CPU variant in {} runs on this CPU (scores: {})",
            folder.display(),
            scores.join(", ")
        )
    } else {
        format!("no usable CPU variant in {}: {}", folder.display(), reasons.join("; "))
    }
}

/// What [`load`] did: for the probe's reason.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Where the modules came from: the companion folder by name (the plugin file
    /// itself is a private copy in a temporary folder), another folder by path.
    pub folder: String,
    pub cpu_variant: String,
    /// Every CPU variant on disk.
    pub variants: Vec<Variant>,
    /// The other modules loaded (file names): GPU ones, RPC.
    pub others: Vec<String>,
    /// The other modules that could not be loaded, each with why.
    pub not_loaded: Vec<String>,
    /// The names of Vulkan's software renderers (see `vulkan.rs`), which ggml lists as
    /// GPUs.
    pub software_devices: Vec<String>,
}

impl Loaded {
    /// One line for `hearth plugins`.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "CPU variant {} (the best this CPU runs of {}, in {})",
            self.cpu_variant,
            self.variants.len(),
            self.folder
        );
        for reason in self.variants.iter().filter_map(|variant| variant.left_out.as_ref()) {
            text.push_str("; ");
            text.push_str(reason);
        }
        if !self.others.is_empty() {
            text.push_str(&format!("; modules {}", self.others.join(", ")));
        }
        for reason in &self.not_loaded {
            text.push_str("; ");
            text.push_str(reason);
        }
        text
    }
}

/// A CPU variant's `ggml_backend_score` on this CPU, read by loading the module on its
/// own for the call (as ggml's loader does); 0 when it cannot be loaded.
fn score(path: &Path) -> i32 {
    let Ok(path) = CString::new(path.as_os_str().as_bytes()) else { return 0 };
    // SAFETY: a valid C string; a module has no initialisers beyond C++ statics.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return 0;
    }
    // SAFETY: a valid handle and C string.
    let symbol = unsafe { libc::dlsym(handle, c"ggml_backend_score".as_ptr()) };
    let score = if symbol.is_null() {
        0
    } else {
        // SAFETY: ggml's modules export `int ggml_backend_score(void)`, which only
        // queries CPUID: safe on a CPU that cannot run the variant's other code.
        let function: extern "C" fn() -> c_int = unsafe { std::mem::transmute(symbol) };
        function()
    };
    // SAFETY: the handle came from dlopen and nothing from it is kept.
    unsafe { libc::dlclose(handle) };
    score
}

/// Register one module with ggml.
fn register(path: &Path) -> Result<(), String> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{} contains a NUL byte", path.display()))?;
    // SAFETY: a valid C string naming a module file; ggml dlopens it and registers it
    // in its process-wide registry.
    let registered = unsafe { llama_cpp_sys_2::ggml_backend_load(c_path.as_ptr()) };
    if registered.is_null() {
        Err(format!(
            "ggml could not load the backend module {}{}",
            path.display(),
            why_not(&c_path)
        ))
    } else {
        Ok(())
    }
}

/// What the dynamic loader says against a module ggml would not load (ggml's own
/// message goes to its log, which is off): usually a library it needs that this
/// machine lacks, as NVIDIA's `libcuda.so.1`.
fn why_not(path: &CStr) -> String {
    // SAFETY: a valid C string; the handle, if any, is closed at once.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if !handle.is_null() {
        // SAFETY: the handle came from dlopen and nothing from it is kept.
        unsafe { libc::dlclose(handle) };
        return String::new();
    }
    // SAFETY: dlerror returns null or a NUL-terminated message owned by the loader.
    let error = unsafe { libc::dlerror() };
    if error.is_null() {
        return String::new();
    }
    // SAFETY: see above; copied before any other loader call.
    format!(": {}", unsafe { CStr::from_ptr(error) }.to_string_lossy())
}

/// Load the backend modules (see the module's documentation). Runs before
/// `llama_backend_init`, once per process.
pub fn load() -> Result<Loaded, String> {
    let plugin_file = own_file();
    let companion = plugin_file.as_deref().map(companion_dir);
    let dirs = candidate_dirs(
        std::env::var_os(BACKENDS_ENV),
        plugin_file.as_deref(),
        llama_cpp_sys_2::BACKENDS_DIR,
    );
    for folder in &dirs {
        let Ok(entries) = std::fs::read_dir(folder) else { continue };
        let mut files: Vec<String> = entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_str().map(str::to_string))
            .collect();
        files.sort();
        let variants: Vec<Variant> = files
            .iter()
            .filter_map(|file| {
                let name = cpu_variant(file)?.to_string();
                let path = folder.join(file);
                // Only the AMX variant can be left out, so only its file is read.
                let compiler = if name == AMX_VARIANT {
                    std::fs::read(&path).map_or(Compiler::Unknown, |bytes| compiler_in(&bytes))
                } else {
                    Compiler::Unknown
                };
                Some(Variant { score: score(&path), left_out: left_out(&name, compiler), name })
            })
            .collect();
        if variants.is_empty() {
            continue;
        }
        let Some(chosen) = choose(&variants).map(|variant| variant.name.clone()) else {
            return Err(no_variant(folder, &variants));
        };
        let file = files.iter().find(|f| cpu_variant(f) == Some(chosen.as_str())).expect("listed");
        register(&folder.join(file))?;
        let (mut others, mut not_loaded, mut software_devices) =
            (Vec::new(), Vec::new(), Vec::new());
        for other in files.iter().filter(|f| is_other_module(f)) {
            if other == "libggml-vulkan.so" {
                software_devices = crate::vulkan::reveal_software_devices();
            }
            match register(&folder.join(other)) {
                Ok(()) => others.push(other.clone()),
                Err(why) => not_loaded.push(why),
            }
        }
        let folder_name = folder.file_name().unwrap_or_default().to_string_lossy();
        return Ok(Loaded {
            folder: if companion.as_ref() == Some(folder) {
                format!("{folder_name}/ beside the plugin")
            } else {
                folder.display().to_string()
            },
            cpu_variant: chosen,
            variants,
            others,
            not_loaded,
            software_devices,
        });
    }
    let searched: Vec<String> = dirs.iter().map(|dir| dir.display().to_string()).collect();
    Err(format!(
        "no ggml CPU backend module (libggml-cpu*.so) in {}; install the plugin with its \
         folder (scripts/setup.sh), or set {BACKENDS_ENV} to a folder of backend modules \
         built from this plugin's llama.cpp source",
        if searched.is_empty() { "any folder".to_string() } else { searched.join(", ") }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a module's `.comment` section holds, between other bytes.
    fn library_saying(comments: &[&str]) -> Vec<u8> {
        let mut bytes = b"\x7fELF....".to_vec();
        for comment in comments {
            bytes.extend_from_slice(comment.as_bytes());
            bytes.push(0);
        }
        bytes.extend_from_slice(b"more code");
        bytes
    }

    fn variant(name: &str, score: i32, compiler: Compiler) -> Variant {
        Variant { name: name.into(), score, left_out: left_out(name, compiler) }
    }

    #[test]
    fn the_environment_folder_comes_first_then_the_companion_then_the_build() {
        let dirs = candidate_dirs(
            Some("/opt/ggml".into()),
            Some(Path::new("/p/libhearth_llamacpp.so")),
            Some("/build/backends"),
        );
        assert_eq!(
            dirs,
            [
                PathBuf::from("/opt/ggml"),
                PathBuf::from("/p/libhearth_llamacpp"),
                PathBuf::from("/p"),
                PathBuf::from("/build/backends")
            ]
        );
    }

    #[test]
    fn an_empty_or_unset_environment_and_a_repeated_folder_are_skipped() {
        for env in [None, Some(OsString::new())] {
            assert_eq!(candidate_dirs(env, None, Some("/b")), [PathBuf::from("/b")]);
        }
        assert_eq!(candidate_dirs(Some("/b".into()), None, Some("/b")), [PathBuf::from("/b")]);
        assert!(candidate_dirs(None, None, None).is_empty());
    }

    #[test]
    fn module_files_are_told_apart_by_name() {
        assert_eq!(cpu_variant("libggml-cpu-zen4.so"), Some("zen4"));
        assert_eq!(cpu_variant("libggml-cpu.so"), Some("cpu"));
        assert_eq!(cpu_variant("libggml-cuda.so"), None);
        assert!(is_other_module("libggml-cuda.so"));
        for not_a_module in
            ["libggml-base.so", "libggml.so.0", "libllama.so.0", "libggml-cpu-x64.so"]
        {
            assert!(!is_other_module(not_a_module), "{not_a_module}");
        }
    }

    #[test]
    fn a_library_names_its_compiler_clang_over_the_c_runtimes_gcc_else_the_newest_gcc() {
        let gcc_12 = library_saying(&["GCC: (Debian 12.2.0-14+deb12u1) 12.2.0"]);
        assert_eq!(compiler_in(&gcc_12), Compiler::Gcc(12));
        let gcc_13 = library_saying(&[
            "GCC: (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0",
            "GCC: (Ubuntu 13.3.0-6ubuntu2~24.04.1) 13.3.0",
        ]);
        assert_eq!(compiler_in(&gcc_13), Compiler::Gcc(13));
        let clang = library_saying(&[
            "GCC: (Debian 12.2.0-14+deb12u1) 12.2.0",
            "Debian clang version 14.0.6",
        ]);
        assert_eq!(compiler_in(&clang), Compiler::Clang);
        assert_eq!(compiler_in(b"no comment at all"), Compiler::Unknown);
    }

    #[test]
    fn the_best_scoring_variant_is_chosen_and_one_that_cannot_run_never_is() {
        let gcc = Compiler::Gcc(12);
        let variants = [
            variant("x64", 1, gcc),
            variant("haswell", 40, gcc),
            variant("skylakex", 0, gcc),
            variant("icelake", 0, gcc),
        ];
        assert_eq!(choose(&variants).map(|v| v.name.as_str()), Some("haswell"));
        assert_eq!(choose(&[variant("zen4", 0, gcc)]), None);
        let equal = [variant("a", 5, gcc), variant("b", 5, gcc)];
        assert_eq!(choose(&equal).map(|v| v.name.as_str()), Some("a"));
    }

    #[test]
    fn the_amx_variant_is_left_out_when_gcc_12_built_it_even_where_it_scores_best() {
        let with_amx_by = |compiler| {
            [
                variant("haswell", 40, Compiler::Gcc(12)),
                variant("icelake", 900, Compiler::Gcc(12)),
                variant("sapphirerapids", 3000, compiler),
            ]
        };
        let chosen = |variants: &[Variant]| choose(variants).map(|v| v.name.clone());
        assert_eq!(chosen(&with_amx_by(Compiler::Gcc(12))).as_deref(), Some("icelake"));
        assert!(
            left_out("sapphirerapids", Compiler::Gcc(12)).is_some_and(|why| why.contains("GCC 12"))
        );
        for fine in [Compiler::Gcc(13), Compiler::Clang, Compiler::Unknown] {
            assert_eq!(chosen(&with_amx_by(fine)).as_deref(), Some("sapphirerapids"), "{fine:?}");
        }
        assert_eq!(left_out("icelake", Compiler::Gcc(11)), None);
    }

    #[test]
    fn a_folder_with_no_usable_variant_says_why_left_out_or_unsupported() {
        let folder = Path::new("/m");
        let amx_only = [variant("sapphirerapids", 3000, Compiler::Gcc(12))];
        let why = no_variant(folder, &amx_only);
        assert!(why.starts_with("no usable CPU variant in /m: sapphirerapids left out"), "{why}");
        let unsupported = [variant("zen4", 0, Compiler::Gcc(12))];
        assert_eq!(
            no_variant(folder, &unsupported),
            "no CPU variant in /m runs on this CPU (scores: zen4 0)"
        );
    }
}
