//! Finds MLX's binary distribution (libmlx, its C++ headers) and compiles the cxx
//! bridge against it.
//!
//! Where MLX comes from, in order: `MLX_DIR` (a folder holding `include/mlx/` and
//! `lib/libmlx.*`, e.g. the `mlx/` folder of an unpacked `mlx-cpu`, `mlx-cuda-13` or
//! `mlx-metal` wheel; `scripts/setup.sh` unpacks one and sets it), else the `mlx`
//! package of the Python found as `$PYTHON` or `python3`. The library's folder is
//! recorded in the plugin's run path, so the installed plugin finds libmlx without
//! `LD_LIBRARY_PATH` (see the README, "Finding libmlx at run time").
//!
//! Which build of libmlx (CPU or CUDA) the plugin runs is decided here, at build time,
//! by `MLX_DIR`: `scripts/env.sh` points it at the `mlx-cuda-13` install where
//! `scripts/setup.sh` found a CUDA driver and checked that the CUDA libmlx loads with
//! all its libraries, else at the `mlx-cpu` one. Not at run time: the two libraries
//! share one file name and soname, and the dynamic loader takes the first `libmlx.so`
//! it finds and never falls back to another when that one's own libraries (libcuda,
//! cuDNN, ...) are missing, so a RUNPATH naming both folders would fail to load on a
//! machine without CUDA instead of running on the CPU. Deciding where the check ran
//! leaves the CPU build exactly as it was wherever CUDA is absent. Both wheels ship the
//! same headers, and every symbol the bridge imports exists in both.

use std::path::{Path, PathBuf};
use std::process::Command;

fn is_mlx_dir(dir: &Path) -> bool {
    dir.join("include/mlx/mlx.h").is_file() && dir.join("lib").is_dir()
}

/// The `mlx` package folder of the Python interpreter, when it has one.
fn python_mlx_dir() -> Option<PathBuf> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let output = Command::new(python)
        .args(["-c", "import importlib.util as u; s = u.find_spec('mlx'); print(list(s.submodule_search_locations)[0] if s else '')"])
        .output()
        .ok()?;
    let dir = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    is_mlx_dir(&dir).then_some(dir)
}

fn main() {
    println!("cargo:rerun-if-env-changed=MLX_DIR");
    println!("cargo:rerun-if-env-changed=PYTHON");
    println!("cargo:rerun-if-changed=src/bridge.h");
    println!("cargo:rerun-if-changed=src/bridge.cc");
    println!("cargo:rerun-if-changed=src/ffi.rs");

    let mlx_dir = match std::env::var_os("MLX_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if !is_mlx_dir(&dir) {
                panic!(
                    "MLX_DIR={} does not hold MLX (expected include/mlx/mlx.h and lib/libmlx.*): point MLX_DIR at \
                     the `mlx` folder of an unpacked mlx-cpu / mlx-cuda-13 / mlx-metal wheel",
                    dir.display()
                );
            }
            dir
        }
        None => python_mlx_dir().unwrap_or_else(|| {
            panic!(
                "MLX not found: set MLX_DIR to a folder holding include/mlx/ and lib/libmlx.* (the `mlx` folder \
                 of the mlx-cpu==0.32.4 wheel; scripts/setup.sh installs it and sets MLX_DIR), or install the \
                 mlx-cpu wheel into the Python found as $PYTHON / python3"
            )
        }),
    };
    let include = mlx_dir.join("include");
    let lib = mlx_dir.join("lib");

    cxx_build::bridge("src/ffi.rs")
        .file("src/bridge.cc")
        .std("c++20")
        // -isystem: MLX's own headers are not ours to keep warning-free.
        .flag("-isystem")
        .flag(include.to_str().expect("MLX_DIR is valid UTF-8"))
        .compile("hearth_mlx_bridge");

    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=mlx");
    // The absolute folder of libmlx goes into the run path: the host loads each plugin
    // from a private copy in a temp folder, so an $ORIGIN-relative path would not work.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}
